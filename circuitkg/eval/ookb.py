"""Evaluation with entities unseen in training: OOKB triple classification and Head-R/Tail-R ranking.

**OOKB splits** (:func:`circuitkg.data.load_ookb`).
The trained model is bound to the graph with the auxiliary edges (``model.on(split.graph_with_aux())``),
so that its encoder embeds every unseen entity from its aux edges, and then:

* triple classification of the labelled test triples with per-relation dev thresholds
  (:func:`~circuitkg.eval.triple_classification.triple_classification`), criterion ``score``;
* for normalised forms, the same with ``log p(o | s, r)`` (criterion ``conditional``), and the mean
  test log-likelihood ``log p(s, r, o)`` of the true test triples, of those among them that
  involve an unseen entity, and of the uniform distribution over the graph's triples.

Cost: one encoder pass over the graph with aux edges, then ``O(|dev| + |test|)`` triple values
(``O(n)`` more per triple for the conditional criterion).

**Head-R / Tail-R splits** (:func:`circuitkg.data.unseen_entity_split`): the model bound to the
graph with aux edges ranks, for every test triple, all entities at its hidden (unseen) position,
filtered by every known true triple (:func:`evaluate_unseen_ranking`; MRR and Hits@k, realistic
ties). ``O(|test| n K)``.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from circuitkg.eval.grail import uniform_log_likelihood
from circuitkg.eval.ranking import RankingResult, evaluate_ranking, keyword_scorer
from circuitkg.eval.triple_classification import (
    TripleClassificationResult,
    triple_classification,
)

__all__ = ["OOKBEvaluation", "evaluate_ookb", "evaluate_unseen_ranking"]


@dataclass(frozen=True)
class OOKBEvaluation:
    """Triple classification on an OOKB split and, for normalised forms, log-likelihoods."""

    score: TripleClassificationResult
    conditional: TripleClassificationResult | None
    test_log_likelihood: float | None
    unseen_log_likelihood: float | None
    uniform_log_likelihood: float
    num_test_positives: int
    num_unseen_positives: int

    def as_dict(self) -> dict[str, float | int]:
        out: dict[str, float | int] = {
            "accuracy": self.score.accuracy,
            "dev_accuracy": self.score.dev_accuracy,
            "num_test": self.score.num_test,
        }
        if self.conditional is not None:
            out |= {
                "conditional_accuracy": self.conditional.accuracy,
                "conditional_dev_accuracy": self.conditional.dev_accuracy,
                "test_log_likelihood": self.test_log_likelihood,
                "unseen_test_log_likelihood": self.unseen_log_likelihood,
                "uniform_log_likelihood": self.uniform_log_likelihood,
            }
        return out

    def __str__(self) -> str:
        lines = [
            f"triple classification ({self.score.num_test} test triples, dev thresholds per "
            f"relation): accuracy {self.score.accuracy:.4f} (dev {self.score.dev_accuracy:.4f})"
        ]
        if self.conditional is not None:
            lines.append(
                f"with log p(o | s, r) as the criterion: accuracy {self.conditional.accuracy:.4f} "
                f"(dev {self.conditional.dev_accuracy:.4f})"
            )
            lines.append(
                f"test log-likelihood {self.test_log_likelihood:.4f} nats over "
                f"{self.num_test_positives} true triples, {self.unseen_log_likelihood:.4f} over "
                f"the {self.num_unseen_positives} with an unseen entity (uniform "
                f"{self.uniform_log_likelihood:.4f})"
            )
        return "\n".join(lines)


def evaluate_ookb(model, split, batch_size: int = 4096) -> OOKBEvaluation:
    """Evaluate ``model`` (an encoded KGE model, trained on ``split.train``) on ``split``."""
    from circuitkg.compile import compile as compile_

    graph = split.graph_with_aux()
    compiled = compile_(model.on(graph)).eval()
    with torch.no_grad():
        score = triple_classification(compiled, split, batch_size=batch_size)
        uniform = uniform_log_likelihood(graph.num_nodes, graph.num_relations)
        positives = split.test.positives.to(compiled.device)
        unseen = split.unseen(positives.cpu())
        if compiled.form == "score":
            return OOKBEvaluation(
                score, None, None, None, uniform, len(positives), int(unseen.sum())
            )
        conditional = triple_classification(
            compiled, split, criterion="conditional", batch_size=batch_size
        )
        log_p = torch.cat([compiled.log_prob(b) for b in positives.split(batch_size)]).cpu()
    mean_unseen = float(log_p[unseen].mean()) if bool(unseen.any()) else float("nan")
    return OOKBEvaluation(
        score, conditional, float(log_p.mean()), mean_unseen, uniform, len(log_p), int(unseen.sum())
    )


def evaluate_unseen_ranking(model, split, batch_size: int = 256) -> RankingResult:
    """Filtered ranks of ``split.test`` at its hidden position (module docstring)."""
    from circuitkg.compile import compile as compile_

    graph = split.graph_with_aux()
    compiled = compile_(model.on(graph)).eval()
    return evaluate_ranking(
        keyword_scorer(compiled.score_all),
        split.test.to(compiled.device),
        known_triples=split.known.to(compiled.device),
        num_entities=graph.num_nodes,
        batch_size=batch_size,
        directions=(split.direction,),
    )
