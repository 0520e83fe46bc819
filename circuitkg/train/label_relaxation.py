"""Label smoothing and label relaxation for 1-vs-all training (paper 002, section 3.3).

Both replace the one-hot target of the softmax cross-entropy ``-log p(y)`` over all ``n`` candidates,
``p = softmax(logits)``:

* **Label smoothing** (Szegedy et al. 2016): the target is ``q = (1 - α) e_y + α/n · 1``, and the
  loss ``-Σ_k q_k log p_k = (1 - α)(-log p_y) + α · mean_k(-log p_k)``.
* **Label relaxation** (Lienen & Hüllermeier 2021): the target is the credal set
  ``Q_α = {q : q_y >= 1 - α}`` and the loss ``min_{q ∈ Q_α} KL(q || p)``. If ``p_y >= 1 - α`` then
  ``p ∈ Q_α`` and the loss is 0; otherwise the minimiser is ``p^r`` with ``p^r_y = 1 - α`` and
  ``p^r_k = α p_k / (1 - p_y)`` for ``k != y``, which gives the closed form

  ``L = (1 - α) log((1 - α) / p_y) + α log(α / (1 - p_y))``.

  Its gradient equals that of ``KL(p^r || p)`` with ``p^r`` held fixed (the derivative through
  ``p^r`` vanishes because ``Σ_{k≠y} p^r_k = α`` is constant), as in the reference implementation.

Both cost ``O(B n)``; ``log(1 - p_y)`` is a log-sum-exp over the other logits, so nothing
underflows when the model is confident.
"""

from __future__ import annotations

import math

import torch
from torch import Tensor


def _check(logits: Tensor, targets: Tensor, alpha: float) -> None:
    if logits.ndim != 2 or targets.shape != (logits.shape[0],):
        raise ValueError(
            f"expected logits (B, n) and targets (B,), got {tuple(logits.shape)} and "
            f"{tuple(targets.shape)}"
        )
    if not 0.0 < alpha < 1.0:
        raise ValueError(f"alpha must lie in (0, 1), got {alpha}")


def _reduce(loss: Tensor, reduction: str) -> Tensor:
    if reduction == "mean":
        return loss.mean()
    if reduction == "sum":
        return loss.sum()
    if reduction == "none":
        return loss
    raise ValueError(f"reduction must be 'mean', 'sum' or 'none', got {reduction!r}")


def label_smoothing_cross_entropy(
    logits: Tensor, targets: Tensor, alpha: float, reduction: str = "mean"
) -> Tensor:
    """Cross-entropy against ``(1 - α) e_y + α/n · 1`` (see the module docstring)."""
    _check(logits, targets, alpha)
    log_p = torch.log_softmax(logits, dim=1)
    nll = -log_p.gather(1, targets.unsqueeze(1))[:, 0]
    return _reduce((1.0 - alpha) * nll - alpha * log_p.mean(dim=1), reduction)


def label_relaxation_loss(
    logits: Tensor, targets: Tensor, alpha: float, reduction: str = "mean"
) -> Tensor:
    """``min_{q: q_y >= 1-α} KL(q || softmax(logits))`` in closed form (see the module docstring)."""
    _check(logits, targets, alpha)
    log_z = torch.logsumexp(logits, dim=1)
    true = logits.gather(1, targets.unsqueeze(1))[:, 0]
    others = logits.scatter(1, targets.unsqueeze(1), float("-inf"))
    log_p_true = true - log_z
    log_p_rest = torch.logsumexp(others, dim=1) - log_z  # log(1 - p_y), exact for p_y -> 1
    kl = (1.0 - alpha) * (math.log(1.0 - alpha) - log_p_true) + alpha * (
        math.log(alpha) - log_p_rest
    )
    inside = log_p_true >= math.log(1.0 - alpha)
    return _reduce(torch.where(inside, torch.zeros_like(kl), kl), reduction)
