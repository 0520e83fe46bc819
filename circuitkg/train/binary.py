"""Paper 002's 1-vs-all loss: sigmoid binary cross-entropy averaged over all entities (its eq. 1-2).

For a query ``(h, r, ?)`` with scores ``z`` over the ``n`` entities, each entity is its own binary
event, ``ŷ_i = σ(z_i)`` the predicted probability that ``(h, r, i)`` holds, and ``y = e_t`` the
one-hot target (1vsAll). The loss is ``-(1/n) Σ_i [y_i log ŷ_i + (1 - y_i) log(1 - ŷ_i)]``, per
query, averaged over the batch. Paper 002's calibration is binary and per entity too:

* **label smoothing** (its 3.3.1): every binary target moves towards 1/2 by ``α/2``:
  ``y^s_i = (1 - α) y_i + α / 2`` (``1 - α/2`` for the true entity, ``α/2`` for the others);
* **label relaxation** (its 3.3.2, Lienen & Hüllermeier 2021): the target of event ``i`` is the
  credal set ``{q : q(observed) >= 1 - α}``, and the loss ``min_q KL(q || ŷ_i)``: zero when the
  model already gives the observed outcome at least ``1 - α``, else
  ``(1 - α) log((1 - α) / p) + α log(α / (1 - p))`` with ``p`` the model's probability of the
  observed outcome (``ŷ_i`` for the true entity, ``1 - ŷ_i`` for the others).

All are computed from the logits with ``logsigmoid`` (``log(1 - σ(z)) = logsigmoid(-z)``), so
nothing underflows for confident scores. Cost ``O(B n)``.

Only the score form has scores to pass through a sigmoid: :func:`bce_loss` refuses the normalised
forms, whose ``p(o | s, r)`` is already a distribution (use ``ce`` or ``pll`` there).
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import Tensor

from circuitkg.errors import FormError
from circuitkg.train.config import LOSSES


def binary_one_vs_all(
    logits: Tensor, targets: Tensor, loss: str = "ce", alpha: float = 0.0
) -> Tensor:
    """Mean over queries of the entity-averaged binary loss of ``logits (B, n)`` against the
    one-hot ``targets (B,)``; ``loss`` is ``"ce"``, ``"label_smoothing"`` or ``"label_relaxation"``
    (module docstring)."""
    if logits.ndim != 2 or targets.shape != (logits.shape[0],):
        raise ValueError(
            f"expected logits (B, n) and targets (B,), got {tuple(logits.shape)} and {tuple(targets.shape)}"
        )
    if loss not in LOSSES:
        raise ValueError(f"unknown loss {loss!r}; choose one of {LOSSES}")
    if loss != "ce" and not 0.0 < alpha < 1.0:
        raise ValueError(f"alpha must lie in (0, 1), got {alpha}")
    onehot = F.one_hot(targets, logits.shape[1]).to(logits.dtype)
    log_yes, log_no = F.logsigmoid(logits), F.logsigmoid(-logits)
    if loss == "ce":
        return -(onehot * log_yes + (1 - onehot) * log_no).mean()
    if loss == "label_smoothing":
        smoothed = (1 - alpha) * onehot + alpha / 2
        return -(smoothed * log_yes + (1 - smoothed) * log_no).mean()
    log_observed = torch.where(onehot.bool(), log_yes, log_no)
    log_other = torch.where(onehot.bool(), log_no, log_yes)
    kl = (1 - alpha) * (math.log(1 - alpha) - log_observed) + alpha * (math.log(alpha) - log_other)
    inside = log_observed >= math.log(1 - alpha)  # the model's own outcome lies in the credal set
    return torch.where(inside, torch.zeros_like(kl), kl).mean()


def bce_loss(compiled, triples: Tensor, loss: str = "ce", alpha: float = 0.0) -> Tensor:
    """Paper 002's objective: :func:`binary_one_vs_all` of the object query ``(s, r, ?)`` plus that
    of the subject query ``(?, r, o)`` (in place of its reciprocal relations), on the scores."""
    if compiled.form != "score":
        raise FormError(
            f"the bce objective passes scores through a sigmoid (score form); this model is "
            f"{compiled.form}: use ce or pll"
        )
    s, r, o = triples.unbind(1)
    scores_o = compiled.score_all("o", s=s, r=r)
    scores_s = compiled.score_all("s", r=r, o=o)
    return binary_one_vs_all(scores_o, o, loss, alpha) + binary_one_vs_all(scores_s, s, loss, alpha)
