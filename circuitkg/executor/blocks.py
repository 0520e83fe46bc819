"""Block views: Hadamard products of gathered Grams, or of view rows, without the gathers.

A :class:`~circuitkg.params.ColumnView` whose columns are contiguous runs of a base table (ComplEx
reads ``[Re | Im]`` as four blocks of width ``K``) has the Gram matrix
``G_view = G_base[rows][:, cols]``: a grid of slices of the base Gram. In a squared circuit such
Grams meet in Hadamard product pairs, ``P = G_1[...] ⊙ G_2[...] ⊙ ...``. Gathering each factor first
would copy ``(4K)²`` entries per factor and scatter them back in the backward pass. :class:`BlockView`
keeps the slices lazy and :func:`block_product` multiplies them block by block straight from the
base Grams: forward ``(d - 1)·R·C`` multiplications for ``d`` factors of an ``R x C`` result (what
a hand-written product of slices costs), backward ``O(d·R·C)`` accumulated into the base gradients,
with no ``(base size)`` zero tensor per slice.

The same holds for the rows of an input layer over such a view in the forward pass: ``B`` rows of
the base, read through the view's runs (:class:`ViewRows`), multiplied by :func:`row_product`.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor

from circuitkg.numerics import Scaled
from circuitkg.params.views import select_runs

Runs = tuple[tuple[int, int], ...]
#: a product of view rows with fewer output entries copies the views out and multiplies them
#: whole: there the per-block overhead outweighs the copies saved (ComplEx's three views at
#: K = 100, forward + backward on CPU, timed by hand: block-wise slower at 256 rows, faster from
#: 512; at 4096 rows it is what moves benchmarks/bench_core.py row (b))
BLOCKWISE_MIN_ENTRIES = 2**17


@dataclass(frozen=True)
class BlockView:
    """``base[:, rows][:, :, cols]`` with ``rows``/``cols`` given as contiguous ``(start, stop)`` runs."""

    base: Scaled
    row_runs: Runs
    col_runs: Runs

    @property
    def shape(self) -> tuple[int, int]:
        return _length(self.row_runs), _length(self.col_runs)

    def dense(self) -> Scaled:
        """The gathered matrix ``(N, R, C)`` (gradient: block adds into the base)."""
        return block_product([self])


def block_product(views: list[BlockView]) -> Scaled:
    """``⊙_f views[f]`` as a dense scaled tensor ``(N, R, C)``; all views must have one shape.

    The scales add up; the value is not renormalised (the caller decides, as after any product).
    """
    value = block_values(
        [v.base.value for v in views], [v.row_runs for v in views], [v.col_runs for v in views]
    )
    n = value.shape[0]
    log_scale = views[0].base.log_scale.expand(n)
    for v in views[1:]:
        log_scale = log_scale + v.base.log_scale.expand(n)
    return Scaled(value, log_scale)


def block_values(bases: list[Tensor], row_runs: list[Runs], col_runs: list[Runs]) -> Tensor:
    """``⊙_f bases[f][:, row_runs[f]][:, :, col_runs[f]]``, ``(N, R, C)``, block by block."""
    shapes = {(_length(r), _length(c)) for r, c in zip(row_runs, col_runs, strict=True)}
    if len(shapes) != 1:
        raise ValueError(f"block views of different shapes cannot be multiplied: {sorted(shapes)}")
    # a base shared by several factors (ComplEx's entity Gram under its S and O views) is passed
    # once, so its gradient is accumulated in one tensor
    distinct: list[Tensor] = []
    owner = []
    for base in bases:
        found = [i for i, b in enumerate(distinct) if b is base]
        if not found:
            distinct.append(base)
        owner.append(found[0] if found else len(distinct) - 1)
    return _BlockProduct.apply(segments(row_runs), segments(col_runs), tuple(owner), *distinct)


@dataclass(frozen=True)
class ViewRows:
    """Rows ``(B, W_base)`` of a base table (a :class:`Scaled`, or a plain tensor in
    :class:`~circuitkg.executor.semirings.PlainSemiring`) read through a column view's contiguous
    ``runs``, kept lazy: Hadamard products multiply them (:func:`row_values`) without copying
    each view out first."""

    rows: Scaled | Tensor
    runs: Runs


def row_values(rows: list[Tensor], runs: list[Runs]) -> Tensor:
    """``⊙_f rows[f][:, runs[f]]``: the ``(B, W)`` product of batch rows read through runs.

    From :data:`BLOCKWISE_MIN_ENTRIES` output entries on it runs block by block from the base
    rows (:func:`block_values`): each block costs what a product of slices costs, and the backward
    pass adds each factor's gradient into its base rows block by block, so a ComplEx Hadamard of
    three four-block views neither copies the views nor scatters their gradients back. Below it,
    the views are copied out and multiplied whole.
    """
    batch = max(r.shape[0] for r in rows)
    if batch * _length(runs[0]) >= BLOCKWISE_MIN_ENTRIES:
        one_row = ((0, 1),)
        return block_values([r.unsqueeze(1) for r in rows], [one_row] * len(rows), runs).squeeze(1)
    value = None
    for r, view_runs in zip(rows, runs, strict=True):
        columns = select_runs(r, view_runs)
        value = columns if value is None else value * columns
    return value


def row_operands(values: list) -> tuple[list, list[Runs]]:
    """``(rows, runs)`` of Hadamard operands, some of them :class:`ViewRows` (the rest whole)."""
    rows, runs = [], []
    for v in values:
        if isinstance(v, ViewRows):
            rows.append(v.rows)
            runs.append(v.runs)
        else:
            rows.append(v)
            runs.append(((0, (v.value if isinstance(v, Scaled) else v).shape[1]),))
    return rows, runs


def row_product(values: list[Scaled | ViewRows]) -> Scaled:
    """:func:`row_values` of scaled rows: the scales add up, the product is renormalised."""
    rows, runs = row_operands(values)
    value = row_values([r.value for r in rows], runs)
    log_scale = rows[0].log_scale
    for r in rows[1:]:
        log_scale = log_scale + r.log_scale
    return Scaled(value, log_scale.expand(value.shape[0])).normalised()


def _length(runs: Runs) -> int:
    return sum(stop - start for start, stop in runs)


def segments(runs_per_view: list[Runs]) -> list[tuple[int, int, tuple[int, ...]]]:
    """Split the output axis where any view's run ends: ``(out_start, out_stop, base starts)``,
    so that every view reads one contiguous block of its base in each segment."""
    cuts = set()
    for runs in runs_per_view:
        position = 0
        for start, stop in runs:
            position += stop - start
            cuts.add(position)
    out, previous = [], 0
    for cut in sorted(cuts):
        starts = tuple(_base_position(runs, previous) for runs in runs_per_view)
        out.append((previous, cut, starts))
        previous = cut
    return out


def _base_position(runs: Runs, position: int) -> int:
    """The base index of output position ``position`` of a view with ``runs``."""
    for start, stop in runs:
        if position < stop - start:
            return start + position
        position -= stop - start
    raise IndexError(position)


def _blocks(row_segments, col_segments):
    for r0, r1, r_starts in row_segments:
        for c0, c1, c_starts in col_segments:
            yield (
                (slice(r0, r1), slice(c0, c1)),
                [
                    (slice(rs, rs + r1 - r0), slice(cs, cs + c1 - c0))
                    for rs, cs in zip(r_starts, c_starts, strict=True)
                ],
            )


class _BlockProduct(torch.autograd.Function):
    """``out[:, block] = Π_f bases[owner[f]][:, slice_f(block)]`` over a grid of blocks."""

    @staticmethod
    def forward(ctx, row_segments, col_segments, owner, *bases: Tensor) -> Tensor:
        ctx.segments, ctx.owner = (row_segments, col_segments), owner
        ctx.save_for_backward(*bases)
        n = max(b.shape[0] for b in bases)
        rows, cols = row_segments[-1][1], col_segments[-1][1]
        out = bases[0].new_empty(n, rows, cols)
        for (ro, co), slices in _blocks(row_segments, col_segments):
            block = out[:, ro, co]
            parts = [bases[u][:, rs, cs] for u, (rs, cs) in zip(owner, slices, strict=True)]
            if len(parts) == 1:
                block.copy_(parts[0])
                continue
            torch.mul(parts[0].expand_as(block), parts[1], out=block)
            for p in parts[2:]:
                block.mul_(p)
        return out

    @staticmethod
    def backward(ctx, grad: Tensor):
        row_segments, col_segments = ctx.segments
        owner, bases = ctx.owner, ctx.saved_tensors
        grads = [
            torch.zeros_like(b) if needed else None
            for b, needed in zip(bases, ctx.needs_input_grad[3:], strict=True)
        ]
        for (ro, co), slices in _blocks(row_segments, col_segments):
            g = grad[:, ro, co]
            parts = [bases[u][:, rs, cs] for u, (rs, cs) in zip(owner, slices, strict=True)]
            for (u, (rs, cs)), others in zip(
                zip(owner, slices, strict=True), _leave_one_out(parts), strict=True
            ):
                if grads[u] is None:
                    continue
                target = grads[u][:, rs, cs]
                if others is None:
                    target += g if g.shape[0] == target.shape[0] else g.sum(0, keepdim=True)
                elif g.shape[0] == target.shape[0]:
                    target.addcmul_(g, others)
                else:
                    target += (g * others).sum(0, keepdim=True)
        return (None, None, None, *grads)


def _leave_one_out(parts: list[Tensor]) -> list[Tensor | None]:
    """``Π_{g != f} parts[g]`` for every ``f`` (``None`` for a single factor), by prefix/suffix."""
    d = len(parts)
    if d == 1:
        return [None]
    prefix: list[Tensor | None] = [None] * d
    suffix: list[Tensor | None] = [None] * d
    for f in range(1, d):
        prefix[f] = parts[0] if f == 1 else prefix[f - 1] * parts[f - 1]
    for f in range(d - 2, -1, -1):
        suffix[f] = parts[d - 1] if f == d - 2 else suffix[f + 1] * parts[f + 1]
    out = []
    for p, s in zip(prefix, suffix, strict=True):
        out.append(s if p is None else p if s is None else p * s)
    return out
