"""GraIL's sampled ranking protocol for inductive link prediction, and the uniform baseline.

GraIL (Teru et al., 2020) ranks each test triple (s, r, o) of the inference graph against 49
corrupted heads and 49 corrupted tails instead of all entities: per side, the answer is ranked among
50 candidates. Here the negatives of a side are drawn uniformly, with replacement as in GraIL's
code, from the entities that do not complete the query to a known true triple (known = the
inference graph's train, valid and test triples, i.e. ``kg.known_triples()``), from a
``torch.Generator`` seeded with ``seed``. Ranks use the tie policies of
:mod:`circuitkg.eval.ranking` (realistic by default) and the metrics pool both sides.

Two deliberate differences from GraIL's released code: it filters corruptions against the
test-time graph only (``_ind/train.txt``), not its valid and test triples, and it also rejects
corruptions whose head equals their tail; here every known triple is filtered and self-loops are
allowed, as in :func:`circuitkg.eval.evaluate_ranking`.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import torch
from torch import Tensor

from circuitkg.eval.ranking import (
    _COLUMNS,
    FilterIndex,
    RankingResult,
    ScoreAll,
    Tie,
    _check_scores,
    check_ranking_inputs,
    filtered_ranks,
)

__all__ = [
    "SampledRankingResult",
    "evaluate_sampled_ranking",
    "sample_negatives",
    "uniform_log_likelihood",
]

#: Rejection rounds before the remaining draws of a query are made from its explicit candidate set.
_REJECTION_ROUNDS = 16


def uniform_log_likelihood(num_entities: int, num_relations: int) -> float:
    """``-log(n² m)``: the log-likelihood per triple of the uniform distribution over triples, the
    baseline for a normalised model's test log-likelihood (e.g. on an unseen inference graph)."""
    return -math.log(num_entities**2 * num_relations)


def sample_negatives(
    triples: Tensor,
    known_triples: Tensor,
    num_entities: int,
    target: str,
    num_negatives: int = 49,
    generator: torch.Generator | None = None,
) -> Tensor:
    """``(N, num_negatives)`` int64 corruptions of column ``target`` (``"o"``: tails, ``"s"``:
    heads) of ``triples``, each uniform over the entities ``e`` whose corrupted triple is not in
    ``known_triples``, independently (with replacement). A query with no such entity gets ``-1``
    throughout. Rejection sampling, then exact draws for what is still rejected after
    ``_REJECTION_ROUNDS`` rounds: O(N num_negatives log K) for K known triples."""
    anchor_col, answer_col = _COLUMNS[target]
    triples, known = triples.to("cpu", torch.long), known_triples.to("cpu", torch.long)
    known_keys = torch.unique(
        (known[:, 1] * num_entities + known[:, anchor_col]) * num_entities + known[:, answer_col]
    )
    base = ((triples[:, 1] * num_entities + triples[:, anchor_col]) * num_entities).unsqueeze(1)

    def is_known(keys: Tensor) -> Tensor:
        if len(known_keys) == 0:
            return torch.zeros_like(keys, dtype=torch.bool)
        pos = torch.searchsorted(known_keys, keys).clamp_(max=len(known_keys) - 1)
        return known_keys[pos] == keys

    negatives = torch.randint(
        num_entities, (len(triples), num_negatives), generator=generator, dtype=torch.long
    )
    pending = is_known(base + negatives)
    for _ in range(_REJECTION_ROUNDS):
        count = int(pending.sum())
        if count == 0:
            return negatives
        negatives[pending] = torch.randint(num_entities, (count,), generator=generator)
        pending = is_known(base + negatives)
    if not bool(pending.any()):
        return negatives
    # few candidates left for these queries: draw from each one's candidate set directly
    index = FilterIndex(known, target, num_entities)
    rows = pending.any(dim=1).nonzero()[:, 0]
    filter_rows, answers = index.lookup(triples[rows, anchor_col], triples[rows, 1])
    allowed = torch.ones(len(rows), num_entities, dtype=torch.bool)
    allowed[filter_rows, answers] = False
    for i, row in enumerate(rows.tolist()):
        candidates = allowed[i].nonzero()[:, 0]
        if len(candidates) == 0:
            negatives[row] = -1
            continue
        need = pending[row]
        picks = torch.randint(len(candidates), (int(need.sum()),), generator=generator)
        negatives[row, need] = candidates[picks]
    return negatives


@dataclass(frozen=True)
class SampledRankingResult:
    """Ranks among sampled candidates, the negatives they were ranked against and the metrics.

    ``ranking.ranks[d]`` holds one rank per triple for side ``d`` (``"o"``: tails corrupted,
    ``"s"``: heads corrupted); ``negatives[d]`` is ``(N, num_negatives)``, ``-1`` where a query had
    no valid corruption (it is then ranked among its answer alone).
    """

    ranking: RankingResult
    negatives: dict[str, Tensor]
    num_negatives: int
    seed: int

    @property
    def metrics(self) -> dict[str, float]:
        """MRR, mean rank and Hits@k over both sides pooled (see :func:`metrics_from_ranks`)."""
        return self.ranking.metrics()

    def __str__(self) -> str:
        title = f"sampled ranking ({self.num_negatives} negatives per side, seed {self.seed})"
        return f"{title}\n{self.ranking}"


def evaluate_sampled_ranking(
    score_all: ScoreAll,
    triples: Tensor,
    *,
    known_triples: Tensor,
    num_entities: int,
    num_negatives: int = 49,
    seed: int = 0,
    batch_size: int = 256,
    ks: Sequence[int] = (1, 3, 10),
    tie: Tie = "realistic",
) -> SampledRankingResult:
    """GraIL's protocol (module docstring): each triple of ``triples`` (N, 3) is ranked among
    itself and ``num_negatives`` sampled corruptions, of its tail (``"o"``) and of its head
    (``"s"``).

    ``score_all(target, anchor, relation) -> (B, num_entities)`` is the scorer of
    :func:`circuitkg.eval.evaluate_ranking` (e.g. :func:`keyword_scorer` of a compiled circuit
    bound to the inference graph); only the candidates' columns are read. ``known_triples`` are
    the inference graph's true triples. The negatives depend on ``seed`` only, not on
    ``batch_size``. Cost: 2 N / batch_size calls of ``score_all`` plus the sampling.
    """
    check_ranking_inputs(triples, known_triples, num_entities, tie)
    if num_negatives < 0 or batch_size < 1 or any(k < 1 for k in ks):
        raise ValueError(
            f"num_negatives must be >= 0, batch_size and ks positive; got {num_negatives}, "
            f"{batch_size} and {ks}"
        )
    generator = torch.Generator().manual_seed(seed)
    negatives, ranks = {}, {}
    with torch.no_grad():
        for direction in ("o", "s"):
            anchor_col, answer_col = _COLUMNS[direction]
            sampled = sample_negatives(
                triples, known_triples, num_entities, direction, num_negatives, generator
            )
            parts = []
            for start in range(0, len(triples), batch_size):
                batch = triples[start : start + batch_size]
                scores = score_all(direction, batch[:, anchor_col], batch[:, 1])
                _check_scores(scores, batch, start, direction, num_entities)
                negs = sampled[start : start + batch_size].to(batch.device)
                # candidate 0 is the answer; absent negatives (-1) are filtered out
                columns = torch.cat([batch[:, answer_col : answer_col + 1], negs.clamp(min=0)], 1)
                negs = negs.to(scores.device)
                absent_rows, absent_cols = (negs < 0).nonzero(as_tuple=True)
                answers = torch.zeros(len(batch), dtype=torch.long, device=scores.device)
                candidate_scores = scores.gather(1, columns.to(scores.device))
                parts.append(
                    filtered_ranks(candidate_scores, answers, absent_rows, absent_cols + 1, tie)
                )
            negatives[direction] = sampled
            ranks[direction] = torch.cat(parts).cpu()
    ranking = RankingResult(ranks=ranks, ks=tuple(ks), tie=tie)
    return SampledRankingResult(ranking, negatives, num_negatives, seed)
