"""Triple classification with per-relation thresholds chosen on dev (Socher et al. 2013).

A triple ``(s, r, o)`` is predicted true when its criterion value is at least the threshold
``t_r`` of its relation. ``t_r`` maximises the accuracy on the labelled dev triples of ``r``;
a relation without dev triples takes the threshold chosen on all dev triples at once. Criteria:

* ``"score"``: the model's score ``φ(s, r, o)`` in score form; in the normalised forms
  ``log p(s, r, o)`` (for a squared model ``φ`` itself is sign-ambiguous);
* ``"conditional"`` (normalised forms): ``log p(o | s, r)``, exact over all entities.

**Threshold choice.** The candidates are the distinct dev values and ``+∞`` (everything
negative); a triple is positive iff ``value >= t``, so these candidates reach every achievable
accuracy. Among the best, the smallest wins (deterministic). Cost: ``O(n log n)`` per relation.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor

__all__ = [
    "TripleClassificationResult",
    "best_threshold",
    "choose_thresholds",
    "classification_accuracy",
    "triple_classification",
    "triple_values",
]

CRITERIA = ("score", "conditional")


def best_threshold(values: Tensor, labels: Tensor) -> tuple[float, int]:
    """``(t, correct)``: the threshold maximising ``#(label, value >= t) + #(not label, value < t)``
    and that count (module docstring for the candidates and ties)."""
    values = values.detach().double().cpu()
    labels = labels.bool().cpu()
    candidates = torch.cat([torch.unique(values), torch.tensor([float("inf")], dtype=values.dtype)])
    positives = torch.sort(values[labels]).values
    negatives = torch.sort(values[~labels]).values
    # positives at or above t, plus negatives strictly below t
    above = len(positives) - torch.searchsorted(positives, candidates, right=False)
    below = torch.searchsorted(negatives, candidates, right=False)
    correct = above + below
    best = int(torch.argmax(correct))  # the first maximum: the smallest threshold
    return float(candidates[best]), int(correct[best])


def choose_thresholds(
    values: Tensor, labels: Tensor, relations: Tensor, num_relations: int
) -> tuple[Tensor, float]:
    """``(thresholds (num_relations,), global threshold)``; relations absent from the data get the
    global one."""
    if len(values) == 0:
        raise ValueError("no dev triples to choose thresholds on")
    overall, _ = best_threshold(values, labels)
    thresholds = torch.full((num_relations,), overall, dtype=torch.float64)
    relations = relations.cpu()
    for r in torch.unique(relations).tolist():
        mask = relations == r
        thresholds[r], _ = best_threshold(values.cpu()[mask], labels.cpu()[mask])
    return thresholds, overall


def classification_accuracy(
    values: Tensor, labels: Tensor, relations: Tensor, thresholds: Tensor
) -> float:
    """The fraction of triples whose prediction ``value >= t_r`` equals their label."""
    if len(values) == 0:
        return float("nan")
    predicted = values.detach().double().cpu() >= thresholds[relations.cpu()]
    return float((predicted == labels.bool().cpu()).double().mean())


def triple_values(compiled, triples: Tensor, criterion: str = "score", batch_size: int = 4096):
    """The criterion value of each triple (module docstring), no gradient, in batches."""
    if criterion not in CRITERIA:
        raise ValueError(f"unknown criterion {criterion!r}; choose one of {CRITERIA}")
    if criterion == "conditional" and compiled.form == "score":
        raise ValueError(
            "criterion 'conditional' thresholds log p(o | s, r), which needs a normalised form "
            "(monotone or squared); this model is in score form"
        )
    out = []
    with torch.no_grad():
        device = compiled.device
        for batch in torch.split(triples.to(device), batch_size):
            if criterion == "conditional":
                out.append(
                    compiled.log_conditional_of("o", batch[:, 2], s=batch[:, 0], r=batch[:, 1])
                )
            elif compiled.form == "score":
                out.append(compiled.score(batch))
            else:
                out.append(compiled.log_prob(batch))
    return torch.cat(out) if out else torch.zeros(0, dtype=torch.float64)


@dataclass(frozen=True)
class TripleClassificationResult:
    """Test and dev accuracy under the per-relation dev thresholds of one criterion."""

    criterion: str
    accuracy: float
    dev_accuracy: float
    thresholds: Tensor
    global_threshold: float
    num_test: int

    def as_dict(self) -> dict[str, float | int | str]:
        return {
            "criterion": self.criterion,
            "accuracy": self.accuracy,
            "dev_accuracy": self.dev_accuracy,
            "num_test": self.num_test,
        }


def triple_classification(
    model, split=None, *, dev=None, test=None, criterion: str = "score", batch_size: int = 4096
) -> TripleClassificationResult:
    """Accuracy on ``test`` with thresholds chosen on ``dev`` (module docstring).

    ``model`` is a model (compiled here) or a compiled circuit, over the entities the triples use:
    for OOKB splits, ``model.on(split.graph_with_aux())``. ``split`` supplies ``dev`` and ``test``
    (:class:`~circuitkg.data.LabelledTriples`: ``.triples`` and ``.labels``), or pass them.
    """
    from circuitkg.compile import compile as compile_
    from circuitkg.executor import CompiledCircuit

    dev = dev if dev is not None else split.dev
    test = test if test is not None else split.test
    compiled = model if isinstance(model, CompiledCircuit) else compile_(model)
    num_relations = compiled.domains["r"]
    dev_values = triple_values(compiled, dev.triples, criterion, batch_size)
    thresholds, overall = choose_thresholds(
        dev_values, dev.labels, dev.triples[:, 1], num_relations
    )
    test_values = triple_values(compiled, test.triples, criterion, batch_size)
    return TripleClassificationResult(
        criterion=criterion,
        accuracy=classification_accuracy(test_values, test.labels, test.triples[:, 1], thresholds),
        dev_accuracy=classification_accuracy(dev_values, dev.labels, dev.triples[:, 1], thresholds),
        thresholds=thresholds,
        global_threshold=overall,
        num_test=len(test),
    )
