"""Calibration of predicted probabilities of binary outcomes (e.g. "this triple is true").

Predictions are grouped into ``num_bins`` equal-width bins over [0, 1] (bin b holds
``b / num_bins <= p < (b + 1) / num_bins``; p = 1 falls in the last bin). A bin is calibrated when
the mean predicted probability equals the observed frequency of positive labels.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor

__all__ = ["ReliabilityTable", "expected_calibration_error", "reliability_table"]


@dataclass(frozen=True)
class ReliabilityTable:
    """Per-bin statistics of a reliability diagram; all fields have shape ``(num_bins,)``.

    ``mean_probability`` and ``frequency`` (fraction of positive labels) are NaN for empty bins.
    """

    lower: Tensor
    upper: Tensor
    count: Tensor
    mean_probability: Tensor
    frequency: Tensor

    @property
    def expected_calibration_error(self) -> float:
        """Sum over bins of count / total * |frequency - mean probability|."""
        gap = (self.frequency - self.mean_probability).abs().nan_to_num(0.0)
        return float((self.count * gap).sum() / self.count.sum())

    def __str__(self) -> str:
        lines = ["          bin    count  mean p    freq"]
        last = len(self.count) - 1
        for b, (lo, hi, n, p, f) in enumerate(
            zip(
                self.lower,
                self.upper,
                self.count,
                self.mean_probability,
                self.frequency,
                strict=True,
            )
        ):
            close = "]" if b == last else ")"
            lines.append(f"[{lo:.2f}, {hi:.2f}{close}  {int(n):7d}  {p:6.3f}  {f:6.3f}")
        return "\n".join(lines)


def reliability_table(
    probabilities: Tensor, labels: Tensor, num_bins: int = 10
) -> ReliabilityTable:
    """Bin ``probabilities`` (any shape, values in [0, 1]) against ``labels`` (0/1 or bool).

    Computed in float64 with ``bincount``: O(N + num_bins).
    """
    p = torch.as_tensor(probabilities).detach().to("cpu", torch.float64).flatten()
    y = torch.as_tensor(labels).detach().to("cpu", torch.float64).flatten()
    if num_bins < 1:
        raise ValueError(f"num_bins must be positive, got {num_bins}")
    if p.shape != y.shape or len(p) == 0:
        raise ValueError(
            f"need equally many probabilities and labels, at least one, got {len(p)} and {len(y)}"
        )
    if p.isnan().any() or (p < 0).any() or (p > 1).any():
        raise ValueError("probabilities must lie in [0, 1] (no NaN)")
    if ((y != 0) & (y != 1)).any():
        raise ValueError("labels must be 0 or 1")
    bins = (p * num_bins).floor().long().clamp_(max=num_bins - 1)
    count = torch.bincount(bins, minlength=num_bins)
    edges = torch.linspace(0.0, 1.0, num_bins + 1, dtype=torch.float64)
    return ReliabilityTable(
        lower=edges[:-1],
        upper=edges[1:],
        count=count,
        mean_probability=torch.bincount(bins, weights=p, minlength=num_bins) / count,
        frequency=torch.bincount(bins, weights=y, minlength=num_bins) / count,
    )


def expected_calibration_error(probabilities: Tensor, labels: Tensor, num_bins: int = 10) -> float:
    """ECE: the bin-count-weighted mean of |frequency of positives - mean probability| per bin."""
    return reliability_table(probabilities, labels, num_bins).expected_calibration_error
