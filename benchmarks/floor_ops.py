"""Building blocks of the hand-written torch floors (shared by bench_core.py and bench_train.py).

The floors are the best simple torch for the same work, written without circuitkg.
"""

from __future__ import annotations

import torch


class SelfGram(torch.autograd.Function):
    """``X.T @ X`` whose backward is one matmul, ``X (g + g.T)`` (autograd's ``mm`` takes two)."""

    @staticmethod
    def forward(ctx, x: torch.Tensor) -> torch.Tensor:
        ctx.save_for_backward(x)
        return x.T @ x

    @staticmethod
    def backward(ctx, g: torch.Tensor) -> torch.Tensor:
        (x,) = ctx.saved_tensors
        return x @ (g + g.T)


def gram(x: torch.Tensor) -> torch.Tensor:
    return SelfGram.apply(x)
