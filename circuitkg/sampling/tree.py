"""Gram trees: exact draws of one variable's value in ``O(W² log n)`` instead of ``O(n W)``.

The ``n`` values of a variable (rows ``r(x)`` of width ``W``, see
:mod:`circuitkg.executor.expansions`) are split into ``2^d`` leaf blocks of consecutive values; the
internal nodes of a complete binary tree hold their blocks' statistics, computed once per
parameter state (:func:`cached`):

* :class:`GramTree` (squared circuits): node ``b`` holds ``G_b = Σ_{x∈b} r(x)ᵀ r(x)``. A draw from
  ``p(x) ∝ (c · r(x))²`` descends from the root choosing child ``b`` with probability
  ``cᵀ G_b c / (cᵀ G_left c + cᵀ G_right c)``, then draws ``x ∝ (c · r(x))²`` inside the leaf. The
  product of the choices is ``(c · r(x))² / Σ_x (c · r(x))²``: the same exact distribution as one
  row over all values. Cost per draw ``2 W² d + L W`` for leaves of ``L`` values; build
  ``O(n W²)``, memory ``2^{d+1} W²`` (at most the rows' own size with ``L ≥ 2W``).
* :class:`SumTree` (monotone circuits): node ``b`` holds the log column sums
  ``log Σ_{x∈b} T[x, k]``; a draw of ``x ∝ T[x, k]`` for a unit ``k`` descends by the two children's
  sums in column ``k``. Cost per draw ``O(d + L K)``, build ``O(n K)``.

Draws are batched: at each level the draws at one node share one ``(N_b x W) (W x 2W)`` product
(Gram tree) or one gather (sum tree), and each leaf one ``(N_b x W) (W x L)`` product.
"""

from __future__ import annotations

import math
from collections import OrderedDict
from collections.abc import Callable, Hashable

import torch
from torch import Tensor

from circuitkg.grouping import RowsByGroup
from circuitkg.sampling.categorical import draw, uniform

#: rows ``(index) -> (len(index), W)`` of the values of one variable
Rows = Callable[[Tensor], Tensor]
_CACHE: OrderedDict[Hashable, object] = OrderedDict()
_CACHE_SIZE = 8


def cached(key: Hashable, build: Callable[[], object]) -> object:
    """``build()`` memoised under ``key`` (which must change with the parameters), last 8 kept."""
    if key in _CACHE:
        _CACHE.move_to_end(key)
        return _CACHE[key]
    value = build()
    _CACHE[key] = value
    while len(_CACHE) > _CACHE_SIZE:
        _CACHE.popitem(last=False)
    return value


def _depth(num_values: int, leaf_size: int) -> int:
    return 0 if num_values <= leaf_size else math.ceil(math.log2(num_values / leaf_size))


class _Blocks:
    """``2^depth`` leaves of ``size`` consecutive values (the last ones may be short or empty)."""

    def __init__(self, num_values: int, leaf_size: int) -> None:
        self.num_values = num_values
        self.depth = _depth(num_values, max(1, leaf_size))
        self.size = math.ceil(num_values / 2**self.depth)

    def span(self, leaf: int) -> tuple[int, int]:
        start = min(leaf * self.size, self.num_values)
        return start, min(start + self.size, self.num_values)


class GramTree:
    """A complete binary tree of block Grams over ``num_values`` rows (module docstring); the
    leaves' Grams are built ``max_entries`` rows' entries at a time."""

    def __init__(
        self,
        rows: Rows,
        num_values: int,
        leaf_size: int,
        device: torch.device | None = None,
        max_entries: int = 1 << 24,
    ) -> None:
        self.rows = rows
        self.blocks = _Blocks(num_values, leaf_size)
        self.max_entries = max_entries
        level = self._leaf_grams(device)
        width = level.shape[-1]
        #: per level, each internal node's children side by side: (2^l, W, 2W)
        self.children: list[Tensor] = []
        while level.shape[0] > 1:
            pairs = level.reshape(level.shape[0] // 2, 2, width, width)
            self.children.insert(0, pairs.permute(0, 2, 1, 3).reshape(-1, width, 2 * width))
            level = pairs.sum(dim=1)
        #: ``Σ_x r(x)ᵀ r(x)``
        self.root = level[0]

    def _leaf_grams(self, device: torch.device | None) -> Tensor:
        """``(2^d, W, W)``: the leaves' Grams, a chunk of leaves per batched product (the last
        leaves padded with zero rows)."""
        size, leaves, n = self.blocks.size, 2**self.blocks.depth, self.blocks.num_values
        width = self.rows(torch.zeros(1, dtype=torch.long, device=device)).shape[1]
        step = max(1, self.max_entries // (size * width))
        out = []
        for first in range(0, leaves, step):
            count = min(step, leaves - first)
            lo, hi = min(first * size, n), min((first + count) * size, n)
            r = self.rows(torch.arange(lo, hi, device=device))
            if hi - lo < count * size:
                r = torch.cat([r, r.new_zeros(count * size - (hi - lo), width)])
            r = r.reshape(count, size, width)
            out.append(r.transpose(1, 2) @ r)
        return torch.cat(out)

    def draw(self, coef: Tensor, generator: torch.Generator | None = None) -> Tensor:
        """``x_i ~ p(x) ∝ (coef[i] · r(x))²``, shape ``(N,)``."""
        n, width = coef.shape
        node = torch.zeros(n, dtype=torch.long, device=coef.device)
        for level, grams in enumerate(self.children):
            u = uniform(n, generator, coef.device)
            mass = coef.new_empty(n, 2)
            for v, idx in RowsByGroup.of(node, 2**level).members():
                c = coef[idx]
                mass[idx] = ((c @ grams[v]).reshape(-1, 2, width) * c.unsqueeze(1)).sum(-1)
            mass = mass.clamp_min(0).to(torch.float64)
            total = mass.sum(dim=1)
            # an all-zero node (rounding) goes left, where the values are
            node = 2 * node + ((u * total >= mass[:, 0]) & (total > 0))
        return self._leaf_draws(coef, node, generator)

    def _leaf_draws(self, coef: Tensor, leaf: Tensor, generator) -> Tensor:
        out = torch.empty_like(leaf)
        u = uniform(leaf.numel(), generator, coef.device)
        for v, idx in RowsByGroup.of(leaf, 2**self.blocks.depth).members():
            start, stop = self.blocks.span(v)
            rows = self.rows(torch.arange(start, stop, device=coef.device))
            cdf = torch.cumsum((coef[idx] @ rows.T).to(torch.float64).square(), dim=1)
            keys = (u[idx] * cdf[:, -1]).unsqueeze(1)
            pick = torch.searchsorted(cdf, keys, right=True)[:, 0]
            out[idx] = start + pick.clamp_(max=stop - start - 1)
        return out


class SumTree:
    """A complete binary tree of log column sums of a non-negative table (module docstring)."""

    def __init__(
        self, log_rows: Rows, num_values: int, leaf_size: int, device: torch.device | None = None
    ) -> None:
        self.log_rows = log_rows
        self.blocks = _Blocks(num_values, leaf_size)
        leaves = []
        for leaf in range(2**self.blocks.depth):
            start, stop = self.blocks.span(leaf)
            if start == stop:
                leaves.append(torch.full_like(leaves[0], -torch.inf))
                continue
            index = torch.arange(start, stop, device=device)
            leaves.append(torch.logsumexp(log_rows(index), dim=0))
        level = torch.stack(leaves)
        #: per level below the root, the log sums of its nodes: (2^l, K)
        self.levels: list[Tensor] = []
        while level.shape[0] > 1:
            self.levels.insert(0, level)
            level = torch.logaddexp(level[0::2], level[1::2])

    def draw(self, units: Tensor, generator: torch.Generator | None = None) -> Tensor:
        """``x_i ~ p(x) ∝ T[x, units[i]]``, shape ``(N,)``."""
        n = units.numel()
        node = torch.zeros(n, dtype=torch.long, device=units.device)
        for sums in self.levels:
            left, right = sums[2 * node, units], sums[2 * node + 1, units]
            both = torch.logaddexp(left, right)
            p_right = torch.exp(right - both).nan_to_num_(0.0)  # both -inf: never reached
            node = 2 * node + (uniform(n, generator, units.device) < p_right)
        out = torch.empty_like(node)
        for v, idx in RowsByGroup.of(node, 2**self.blocks.depth).members():
            start, stop = self.blocks.span(v)
            log_rows = self.log_rows(torch.arange(start, stop, device=units.device))
            out[idx] = start + draw(log_rows[:, units[idx]].T, generator=generator)
        return out
