"""Training objectives: the loss of one mini-batch of true triples, averaged over the batch.

* :func:`pll_loss`: minus the weighted pseudo-log-likelihood (paper 004)
  ``w_s log p(s | r, o) + w_r log p(r | s, o) + w_o log p(o | s, r)``. Normalised forms use
  :meth:`~circuitkg.CompiledCircuit.log_mass` (squared: the target summed out through one Gram
  matrix per table, ``O(|X| W² + B W²)`` for input width ``W`` and shared by the terms, or
  through all its values, ``O(B |X| W)``, whichever the executor counts cheaper). In score
  form the conditionals are softmaxes of the scores, i.e. 1-vs-all cross-entropy with relation
  prediction as an extra term.
* :func:`mle_loss`: minus ``log p(s, r, o) = log φ(s, r, o)² - log Z`` (squared; ``φ`` for monotone),
  with ``Z`` computed once per batch.
* :func:`one_vs_all_loss`: the 1-vs-all loss of the object query ``(s, r, ?)`` plus that of the
  subject query ``(?, r, o)``, without reciprocal relations. The logits are the log-conditionals
  (in score form, ``log_softmax`` of the scores, so ``loss="ce"`` is the usual cross-entropy);
  ``loss`` also takes ``label_smoothing`` and ``label_relaxation`` with parameter ``alpha``.
* :func:`~circuitkg.train.binary.bce_loss` (score form; paper 002's protocol): sigmoid binary
  cross-entropy averaged over all entities for ``(s, r, ?)`` and ``(?, r, o)``, with binary label
  smoothing or relaxation by ``loss`` and ``alpha``.
* :func:`margin_loss` (score form; TransE's objective, Bordes et al. 2013, and paper 003's):
  ``mean max(0, γ - φ(s, r, o) + φ(s', r, o'))`` against corrupted triples, each with its head or
  its tail (probability 1/2 each) replaced by a uniform entity, drawn from a seeded generator.
"""

from __future__ import annotations

from collections.abc import Callable

import torch
import torch.nn.functional as F
from torch import Tensor

from circuitkg.executor import KGQueries, training_step
from circuitkg.train.binary import bce_loss

#: ``objective(compiled, triples) -> scalar loss`` (lower is better)
Objective = Callable[[KGQueries, Tensor], Tensor]

_QUERIES = (("s", 0, ("r", "o")), ("r", 1, ("s", "o")), ("o", 2, ("s", "r")))
_COLUMN = {"s": 0, "r": 1, "o": 2}


def pll_loss(
    compiled: KGQueries, triples: Tensor, weights: tuple[float, float, float] = (1, 1, 1)
) -> Tensor:
    """``-mean_b Σ_v w_v log p(v_b | rest_b)`` for ``v`` in ``(s, r, o)``; zero weights are skipped.

    Each term is :meth:`~circuitkg.CompiledCircuit.log_conditional_of`; the executor sums ``v``
    out by the cheaper of its Gram and all-values plans (:mod:`circuitkg.executor.summation`). The
    terms run in one :func:`~circuitkg.executor.training_step`, so they share Grams, gathers and
    the full triple's ``log φ²``.
    """
    columns = {v: triples[:, c] for v, c in _COLUMN.items()}
    total = None
    with training_step():
        for (target, _, given), weight in zip(_QUERIES, weights, strict=True):
            if weight == 0:
                continue
            evidence = {v: columns[v] for v in given}
            term = compiled.log_conditional_of(target, columns[target], **evidence).mean()
            total = -weight * term if total is None else total - weight * term
    if total is None:
        raise ValueError("all PLL weights are zero")
    return total


def mle_loss(compiled: KGQueries, triples: Tensor) -> Tensor:
    """``-mean_b log p(s_b, r_b, o_b)`` (normalised forms only)."""
    return -compiled.log_prob(triples).mean()


def one_vs_all_loss(
    compiled: KGQueries, triples: Tensor, loss: str = "ce", alpha: float = 0.0
) -> Tensor:
    """Object-query loss plus subject-query loss, each averaged over the batch."""
    loss_fn = _loss_function(loss, alpha)
    with training_step():
        logits_o = compiled.log_conditional("o", s=triples[:, 0], r=triples[:, 1])
        logits_s = compiled.log_conditional("s", r=triples[:, 1], o=triples[:, 2])
    return loss_fn(logits_o, triples[:, 2]) + loss_fn(logits_s, triples[:, 0])


def _loss_function(loss: str, alpha: float) -> Callable[[Tensor, Tensor], Tensor]:
    if loss == "ce":  # the logits are log-probabilities already: no second log_softmax
        return lambda log_probs, targets: F.nll_loss(log_probs, targets)
    from circuitkg.train import label_relaxation

    if loss == "label_smoothing":
        return lambda logits, targets: label_relaxation.label_smoothing_cross_entropy(
            logits, targets, alpha
        )
    if loss == "label_relaxation":
        return lambda logits, targets: label_relaxation.label_relaxation_loss(
            logits, targets, alpha
        )
    raise ValueError(f"unknown loss {loss!r}; choose ce, label_smoothing or label_relaxation")


def corrupt(
    triples: Tensor, num_entities: int, generator: torch.Generator, negatives: int = 1
) -> Tensor:
    """``negatives`` corrupted copies of each triple (``(negatives B, 3)``, copy-major): head or
    tail, with probability 1/2 each, replaced by a uniform entity (which may be the original)."""
    out = triples.repeat(negatives, 1)
    n = len(out)
    entity = torch.randint(0, num_entities, (n,), generator=generator).to(triples.device)
    tail = (torch.rand(n, generator=generator) < 0.5).to(triples.device)
    out[:, 0] = torch.where(tail, out[:, 0], entity)
    out[:, 2] = torch.where(tail, entity, out[:, 2])
    return out


def margin_loss(
    compiled: KGQueries,
    triples: Tensor,
    margin: float = 1.0,
    generator: torch.Generator | None = None,
    negatives: int = 1,
) -> Tensor:
    """``mean max(0, margin - φ(x) + φ(x'))`` over the triples and their :func:`corrupt` copies."""
    if compiled.form != "score":
        raise ValueError(
            f"the margin objective ranks scores (score form); this model is {compiled.form}: "
            "use pll or mle"
        )
    generator = generator if generator is not None else torch.Generator().manual_seed(0)
    corrupted = corrupt(triples, compiled.domains["s"], generator, negatives)
    positive = compiled.score(triples).repeat(negatives)
    return F.relu(margin - positive + compiled.score(corrupted)).mean()


def make_objective(
    name: str,
    *,
    pll_weights: tuple[float, float, float] = (1.0, 1.0, 1.0),
    loss: str = "ce",
    alpha: float = 0.0,
    margin: float = 1.0,
    negatives: int = 1,
    seed: int = 0,
) -> Objective:
    """The objective called ``name`` (``pll``, ``mle``, ``ce``, ``bce`` or ``margin``) with its options
    bound; ``margin`` draws its corruptions from one generator seeded with ``seed``."""
    if name == "pll":
        return lambda compiled, triples: pll_loss(compiled, triples, pll_weights)
    if name == "mle":
        return mle_loss
    if name == "ce":
        return lambda compiled, triples: one_vs_all_loss(compiled, triples, loss, alpha)
    if name == "bce":
        return lambda compiled, triples: bce_loss(compiled, triples, loss, alpha)
    if name == "margin":
        generator = torch.Generator().manual_seed(seed)
        return lambda compiled, triples: margin_loss(
            compiled, triples, margin, generator, negatives
        )
    raise ValueError(f"unknown objective {name!r}; choose pll, mle, ce, bce or margin")
