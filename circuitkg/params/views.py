"""Tables that read another table's columns: :class:`ColumnView` (ComplEx's four layouts of
``[Re | Im]``) and :class:`FeatureTable` (TransE's polynomial features).

A view stores nothing; its rows, Gram and contractions are computed from its base's at the base
width (``view_gram`` slices the base Gram, ``fold`` maps coefficients back to the base columns).
Views of at most :data:`~circuitkg.params.tables.MAX_RUNS` contiguous column runs are copied run by
run (:func:`select_runs`), cheaper than a gather and its scatter.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence

import torch
from torch import Tensor

from circuitkg.numerics import Scaled
from circuitkg.params.tables import DEFAULT_CHUNK, MAX_RUNS, Runs, Table


class ColumnView(Table):
    """``T[x] = base[x][columns]``: several layers reading one parameter table.

    ComplEx reads ``[Re; Im]`` in four arrangements; a view costs nothing to store, and its Gram
    matrix and contractions are gathered from / folded into the base table's, so the work is done
    at the base width (``Gram`` once per base table, ``contract`` at ``K_base``).
    """

    def __init__(self, base: Table, columns: Tensor | list[int]) -> None:
        columns = torch.as_tensor(columns, dtype=torch.long)
        if columns.numel() and (columns.min() < 0 or columns.max() >= base.width):
            raise ValueError(f"column view indices must lie in [0, {base.width})")
        super().__init__(base.num_values, len(columns))
        self.base = base
        self.register_buffer("columns", columns)
        self.nonnegative = base.nonnegative
        self.runs: Runs = _contiguous_runs(columns.tolist())

    def _select(self, x: Tensor) -> Tensor:
        # contiguous runs (ComplEx: four blocks) are copied block by block and their gradients added
        # back block by block: cheaper than a gather and its scatter, or a cat of slices whose
        # backward fills a zero tensor of the base width per slice
        if len(self.runs) <= MAX_RUNS:
            return select_runs(x, self.runs)
        return x.index_select(-1, self.columns)

    def rows(self, index: Tensor) -> Tensor:
        return self._select(self.base.rows(index))

    def log_rows(self, index: Tensor) -> Tensor:
        return self._select(self.base.log_rows(index))

    def chunks(self, chunk_size: int = DEFAULT_CHUNK) -> Iterator[Tensor]:
        for c in self.base.chunks(chunk_size):
            yield self._select(c)

    def abs_max(self) -> Tensor:
        return self.base.abs_max()

    def as_view(self) -> tuple[Table, Tensor, Runs]:
        return self.base, self.columns, self.runs

    def parameter_table(self) -> Table:
        return self.base.parameter_table()

    def gram(self, other: Table | None = None, weights: Tensor | None = None) -> Scaled:
        other = self if other is None else other
        if base_of(other) is not self.base:
            return super().gram(other, weights)
        return view_gram(self.base.gram(weights=weights), self, other)

    def weighted_sum(self, weights: Tensor) -> Scaled:
        return self.base.weighted_sum(weights).map(lambda v: v[:, self.columns])

    def log_weighted_sum(self, log_weights: Tensor) -> Tensor:
        return self.base.log_weighted_sum(log_weights)[:, self.columns]

    def fold(self, coef: Tensor, dim: int = -1) -> Tensor:
        """Coefficients on the view's columns (axis ``dim``) as coefficients on the base's:
        ``coef · T[x]ᵀ = fold(coef) · base[x]ᵀ``, summing columns that read one base column."""
        shape = list(coef.shape)
        shape[dim] = self.base.width
        return coef.new_zeros(shape).index_add_(dim, self.columns, coef)

    def contract(self, coef: Scaled) -> Scaled:
        return self.base.contract(Scaled(self.fold(coef.value, dim=1), coef.log_scale))


class _SelectRuns(torch.autograd.Function):
    """``cat([x[..., a:b] for a, b in runs], -1)`` whose backward adds the blocks into one zero tensor."""

    @staticmethod
    def forward(ctx, x: Tensor, runs: list[tuple[int, int]]) -> Tensor:
        ctx.runs, ctx.width = runs, x.shape[-1]
        return _cat_runs(x, runs)

    @staticmethod
    def backward(ctx, grad: Tensor):
        out = grad.new_zeros((*grad.shape[:-1], ctx.width))
        position = 0
        for a, b in ctx.runs:
            out[..., a:b] += grad[..., position : position + b - a]
            position += b - a
        return out, None


def select_runs(x: Tensor, runs: Sequence[tuple[int, int]]) -> Tensor:
    """``x[..., columns]`` for columns given as contiguous ``(start, stop)`` runs: one copy per run,
    and a backward pass that adds each block into one zero tensor."""
    if len(runs) == 1 and runs[0] == (0, x.shape[-1]):
        return x
    if not (torch.is_grad_enabled() and x.requires_grad):
        return _cat_runs(x, runs)
    return _SelectRuns.apply(x, list(runs))


def _cat_runs(x: Tensor, runs: Sequence[tuple[int, int]]) -> Tensor:
    return torch.cat([x[..., a:b] for a, b in runs], dim=-1)


def view_gram(base_gram: Scaled, a: Table, b: Table) -> Scaled:
    """The Gram of ``a`` and ``b`` (each a view of one base table, or the base itself) from the
    base's Gram ``(B, W, W)``: its rows at ``a``'s columns, its columns at ``b``'s.

    Views of at most :data:`MAX_RUNS` contiguous runs are copied block by block and their gradient
    added back block by block; others are gathered (a scatter in the backward pass).
    """
    (_, cols_a, runs_a), (_, cols_b, runs_b) = a.as_view(), b.as_view()
    if max(len(runs_a), len(runs_b)) <= MAX_RUNS:
        return base_gram.map(
            lambda v: select_runs(select_runs(v, runs_b).transpose(-1, -2), runs_a).transpose(
                -1, -2
            )
        )
    return base_gram.map(lambda v: v[:, cols_a][:, :, cols_b])


def _contiguous_runs(columns: list[int]) -> Runs:
    """``[3, 4, 5, 0, 1]`` -> ``((3, 6), (0, 2))``."""
    runs: list[tuple[int, int]] = []
    for c in columns:
        if runs and runs[-1][1] == c:
            runs[-1] = (runs[-1][0], c + 1)
        else:
            runs.append((c, c + 1))
    return tuple(runs)


def base_of(table: Table) -> Table:
    """The table a view reads (the table itself otherwise): ``table.as_view()[0]``."""
    return table.as_view()[0]


class FeatureTable(Table):
    """``T[x] = [base[x, c_1]^{p_1}, ..., base[x, c_K]^{p_K}]`` with powers ``p ∈ {0, 1, 2}``.

    The polynomial features that write TransE's ``-||s + r - o||²`` as a circuit.
    """

    def __init__(self, base: Table, columns: list[int], powers: list[int]) -> None:
        if len(columns) != len(powers) or any(p not in (0, 1, 2) for p in powers):
            raise ValueError("FeatureTable needs one power in {0, 1, 2} per column")
        super().__init__(base.num_values, len(columns))
        self.base = base
        self.register_buffer("columns", torch.as_tensor(columns, dtype=torch.long))
        self.register_buffer("powers", torch.as_tensor(powers, dtype=torch.long))

    def parameter_table(self) -> Table:
        return self.base.parameter_table()

    def rows(self, index: Tensor) -> Tensor:
        x = self.base.rows(index)[..., self.columns]
        return torch.where(
            self.powers == 0, torch.ones_like(x), torch.where(self.powers == 1, x, x * x)
        )

    def chunks(self, chunk_size: int = DEFAULT_CHUNK) -> Iterator[Tensor]:
        for c in self.base.chunks(chunk_size):
            x = c[:, self.columns]
            yield torch.where(
                self.powers == 0, torch.ones_like(x), torch.where(self.powers == 1, x, x * x)
            )
