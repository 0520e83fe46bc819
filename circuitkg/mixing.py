"""Row mixtures ``mix @ x`` of a few parts, with a fast path for 0/1 mixtures of nested sets.

A schema's weighted Gram mixes per-class Grams into per-group Grams: row ``b`` is the sum of the
classes that group ``b`` allows. The mixture is a 0/1 matrix ``(B x C)``, sparse, and its rows are
largely nested (the subjects allowed by one relation are often a subset of those allowed by
another). :func:`mixed_rows` then computes each distinct row from the largest distinct row it
contains, adding only the classes that one lacks:

    y[b] = y[parent(b)] + Σ_{c ∈ set(b) \\ set(parent(b))} x[c],

``O((U + Σ_b |set(b) \\ set(parent(b))|) D)`` additions for ``U`` distinct rows of width ``D``,
against ``O(B C D)`` for the dense product (CoDEx-S's subject masks: 113 + 19 row additions
against 38 x 67 multiply-adds of rows). Only additions, so nothing cancels. The plan is taken
where a cost model (:meth:`NestedSums.pays`) says it beats the dense product, which for narrow
rows (a low rank) it does not; any other mixture is one ``mm``.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor

#: the cost model of :meth:`NestedSums.pays`: a row addition of width ``D`` costs about
#: ``D + _CALL`` units (memory-bound, plus a fixed cost per call), a multiply-add of the dense
#: product ``1 / _MAC_PER_UNIT`` units (compute-bound, in one call)
_CALL = 2048
_MAC_PER_UNIT = 8


@dataclass(frozen=True)
class NestedSums:
    """How :class:`_NestedSums` builds the rows of a 0/1 mixture: step ``i`` makes output row
    ``rows[i]`` from output row ``rows[parents[i]]`` (``parents[i] = -1``: none) plus the parts
    ``extras[i]``; then each ``(row, source)`` of ``copies`` repeats a row made by a step."""

    rows: tuple[int, ...]
    parents: tuple[int, ...]
    extras: tuple[tuple[int, ...], ...]
    copies: tuple[tuple[int, int], ...]

    @property
    def additions(self) -> int:
        """Row additions and copies of one pass."""
        return sum(len(e) for e in self.extras) + len(self.parents) + len(self.copies)

    def pays(self, num_rows: int, num_parts: int, width: int) -> bool:
        """Whether the plan beats the dense ``(B x C) @ (C x D)`` product (module cost model)."""
        return self.additions * (width + _CALL) * _MAC_PER_UNIT < num_rows * num_parts * width

    def apply(self, x: Tensor, num_rows: int) -> Tensor:
        """The ``num_rows`` mixed rows of ``x`` ``(C, D)``, by the plan's additions."""
        return _NestedSums.apply(x, self, num_rows)


def could_pay(num_parts: int, width: int) -> bool:
    """Whether any nested plan could beat the dense product of a mixture of ``num_parts`` parts of
    width ``width``: every plan makes each row by at least one addition or copy, so when that alone
    costs more than the row's dense multiply-adds, no plan need be built."""
    return (width + _CALL) * _MAC_PER_UNIT < num_parts * width


def nested_sums(mix: Tensor) -> NestedSums | None:
    """The nested plan of a 0/1 ``mix`` (``B x C``); ``None`` if an entry is neither 0 nor 1."""
    if not bool(((mix == 0) | (mix == 1)).all()):
        return None
    rows_of: dict[frozenset[int], list[int]] = {}
    for b, row in enumerate(mix.detach().cpu().bool()):
        rows_of.setdefault(frozenset(row.nonzero()[:, 0].tolist()), []).append(b)
    sets = sorted(rows_of, key=len)  # a set's subsets come before it
    parents, extras = [], []
    for i, members in enumerate(sets):
        # the largest earlier set contained in this one
        parent = max(
            (j for j in range(i) if sets[j] <= members), key=lambda j: len(sets[j]), default=-1
        )
        parents.append(parent)
        extras.append(tuple(sorted(members - sets[parent] if parent >= 0 else members)))
    rows = tuple(rows_of[members][0] for members in sets)
    copies = tuple((b, rows_of[m][0]) for m in sets for b in rows_of[m][1:])
    return NestedSums(rows, tuple(parents), tuple(extras), copies)


def mixed_rows(mix: Tensor, x: Tensor, plan: NestedSums | None = None) -> Tensor:
    """``mix @ x`` for ``x`` of shape ``(C, D)``: the nested sums of ``plan`` (from
    :func:`nested_sums` of ``mix``) where they pay, else one ``mm``."""
    if plan is None or not plan.pays(mix.shape[0], mix.shape[1], x.shape[1]):
        return mix @ x
    return plan.apply(x, mix.shape[0])


class _NestedSums(torch.autograd.Function):
    """The rows of a nested plan, forward and backward in its row additions, one row at a time
    (a gather of a step's parts would copy them first), every output written once before it is
    added to (no zero fill of fresh memory): the backward adds each copy's gradient to its source
    and hands each row's gradient down to its parent, in reverse order so that a row's gradient
    is complete when it is passed on, and adds it to each of the row's parts."""

    @staticmethod
    def forward(ctx, x: Tensor, plan: NestedSums, num_rows: int) -> Tensor:
        ctx.plan, ctx.num_parts = plan, x.shape[0]
        out = x.new_empty(num_rows, x.shape[1])
        for row, parent, extra in zip(plan.rows, plan.parents, plan.extras, strict=True):
            sources = ([out[plan.rows[parent]]] if parent >= 0 else []) + [x[p] for p in extra]
            _sum_into(out[row], sources)
        for row, source in plan.copies:
            out[row] = out[source]
        return out

    @staticmethod
    def backward(ctx, grad: Tensor):
        plan = ctx.plan
        # extra gradient of the rows that others are copies or supersets of (few)
        extra: dict[int, list[Tensor]] = {}
        for row, source in plan.copies:
            extra.setdefault(source, []).append(grad[row])
        contributions: list[list[Tensor]] = [[] for _ in range(ctx.num_parts)]
        for i in reversed(range(len(plan.parents))):
            row = plan.rows[i]
            total = grad[row]
            if row in extra:
                total = total.clone()
                _sum_into(total, extra.pop(row), keep=True)
            for part in plan.extras[i]:
                contributions[part].append(total)
            if plan.parents[i] >= 0:
                extra.setdefault(plan.rows[plan.parents[i]], []).append(total)
        out = grad.new_empty(ctx.num_parts, grad.shape[1])
        for row, sources in zip(out, contributions, strict=True):
            _sum_into(row, sources)
        return out, None, None


def _sum_into(out: Tensor, sources: list[Tensor], keep: bool = False) -> None:
    """``out = Σ sources`` (zero for none), or with ``keep`` ``out += Σ sources``; the first two
    sources of a fresh ``out`` in one pass (``add(a, b, out=out)``, not a copy and an add)."""
    if keep:
        for source in sources:
            out += source
    elif not sources:
        out.zero_()
    elif len(sources) == 1:
        out.copy_(sources[0])
    else:
        torch.add(sources[0], sources[1], out=out)
        for source in sources[2:]:
            out += source
