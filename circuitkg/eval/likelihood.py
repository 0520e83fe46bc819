"""Test log-likelihood of a generative model."""

from __future__ import annotations

import torch
from torch import Tensor

__all__ = ["mean_log_likelihood"]


def mean_log_likelihood(log_probs: Tensor) -> float:
    """The mean of ``log_probs`` (any shape, e.g. log p(s, r, o) per test triple), in float64.

    A -inf entry (a test triple the model deems impossible) makes the mean -inf; NaN or an empty
    input raises ``ValueError``. O(N).
    """
    values = torch.as_tensor(log_probs).detach().to(torch.float64)
    if values.numel() == 0:
        raise ValueError("no log-probabilities to average")
    if bool(values.isnan().any()):
        raise ValueError("log_probs contains NaN")
    return float(values.mean())
