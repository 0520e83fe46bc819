"""Gram matrices of input tables, computed once per parameter state.

Inside one query a Gram matrix ``Σ_x T_a[x]ᵀ T_b[x]`` is needed by several layer pairs; across
queries made without gradients (sampling, evaluation, prediction) it is the same until a parameter
changes. :class:`GramCache` serves both: per query it memoises; with autograd off it also keeps
Grams across queries, keyed by the tables' :meth:`~circuitkg.params.Table.state_token` (which
changes on every in-place update, so an optimiser step or ``load_state_dict`` invalidates the
entry). With autograd on nothing is kept across queries, since a reused graph could not be
backpropagated twice.

Entries are also keyed on the numerics mode (:func:`~circuitkg.numerics.is_unscaled`): a Gram
computed in :func:`~circuitkg.numerics.robustly`'s fast, unscaled attempt is not normalised, and
reusing it in the scaled rerun made float32 log Z NaN at parameter scales >= 1e6 and -inf at
<= 1e-10 under ``torch.no_grad()``.

Inside :func:`shared_within_step` every query of a cache shares one memo, autograd on or off: the
queries of one training step (the three PLL terms, say) read each Gram once and backpropagate
through it once, as a hand-written step does (DistMult's entity Gram served ``s`` and ``o``, and
ComplEx's base Gram every view, but each term computed its own before).
"""

from __future__ import annotations

from contextvars import ContextVar

import torch
from torch import Tensor

from circuitkg.executor.blocks import BlockView
from circuitkg.numerics import Scaled, is_unscaled
from circuitkg.params.gather import memo_scope
from circuitkg.params.tables import MAX_RUNS, Table
from circuitkg.params.views import base_of, view_gram

#: per active step: ``id(cache) -> (cache, its shared memo)``; ``None`` outside a step
_STEP_GRAMS: ContextVar[dict | None] = ContextVar("circuitkg_step_grams", default=None)


def shared_within_step():
    """Every :meth:`GramCache.query` inside shares its cache's one memo (module docstring).
    Nested scopes share the outermost one's."""
    return memo_scope(_STEP_GRAMS)


class GramCache:
    """``gram(a, b)`` with per-query memoisation and, without autograd, reuse across queries."""

    def __init__(self) -> None:
        self._kept: dict[tuple[int, int, bool, bool], tuple[tuple, Scaled]] = {}

    def query(self) -> _QueryGrams:
        step = _STEP_GRAMS.get()
        if step is None:
            return _QueryGrams(self)
        if id(self) not in step:
            step[id(self)] = (self, _QueryGrams(self))  # holding self keeps its id unique
        return step[id(self)][1]

    def clear(self) -> None:
        self._kept.clear()


class _QueryGrams:
    def __init__(self, cache: GramCache) -> None:
        self.cache = cache
        self.memo: dict[tuple[int, int, bool, bool], Scaled] = {}

    def gram_blocks(self, a: Table, b: Table, weights: Tensor | None = None) -> BlockView | None:
        """The (weighted) Gram of two views of one base table as a lazy grid of base-Gram slices,
        or ``None``.

        ``None`` when ``a`` and ``b`` are not both views (:meth:`~circuitkg.params.Table.as_view`)
        of one base with at most :data:`~circuitkg.params.tables.MAX_RUNS` contiguous runs each.
        """
        (base_a, _, runs_a), (base_b, _, runs_b) = a.as_view(), b.as_view()
        if base_a is a or base_b is b or base_a is not base_b:
            return None
        if len(runs_a) > MAX_RUNS or len(runs_b) > MAX_RUNS:
            return None
        return BlockView(self.gram(base_a, base_b, weights), tuple(runs_a), tuple(runs_b))

    def has(self, a: Table, b: Table) -> bool:
        """Whether ``gram(a, b)`` (unweighted, for this numerics and grad mode) is computed already:
        in this query, this step, or (no autograd) kept from an earlier query at the same state."""
        key = (id(a), id(b), is_unscaled(), torch.is_grad_enabled())
        if key in self.memo:
            return True
        kept = None if torch.is_grad_enabled() else self.cache._kept.get(key)
        return kept is not None and kept[0] == (a.state_token(), b.state_token())

    def gram(self, a: Table, b: Table, weights: Tensor | None = None) -> Scaled:
        if weights is not None:
            return a.gram(b, weights=weights)
        base_a, base_b = base_of(a), base_of(b)
        if (base_a is not a or base_b is not b) and base_a is base_b:
            # views of one table (ComplEx's S and O layouts): from the base Gram, computed once
            return view_gram(self.gram(base_a, base_b), a, b)
        key = (id(a), id(b), is_unscaled(), torch.is_grad_enabled())  # see the module docstring
        if key in self.memo:
            return self.memo[key]
        if not torch.is_grad_enabled():
            state = (a.state_token(), b.state_token())
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
