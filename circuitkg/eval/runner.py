"""One call that evaluates a model on a split: ranking, test log-likelihood and calibration.

:func:`evaluate` returns filtered MRR and Hits@1/3/10 over both directions (realistic ties unless
asked otherwise), and for normalised forms the mean ``log p(s, r, o)`` of the split's triples.

**Calibration.** A triple's probability of being true is derived from the model's conditionals,
with no fitted parameters: if the positives are the split's triples and the negatives are uniform
corruptions of the subject or the object (half each), Bayes' rule with the model standing in for the
data distribution gives

``P(true | s, r, o) = 1 / (1 + 1 / (2 n p(o | s, r)) + 1 / (2 n p(s | r, o)))``

for ``n`` entities (in score form the conditionals are the softmaxes of the scores). The ECE of these
probabilities is computed against the dataset's negatives where it has them (CoDEx:
``valid_negatives``/``test_negatives``, hard negatives, so a model calibrated for random
corruptions shows up as over-confident there), otherwise against one sampled corruption per
positive (subject or object at random, re-drawn while the result is a known triple).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
from torch import Tensor

from circuitkg.compile import compile as compile_
from circuitkg.compilers import KGEModel
from circuitkg.data import KnowledgeGraph
from circuitkg.eval.calibration import expected_calibration_error
from circuitkg.eval.likelihood import mean_log_likelihood
from circuitkg.eval.ranking import RankingResult, Tie, evaluate_ranking, keyword_scorer
from circuitkg.executor import CompiledCircuit
from circuitkg.ir import Circuit

__all__ = ["EvaluationResult", "corrupt", "evaluate", "triple_probabilities"]


@dataclass(frozen=True)
class EvaluationResult:
    """Metrics of one split. ``log_likelihood`` is ``None`` in score form; ``ece`` is ``None``
    when calibration was not asked for; ``negatives`` says what the ECE was measured against."""

    split: str
    ranking: RankingResult
    log_likelihood: float | None
    ece: float | None
    negatives: str | None

    def as_dict(self) -> dict[str, float | None]:
        """MRR, mean rank, Hits@k (both directions pooled), log-likelihood and ECE."""
        metrics = self.ranking.metrics()
        out: dict[str, float | None] = {k: metrics[k] for k in ("mrr", "mean_rank")}
        out |= {f"hits@{k}": metrics[f"hits@{k}"] for k in self.ranking.ks}
        out["log_likelihood"] = self.log_likelihood
        out["ece"] = self.ece
        return out

    def __str__(self) -> str:
        m = self.as_dict()
        hits = "  ".join(f"Hits@{k} {m[f'hits@{k}']:.4f}" for k in self.ranking.ks)
        lines = [f"{self.split}: MRR {m['mrr']:.4f}  {hits}  (filtered, both directions)"]
        if self.log_likelihood is not None:
            lines.append(f"{self.split}: mean log-likelihood {self.log_likelihood:.4f} nats")
        if self.ece is not None:
            lines.append(f"{self.split}: ECE {self.ece:.4f} (negatives: {self.negatives})")
        return "\n".join(lines)


def evaluate(
    model_or_compiled,
    kg: KnowledgeGraph,
    split: str = "test",
    *,
    batch_size: int = 512,
    tie: Tie = "realistic",
    calibration: bool = True,
    seed: int = 0,
) -> EvaluationResult:
    """Evaluate a model, its :class:`~circuitkg.CompiledCircuit` or a schema-constrained circuit
    (:class:`~circuitkg.constraints.ConstrainedCircuit`) on ``kg``'s ``split``.

    Cost: two ``score_all`` passes over the split (``O(N n K)``) plus, for normalised forms, one
    ``log_prob`` pass and, for calibration, four ``log_conditional_of`` passes.
    """
    compiled = _compiled(model_or_compiled)
    triples = kg.split(split).to(compiled.device)
    was_training = compiled.training
    compiled.eval()
    try:
        ranking = evaluate_ranking(
            keyword_scorer(compiled.score_all),
            triples,
            known_triples=kg.known_triples().to(compiled.device),
            num_entities=kg.num_entities,
            batch_size=batch_size,
            tie=tie,
        )
        with torch.no_grad():
            log_likelihood = (
                mean_log_likelihood(_batched(compiled.log_prob, triples, batch_size))
                if compiled.form != "score"
                else None
            )
            ece, negatives = None, None
            if calibration:
                negatives = f"{split}_negatives"
                if negatives in kg.splits and len(kg.split(negatives)):
                    false = kg.split(negatives).to(compiled.device)
                else:
                    false = corrupt(triples, kg, seed=seed)
                    negatives = "sampled corruptions"
                probs = torch.cat(
                    [
                        triple_probabilities(compiled, triples, batch_size),
                        triple_probabilities(compiled, false, batch_size),
                    ]
                )
                labels = torch.cat([torch.ones(len(triples)), torch.zeros(len(false))])
                ece = expected_calibration_error(probs, labels)
    finally:
        compiled.train(was_training)
    return EvaluationResult(split, ranking, log_likelihood, ece, negatives)


def triple_probabilities(
    compiled: CompiledCircuit, triples: Tensor, batch_size: int = 512
) -> Tensor:
    """``P(true | s, r, o)`` of the module docstring, shape ``(N,)``, float64.

    A circuit with a restricted support (a constrained circuit's ``consistent(triples)``) gives
    exactly 0 to triples outside it, whose conditionals are undefined.
    """
    consistent = getattr(compiled, "consistent", None)
    if consistent is not None:
        inside = consistent(triples).to(triples.device)
        probs = torch.zeros(len(triples), dtype=torch.float64, device=triples.device)
        if bool(inside.any()):
            probs[inside] = _triple_probabilities(compiled, triples[inside], batch_size)
        return probs
    return _triple_probabilities(compiled, triples, batch_size)


def _triple_probabilities(compiled, triples: Tensor, batch_size: int) -> Tensor:
    n = compiled.domains["o"]

    def log_odds_terms(batch: Tensor) -> Tensor:
        s, r, o = batch[:, 0], batch[:, 1], batch[:, 2]
        log_o = compiled.log_conditional_of("o", o, s=s, r=r)
        log_s = compiled.log_conditional_of("s", s, r=r, o=o)
        return torch.stack([log_o, log_s], dim=1)

    logs = _batched(log_odds_terms, triples, batch_size).to(torch.float64)
    # 1 / (2 n p) = exp(-log p - log 2n); P = 1 / (1 + Σ) = sigmoid(-log Σ)
    log_sum = torch.logsumexp(-logs - math.log(2 * n), dim=1)
    return torch.sigmoid(-log_sum)


def corrupt(triples: Tensor, kg: KnowledgeGraph, seed: int = 0, max_tries: int = 100) -> Tensor:
    """One negative per triple: its subject or object (at random) replaced by a uniform entity,
    re-drawn until the result is not a known triple (at most ``max_tries`` rounds)."""
    gen = torch.Generator().manual_seed(seed)
    n = kg.num_entities
    known = kg.known_triples()
    known_keys = torch.unique((known[:, 0] * kg.num_relations + known[:, 1]) * n + known[:, 2])
    out = triples.cpu().clone()
    column = torch.where(torch.rand(len(out), generator=gen) < 0.5, 0, 2)
    pending = torch.arange(len(out))
    for _ in range(max_tries):
        if not len(pending):
            break
        out[pending, column[pending]] = torch.randint(n, (len(pending),), generator=gen)
        keys = (out[pending, 0] * kg.num_relations + out[pending, 1]) * n + out[pending, 2]
        pos = torch.searchsorted(known_keys, keys).clamp(max=len(known_keys) - 1)
        pending = pending[known_keys[pos] == keys]
    return out.to(triples.device)


def _batched(fn, triples: Tensor, batch_size: int) -> Tensor:
    return torch.cat([fn(triples[i : i + batch_size]) for i in range(0, len(triples), batch_size)])


def _compiled(model_or_compiled):
    """A circuit that answers queries: compiled and constrained circuits as they are, models compiled."""
    if isinstance(model_or_compiled, KGEModel | Circuit):
        return compile_(model_or_compiled)
    return model_or_compiled
