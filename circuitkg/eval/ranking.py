"""Filtered link-prediction ranking against all entities, in both directions.

For a test triple (s, r, o), the ``"o"`` direction ranks o among all entities for the query
(s, r, ?) and the ``"s"`` direction ranks s for (?, r, o). Filtering: every other entity that
completes the query to a known true triple is left out of the comparison; the answer itself stays.

Ties between the answer and other candidates are resolved by a policy:

- ``"optimistic"``: rank = 1 + #candidates scoring strictly higher;
- ``"pessimistic"``: rank = 1 + #candidates scoring higher or equal (the answer not counted);
- ``"realistic"`` (default): the mean of the two, i.e. the expected rank under random tie
  breaking, as in PyKEEN.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Literal

import torch
from torch import Tensor

__all__ = [
    "FilterIndex",
    "RankingResult",
    "ScoreAll",
    "evaluate_ranking",
    "filtered_ranks",
    "keyword_scorer",
    "metrics_from_ranks",
]

Tie = Literal["optimistic", "pessimistic", "realistic"]
#: ``score_all(target, anchor, relation) -> (B, num_entities)`` scores, higher is better.
ScoreAll = Callable[[str, Tensor, Tensor], Tensor]

_TIES = ("optimistic", "pessimistic", "realistic")
#: direction -> (anchor column, answer column) of a (head, relation, tail) triple
_COLUMNS = {"o": (0, 2), "s": (2, 0)}


def keyword_scorer(score_all: Callable[..., Tensor]) -> ScoreAll:
    """Adapt ``score_all(target, s=..., r=...)`` / ``score_all(target, r=..., o=...)``, the
    keyword form of :meth:`circuitkg.CompiledCircuit.score_all`, to :data:`ScoreAll`."""

    def positional(target: str, anchor: Tensor, relation: Tensor) -> Tensor:
        anchor_name = "s" if target == "o" else "o"
        return score_all(target, **{anchor_name: anchor, "r": relation})

    return positional


class FilterIndex:
    """The known answers of every (anchor, relation) query, for one direction.

    Distinct (key, answer) pairs, with key ``relation * num_entities + anchor``, are sorted by key;
    a batch lookup is a ``searchsorted`` plus a gather of the matching runs. Building costs
    O(N log N) for N known triples and O(N) memory; a lookup costs O(B log N + answers returned).
    """

    def __init__(self, known_triples: Tensor, target: str, num_entities: int) -> None:
        anchor_col, answer_col = _COLUMNS[target]
        known = known_triples.to("cpu", torch.long)
        keys, answers = known[:, 1] * num_entities + known[:, anchor_col], known[:, answer_col]
        answers, order = torch.sort(answers, stable=True)
        keys, order2 = torch.sort(keys[order], stable=True)  # lexicographic by (key, answer)
        answers = answers[order2]
        first = torch.ones(len(keys), dtype=torch.bool)
        first[1:] = (keys[1:] != keys[:-1]) | (answers[1:] != answers[:-1])
        keys, self._answers = keys[first], answers[first]
        self._keys, self._counts = torch.unique_consecutive(keys, return_counts=True)
        self._starts = torch.cumsum(self._counts, 0) - self._counts
        self._num_entities = num_entities

    def lookup(self, anchors: Tensor, relations: Tensor) -> tuple[Tensor, Tensor]:
        """``(rows, answers)``: query ``i`` has the answers ``answers[rows == i]``, each once."""
        queries = relations.to("cpu", torch.long) * self._num_entities + anchors.to("cpu")
        if len(self._keys) == 0:
            empty = torch.zeros(0, dtype=torch.long)
            return empty, empty
        pos = torch.searchsorted(self._keys, queries).clamp_(max=len(self._keys) - 1)
        counts = torch.where(self._keys[pos] == queries, self._counts[pos], 0)
        rows = torch.repeat_interleave(torch.arange(len(queries)), counts)
        offsets = torch.repeat_interleave(self._starts[pos] - (counts.cumsum(0) - counts), counts)
        return rows, self._answers[offsets + torch.arange(len(rows))]


def filtered_ranks(
    scores: Tensor, answers: Tensor, filter_rows: Tensor, filter_cols: Tensor, tie: Tie
) -> Tensor:
    """Float64 ranks of ``answers`` in the rows of ``scores`` (B, E), excluding filtered entries.

    ``(filter_rows[k], filter_cols[k])`` are candidates to leave out and must be distinct pairs
    (as :meth:`FilterIndex.lookup` returns them); the answer is always kept and never counted
    against itself, also when its score is -inf. ``scores`` must hold no NaN
    (:func:`evaluate_ranking` checks). Counts over all E candidates are taken first and the
    filtered candidates' share subtracted, so no (B, E) mask is built: O(B E + F) time for F
    filter pairs, one (B, E) boolean temporary.
    """
    num_rows = len(scores)
    device = scores.device
    answers = answers.to(device)
    true = scores[torch.arange(num_rows, device=device), answers]
    f_rows, f_cols = filter_rows.to(device), filter_cols.to(device)
    keep = f_cols != answers[f_rows]
    f_rows, f_cols = f_rows[keep], f_cols[keep]
    f_scores = scores[f_rows, f_cols]

    def count(compare: Callable[[Tensor, Tensor], Tensor]) -> Tensor:
        """#unfiltered candidates c with compare(score of c, score of the answer)."""
        everywhere = compare(scores, true.unsqueeze(1)).view(torch.uint8).sum(1, dtype=torch.int32)
        filtered = torch.zeros(num_rows, dtype=torch.int32, device=device)
        filtered.index_add_(0, f_rows, compare(f_scores, true[f_rows]).to(torch.int32))
        return (everywhere - filtered).to(torch.float64)

    rank = torch.ones(num_rows, dtype=torch.float64, device=device)
    if tie != "pessimistic":
        greater = count(torch.gt)
        rank += greater if tie == "optimistic" else greater / 2
    if tie != "optimistic":
        greater_equal = count(torch.ge) - 1  # the answer is >= itself
        rank += greater_equal if tie == "pessimistic" else greater_equal / 2
    return rank


def metrics_from_ranks(ranks: Tensor, ks: Sequence[int] = (1, 3, 10)) -> dict[str, float]:
    """MRR (mean of 1/rank), mean rank, Hits@k (fraction of ranks <= k) and the query count."""
    ranks = ranks.to(torch.float64)
    metrics = {
        "num_queries": float(len(ranks)),
        "mrr": float(ranks.reciprocal().mean()),
        "mean_rank": float(ranks.mean()),
    }
    for k in ks:
        metrics[f"hits@{k}"] = float((ranks <= k).to(torch.float64).mean())
    return metrics


@dataclass(frozen=True)
class RankingResult:
    """Filtered ranks per direction (``"o"``, ``"s"``) and the metrics computed from them.

    ``ranks[d]`` holds one float64 rank per test triple, in the order of the triples. Metrics for
    ``direction="both"`` pool the queries of all evaluated directions.
    """

    ranks: dict[str, Tensor]
    ks: tuple[int, ...]
    tie: str

    def ranks_of(self, direction: str = "both") -> Tensor:
        """The ranks of one direction, or of all directions concatenated (``"both"``)."""
        if direction == "both":
            return torch.cat(list(self.ranks.values()))
        if direction not in self.ranks:
            raise KeyError(f"direction {direction!r} was not evaluated; have {list(self.ranks)}")
        return self.ranks[direction]

    def metrics(self, direction: str = "both") -> dict[str, float]:
        """See :func:`metrics_from_ranks`."""
        return metrics_from_ranks(self.ranks_of(direction), self.ks)

    @property
    def mrr(self) -> float:
        return self.metrics()["mrr"]

    @property
    def mean_rank(self) -> float:
        return self.metrics()["mean_rank"]

    @property
    def num_queries(self) -> int:
        return len(self.ranks_of())

    def hits_at(self, k: int, direction: str = "both") -> float:
        """Fraction of queries of ``direction`` whose rank is at most ``k`` (any k, not only ks)."""
        return float((self.ranks_of(direction) <= k).to(torch.float64).mean())

    def as_dict(self) -> dict[str, dict[str, float]]:
        """``{"both": metrics, "o": metrics, "s": metrics}`` for the evaluated directions."""
        return {d: self.metrics(d) for d in ("both", *self.ranks)}

    def __str__(self) -> str:
        header = ["direction", "queries", "MRR", "MR", *(f"H@{k}" for k in self.ks)]
        lines = [f"filtered ranking (tie={self.tie})", "  ".join(f"{h:>9}" for h in header)]
        for direction, m in self.as_dict().items():
            cells = [direction, str(int(m["num_queries"])), f"{m['mrr']:.4f}"]
            cells += [f"{m['mean_rank']:.1f}", *(f"{m[f'hits@{k}']:.4f}" for k in self.ks)]
            lines.append("  ".join(f"{c:>9}" for c in cells))
        return "\n".join(lines)


def evaluate_ranking(
    score_all: ScoreAll,
    triples: Tensor,
    *,
    known_triples: Tensor,
    num_entities: int,
    batch_size: int = 256,
    ks: Sequence[int] = (1, 3, 10),
    tie: Tie = "realistic",
    directions: Sequence[str] = ("o", "s"),
) -> RankingResult:
    """Filtered ranks of ``triples`` (N, 3) against all ``num_entities`` entities.

    ``score_all(target, anchor, relation)`` scores every entity at position ``target`` (``"o"``:
    queries (anchor, relation, ?); ``"s"``: queries (?, relation, anchor)) as a (B, num_entities)
    tensor; it is called under ``torch.no_grad()`` with the batch's ids on ``triples``' device.
    ``known_triples`` are all true triples (train, valid and test): they define what is filtered.
    NaN scores raise ``ValueError``. Cost: N / batch_size calls of ``score_all`` per direction plus
    O(N num_entities) comparisons; memory O(batch_size num_entities) plus the filter index.
    """
    check_ranking_inputs(triples, known_triples, num_entities, tie)
    if not directions or len(set(directions)) != len(directions) or set(directions) - {"o", "s"}:
        raise ValueError(f"directions must be distinct values among 'o', 's', got {directions!r}")
    if batch_size < 1 or any(k < 1 for k in ks):
        raise ValueError(f"batch_size and ks must be positive, got {batch_size} and {ks}")

    ranks = {}
    with torch.no_grad():
        for direction in directions:
            index = FilterIndex(known_triples, direction, num_entities)
            anchor_col, answer_col = _COLUMNS[direction]
            parts = []
            for start in range(0, len(triples), batch_size):
                batch = triples[start : start + batch_size]
                anchors, relations = batch[:, anchor_col], batch[:, 1]
                scores = score_all(direction, anchors, relations)
                _check_scores(scores, batch, start, direction, num_entities)
                rows, cols = index.lookup(anchors, relations)
                answers = batch[:, answer_col]
                parts.append(filtered_ranks(scores, answers, rows, cols, tie).cpu())
            ranks[direction] = torch.cat(parts)
    return RankingResult(ranks=ranks, ks=tuple(ks), tie=tie)


def check_ranking_inputs(
    triples: Tensor, known_triples: Tensor, num_entities: int, tie: str
) -> None:
    """Raise ``ValueError`` unless ``triples`` (non-empty) and ``known_triples`` are ``(N, 3)`` id
    tensors within ``num_entities`` and ``tie`` is a known tie policy."""
    _check_triples("triples", triples, num_entities)
    _check_triples("known_triples", known_triples, num_entities)
    if len(triples) == 0:
        raise ValueError("no triples to rank")
    if tie not in _TIES:
        raise ValueError(f"tie must be one of {_TIES}, got {tie!r}")


def _check_triples(name: str, triples: Tensor, num_entities: int) -> None:
    if triples.dim() != 2 or triples.shape[1] != 3 or triples.dtype != torch.long:
        raise ValueError(
            f"{name} must be an (N, 3) int64 tensor, got {tuple(triples.shape)} {triples.dtype}"
        )
    if len(triples) == 0:
        return
    entities = triples[:, [0, 2]]
    bad_entity = int(entities.min()) < 0 or int(entities.max()) >= num_entities
    if bad_entity or int(triples[:, 1].min()) < 0:
        raise ValueError(f"{name}: entity ids must lie in [0, {num_entities}), relation ids >= 0")


def _check_scores(
    scores: Tensor, batch: Tensor, start: int, direction: str, num_entities: int
) -> None:
    if scores.shape != (len(batch), num_entities):
        raise ValueError(
            f"score_all({direction!r}, ...) returned shape {tuple(scores.shape)}, "
            f"expected ({len(batch)}, {num_entities})"
        )
    # a NaN makes its row's sum NaN (so does +inf with -inf): check only those rows exactly
    suspects = torch.isnan(scores.sum(dim=1)).nonzero()[:, 0]
    nan_rows = suspects[torch.isnan(scores[suspects]).any(dim=1)]
    if len(nan_rows):
        i = int(nan_rows[0])
        s, r, o = (int(x) for x in batch[i])
        query = f"({s}, {r}, ?)" if direction == "o" else f"(?, {r}, {o})"
        raise ValueError(
            f"score_all({direction!r}, ...) returned NaN scores for query {query} "
            f"(triple index {start + i}); ranks would be meaningless"
        )
