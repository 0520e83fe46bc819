"""An entity table split row-wise across the processes of a group.

Rank ``i`` of ``N`` holds rows ``[start_i, stop_i)`` of the ``n x W`` table, ``start_i = ⌊i n / N⌋``
(:class:`Partition`), as a local table of ``n_i ≈ n / N`` rows. :class:`ShardedTable` is a
:class:`~circuitkg.params.Table` over all ``n`` values, so every query of the executor runs on it
unchanged; each method answers from the local rows and one collective. Every rank must ask the same
queries in the same order (SPMD), which the replicated arguments of a query guarantee: the
results of the collectives are the same on every rank, so the executor's data-dependent choices
(rescaling, plans) are too.

=========================  ==================================================  =====================
method                     how                                                 bytes per process
                                                                               (float32)
=========================  ==================================================  =====================
``gram(other, weights)``   ``G = Σ_i G_i`` with ``G_i = T_iᵀ T'_i`` local,     ``≈ 8 B W W'``
                           one all-reduce (scales aligned by an all-reduced
                           max)
``weighted_sum(w)``        ``Σ_i w_i T_i``, one all-reduce                     ``≈ 8 B W``
``rows(index)``            each rank fills the rows it owns, zeros elsewhere,  ``≈ 8 |index| W``
                           one all-reduce (exact: ``x + 0 = x``)
``abs_max()``              local max, all-reduced                              4
``contract(coef)``         local ``coef T_iᵀ`` ``(B, n_i)``, all-gathered to   ``4 B n``
                           ``(B, n)``: the executor's own all-value plan
                           (:class:`~circuitkg.distributed.ShardedCircuit`
                           keeps scores per shard instead)
``chunks()``               the whole table chunk by chunk, each all-reduced    ``≈ 8 n W``
                           (only for executor paths not listed here)
=========================  ==================================================  =====================

(``≈ 8 b`` is the ring all-reduce's ``2 (N-1)/N · 4 b``.)

**Gradients.** The local rows are a parameter, and the collectives are differentiable for a loss
that every rank computes alike from the collectives' (equal) results: the gradient of a sum over
ranks reaches each rank's term whole, and that of an all-gather is the rank's own slice. Neither
backward communicates: the Gram's is the local ``T_i (g + gᵀ)`` with the replicated
``g = ∂L/∂G``, and of gathered rows the owner keeps its own. So a rank's row gradients equal the
unsharded model's rows of its gradient (a test).
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass

import torch
from torch import Tensor

from circuitkg.distributed.world import World
from circuitkg.errors import DistributedError
from circuitkg.executor.step import memoised_in_step
from circuitkg.numerics import Scaled
from circuitkg.params import FreeTable, Table

CHUNK = 16384


@dataclass(frozen=True)
class Partition:
    """Rows ``[bounds[i], bounds[i + 1])`` of ``num_values`` belong to rank ``i`` of ``size``."""

    num_values: int
    size: int

    def __post_init__(self) -> None:
        if self.num_values < self.size:
            raise DistributedError(
                f"cannot split {self.num_values} values over {self.size} processes: each needs one"
            )

    def span(self, rank: int) -> tuple[int, int]:
        return rank * self.num_values // self.size, (rank + 1) * self.num_values // self.size

    @property
    def largest(self) -> int:
        """The most rows a rank holds (``⌈n / N⌉``): the padded size of an all-gather."""
        return -(-self.num_values // self.size)


class ShardedTable(Table):
    """This rank's rows of an ``n x W`` table, answering for all ``n`` (module docstring)."""

    def __init__(self, local_rows: Tensor, partition: Partition, world: World) -> None:
        super().__init__(partition.num_values, local_rows.shape[1])
        self.partition, self.world = partition, world
        self.start, self.stop = partition.span(world.rank)
        if local_rows.shape[0] != self.stop - self.start:
            raise DistributedError(
                f"rank {world.rank} holds rows {self.start}..{self.stop} of {partition.num_values}, "
                f"{self.stop - self.start} rows, but was given {local_rows.shape[0]}"
            )
        self.local = FreeTable(local_rows.shape[0], local_rows.shape[1])
        with torch.no_grad():
            self.local.weight.copy_(local_rows)

    @classmethod
    def of(cls, table: Table, world: World) -> ShardedTable:
        """This rank's part of a whole ``table`` (each rank keeps only its rows)."""
        partition = Partition(table.num_values, world.size)
        start, stop = partition.span(world.rank)
        with torch.no_grad():
            rows = table.rows(torch.arange(start, stop, device=table.device))
        return cls(rows, partition, world)

    @property
    def local_rows(self) -> Tensor:
        """``(n_i, W)``: the rows this rank holds."""
        return self.local.weight

    # --- the Table protocol ---------------------------------------------------------------------
    def rows(self, index: Tensor) -> Tensor:
        # inside a training step the same rows are gathered once (the PLL terms and N3 share them)
        return memoised_in_step(self, "rows", [index], lambda: self._gathered_rows(index))

    def _gathered_rows(self, index: Tensor) -> Tensor:
        flat = index.reshape(-1)
        positions = ((flat >= self.start) & (flat < self.stop)).nonzero()[:, 0]
        out = self.local_rows.new_zeros(flat.numel(), self.width).index_copy(
            0, positions, self.local_rows[flat[positions] - self.start]
        )
        return _Summed.apply(out, self.world).reshape(*index.shape, self.width)

    def chunks(self, chunk_size: int = CHUNK) -> Iterator[Tensor]:
        for start in range(0, self.num_values, chunk_size):
            stop = min(start + chunk_size, self.num_values)
            yield self.rows(torch.arange(start, stop, device=self.device))

    def abs_max(self) -> Tensor:
        return self.world.all_reduce(self.local.abs_max().clone(), "max")

    def gram(self, other: Table | None = None, weights: Tensor | None = None) -> Scaled:
        other = self if other is None else other
        if not (isinstance(other, ShardedTable) and other.partition == self.partition):
            return super().gram(other, weights)
        local_weights = None if weights is None else weights[:, self.start : self.stop]
        return self._reduced(self.local.gram(other.local, weights=local_weights))

    def weighted_sum(self, weights: Tensor) -> Scaled:
        return self._reduced(self.local.weighted_sum(weights[:, self.start : self.stop]))

    def contract(self, coef: Scaled) -> Scaled:
        part = self.local.contract(coef)
        top = self._top(part.log_scale)
        value = part.value * torch.exp(part.log_scale - top).reshape(-1, 1)
        padded = value.new_zeros(value.shape[0], self.partition.largest)
        padded[:, : value.shape[1]] = value
        gathered = _Gathered.apply(padded, self.world)
        spans = [self.partition.span(r) for r in range(self.world.size)]
        full = torch.cat([g[:, : b - a] for g, (a, b) in zip(gathered, spans, strict=True)], dim=1)
        return Scaled(full, top)

    def log_rows(self, index: Tensor) -> Tensor:
        raise DistributedError("a sharded table is of squared or score circuits (linear space)")

    # --- helpers --------------------------------------------------------------------------------
    def _top(self, log_scale: Tensor) -> Tensor:
        """The largest row scale over the ranks (0 where no rank has a finite one)."""
        top = self.world.all_reduce(log_scale.detach().clone().contiguous(), "max")
        return torch.where(torch.isfinite(top), top, torch.zeros_like(top))

    def _reduced(self, part: Scaled) -> Scaled:
        """``Σ_ranks part``: each rank's value brought to the common row scale, then summed."""
        top = self._top(part.log_scale)
        shape = (-1,) + (1,) * (part.value.ndim - 1)
        value = part.value * torch.exp(part.log_scale - top).reshape(shape)
        return Scaled(_Summed.apply(value, self.world), top).normalised()

    def extra_repr(self) -> str:
        return f"rows {self.start}..{self.stop} of {self.num_values}, width={self.width}"


class _Summed(torch.autograd.Function):
    """``Σ_ranks x``; its backward passes the gradient on whole (module docstring)."""

    @staticmethod
    def forward(ctx, x: Tensor, world: World) -> Tensor:
        return world.all_reduce(x.detach().clone().contiguous())

    @staticmethod
    def backward(ctx, grad: Tensor) -> tuple[Tensor, None]:
        return grad, None


class _Gathered(torch.autograd.Function):
    """``(size, *x.shape)``, every rank's ``x``; its backward keeps this rank's slice."""

    @staticmethod
    def forward(ctx, x: Tensor, world: World) -> Tensor:
        ctx.rank = world.rank
        return world.all_gather(x.detach())

    @staticmethod
    def backward(ctx, grad: Tensor) -> tuple[Tensor, None]:
        return grad[ctx.rank], None
