"""Gram matrices of input tables, computed once per parameter state.

Inside one query a Gram matrix ``Σ_x T_a[x]ᵀ T_b[x]`` is needed by several layer pairs; across
queries made without gradients (sampling, evaluation, prediction) it is the same until a parameter
changes. :class:`GramCache` serves both: per query it memoises; with autograd off it also keeps
Grams across queries, keyed by the tables' parameter versions (torch bumps ``_version`` on every
in-place update, so an optimiser step or ``load_state_dict`` invalidates the entry). With autograd
on nothing is kept across queries, since a reused graph could not be backpropagated twice.
"""

from __future__ import annotations

import torch
from torch import Tensor

from circuitkg.executor.blocks import BlockView
from circuitkg.numerics import Scaled
from circuitkg.params.tables import MAX_RUNS, ColumnView, Table, base_of, view_gram


def _state(table: Table) -> tuple:
    tensors = list(table.parameters()) + list(table.buffers())
    return tuple((t.data_ptr(), t._version, t.dtype, t.device) for t in tensors)


class GramCache:
    """``gram(a, b)`` with per-query memoisation and, without autograd, reuse across queries."""

    def __init__(self) -> None:
        self._kept: dict[tuple[int, int], tuple[tuple, Scaled]] = {}

    def query(self) -> _QueryGrams:
        return _QueryGrams(self)

    def clear(self) -> None:
        self._kept.clear()


class _QueryGrams:
    def __init__(self, cache: GramCache) -> None:
        self.cache = cache
        self.memo: dict[tuple[int, int], Scaled] = {}

    def gram_blocks(self, a: Table, b: Table, weights: Tensor | None = None) -> BlockView | None:
        """The (weighted) Gram of two views of one base table as a lazy grid of base-Gram slices,
        or ``None``.

        ``None`` when ``a`` and ``b`` are not both :class:`ColumnView` s of one base with at most
        :data:`~circuitkg.params.tables.MAX_RUNS` contiguous runs each.
        """
        if not (isinstance(a, ColumnView) and isinstance(b, ColumnView)) or a.base is not b.base:
            return None
        if len(a.runs) > MAX_RUNS or len(b.runs) > MAX_RUNS:
            return None
        return BlockView(self.gram(a.base, b.base, weights), tuple(a.runs), tuple(b.runs))

    def gram(self, a: Table, b: Table, weights: Tensor | None = None) -> Scaled:
        if weights is not None:
            return a.gram(b, weights=weights)
        base_a, base_b = base_of(a), base_of(b)
        if (base_a is not a or base_b is not b) and base_a is base_b:
            # views of one table (ComplEx's S and O layouts): from the base Gram, computed once
            return view_gram(self.gram(base_a, base_b), a, b)
        key = (id(a), id(b))
        if key in self.memo:
            return self.memo[key]
        if not torch.is_grad_enabled():
            state = (_state(a), _state(b))
            kept = self.cache._kept.get(key)
            if kept is not None and kept[0] == state:
                self.memo[key] = kept[1]
                return kept[1]
            value = a.gram(b)
            self.cache._kept[key] = (state, value)
        else:
            value = a.gram(b)
        self.memo[key] = value
        return value
