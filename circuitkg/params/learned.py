"""Learned tables: ``T = θ`` (:class:`FreeTable`) and ``T = exp(θ)`` (:class:`PositiveTable`).

Rows are gathered through :func:`~circuitkg.params.gather.gather`, so inside a training step a
batch's rows cost ``O(B K)`` forward and backward; reductions read ``θ`` whole (one matmul for a
Gram, ``O(n K²)``).
"""

from __future__ import annotations

import math
from collections.abc import Iterator

import torch
from torch import Tensor, nn

from circuitkg.numerics import abs_max
from circuitkg.params.gather import gather
from circuitkg.params.tables import DEFAULT_CHUNK, Table, fill_positive_


class FreeTable(Table):
    """An unrestricted learned table ``T = θ``, initialised ``N(0, init_std²)``."""

    supports_positive_init = True

    def __init__(self, num_values: int, width: int, init_std: float = 1.0) -> None:
        super().__init__(num_values, width)
        self.weight = nn.Parameter(torch.randn(num_values, width) * init_std)

    def rows(self, index: Tensor) -> Tensor:
        return gather(self.weight, index)

    def chunks(self, chunk_size: int = DEFAULT_CHUNK) -> Iterator[Tensor]:
        if self.num_values <= chunk_size:
            yield self.weight  # no split: its backward would copy the whole gradient
        else:
            yield from torch.split(self.weight, chunk_size)

    def abs_max(self) -> Tensor:
        norm = abs_max(self.weight.detach())
        return norm.clamp_min(torch.finfo(self.weight.dtype).tiny)

    def init_positive_(self, mean: float, noise: float, shift: slice | None = None) -> None:
        fill_positive_(self.weight, mean, noise, shift)

    def kronecker_factor(self, width: int) -> FreeTable:
        """Entries of std ``√σ`` for this table's std ``σ`` (1 for a single entry)."""
        std = float(self.weight.detach().std()) if self.weight.numel() > 1 else 1.0
        return FreeTable(self.num_values, width, init_std=math.sqrt(std))


class PositiveTable(Table):
    """A non-negative learned table ``T = exp(θ)``, kept in log space (``log_rows`` is ``θ``)."""

    nonnegative = True

    def __init__(self, num_values: int, width: int, init_mean: float = 0.0, init_std: float = 0.1):
        super().__init__(num_values, width)
        self.log_weight = nn.Parameter(init_mean + torch.randn(num_values, width) * init_std)

    def rows(self, index: Tensor) -> Tensor:
        return gather(self.log_weight, index, torch.exp)

    def log_rows(self, index: Tensor) -> Tensor:
        return gather(self.log_weight, index)

    def abs_max(self) -> Tensor:
        return torch.exp(self.log_weight.detach().amax())

    def chunks(self, chunk_size: int = DEFAULT_CHUNK) -> Iterator[Tensor]:
        for block in torch.split(self.log_weight, chunk_size):
            yield torch.exp(block)

    def _log_chunk(self, index: Tensor) -> Tensor:
        return self.log_weight[index]

    def kronecker_factor(self, width: int) -> PositiveTable:
        """``exp(θ')`` with half the mean and ``1/√2`` the std of this table's ``θ``, so that
        ``θ' ⊕ θ'`` has ``θ``'s mean and std (std 0.1 for a single entry)."""
        theta = self.log_weight.detach()
        mean = float(theta.mean())
        std = float(theta.std()) if theta.numel() > 1 else 0.1
        return PositiveTable(
            self.num_values, width, init_mean=mean / 2, init_std=std / math.sqrt(2)
        )
