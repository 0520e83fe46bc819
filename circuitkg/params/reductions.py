"""The default reductions behind :class:`~circuitkg.params.tables.Table`: chunked Gram matrices
(plain, weighted, and per class of equal weight columns), contractions, and the scaling that keeps
them finite.

Every function here reads a table only through ``rows``, ``chunks``, ``abs_max`` and
``num_values``, so a table that overrides those gets these reductions for free.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import TYPE_CHECKING

import torch
from torch import Tensor

from circuitkg.grouping import RowsByGroup
from circuitkg.numerics import SAFE_RANGE, Scaled

if TYPE_CHECKING:
    from circuitkg.params.tables import Table

#: rows per chunk of a table's reductions without autograd (a computed table is never whole)
DEFAULT_CHUNK = 16384


def contract_chunks(table: Table, coef: Tensor, scale: Tensor | None) -> Tensor:
    parts = [coef @ (c if scale is None else c / scale).T for c in table.chunks()]
    return parts[0] if len(parts) == 1 else torch.cat(parts, dim=1)


def unscaled_ok(value: Tensor) -> bool:
    """A reduction computed on unscaled tables can be kept: its largest entry is finite and above
    ``SAFE_RANGE[0]`` (below it, float32 underflow could have zeroed smaller entries)."""
    low, high = (v.item() for v in torch.aminmax(value.detach()))
    return math.isfinite(low) and math.isfinite(high) and max(-low, high) > SAFE_RANGE[0]


def robust(reduce, *tables: Table, normalise: bool = True) -> Scaled:
    """Run a reduction over tables unscaled; redo it on prescaled tables if needed.

    ``reduce(m_1, ..., m_t)`` computes a sum over ``x`` of products of ``T_i[x] / m_i``, where
    ``m_i = None`` means no division. The fast path (all ``None``) costs no pass over the tables
    beyond the reduction itself; it is kept unless its result overflowed or its largest entry lies
    below ``SAFE_RANGE[0]`` (where float32 underflow could bite), in which case each table is
    divided by its largest entry first. The rows of the result are normalised one by one, or
    (``normalise=False``) share the one scale.
    """
    value = reduce(*[None] * len(tables))
    log_scale = torch.zeros((), dtype=value.dtype, device=value.device)
    if not unscaled_ok(value):
        scales = [t.abs_max() for t in tables]
        value = reduce(*scales)
        log_scale = sum(torch.log(m) for m in scales)
    out = Scaled(value, log_scale.expand(value.shape[0]))
    return out.normalised() if normalise else out


def class_indicator(inverse: Tensor, num_classes: int, like: Tensor) -> Tensor:
    onehot = torch.zeros(inverse.numel(), num_classes, dtype=like.dtype, device=like.device)
    onehot[torch.arange(inverse.numel(), device=like.device), inverse] = 1.0
    return onehot


class ClassGrams:
    """The per-class Grams ``Σ_{x in class c} A[x]ᵀ B[x]`` ``(C, K, K')``, ``O(|X| K K')`` in all,
    held unevaluated: :meth:`image` computes ``f`` of them for a row-wise linear ``f`` a few
    classes at a time, so that the ``C x K x K'`` Grams (43 MB for CoDEx-S's classes at rank 200)
    and their gradient are never whole; a large fresh tensor costs page faults on every query.
    Images are cached by function object, for the mixtures that share these parts.

    Scaling as :func:`robust`, judged on the image: the tables unscaled, and again divided by
    their largest entries if the image is not finite or below ``SAFE_RANGE[0]``; one scale for all
    classes."""

    #: bytes of Grams per chunk of classes
    CHUNK_BYTES = 1 << 22

    def __init__(self, a: Table, b: Table, inverse: Tensor, num_classes: int) -> None:
        self.a, self.b = a, b
        self.by_class = RowsByGroup.of(inverse, num_classes)
        self.images: dict[Callable[[Tensor], Tensor], Scaled] = {}

    @property
    def shape(self) -> torch.Size:
        """``(C, K, K')``."""
        return torch.Size((len(self.by_class.counts), self.a.width, self.b.width))

    def image(self, fn: Callable[[Tensor], Tensor]) -> Scaled:
        """``fn`` of the ``(C, K, K')`` Grams, with one scale for all rows."""
        if fn not in self.images:
            self.images[fn] = robust(
                lambda ma, mb: self._image(fn, ma, mb), self.a, self.b, normalise=False
            )
        return self.images[fn]

    def _image(self, fn: Callable[[Tensor], Tensor], ma: Tensor | None, mb: Tensor | None):
        a, b, by_class = self.a, self.b, self.by_class
        same = a is b and ma is mb
        if torch.is_grad_enabled():
            # one gather, split into classes: a gather per class would zero-fill a whole-table
            # gradient per class in the backward pass (170 of them in a CoDEx-S constrained log Z)
            ra = divided(a.rows(by_class.order), ma)
            rb = ra if same else divided(b.rows(by_class.order), mb)
            pairs = zip(by_class.split(ra), by_class.split(rb), strict=True)
        else:
            pairs = (
                (divided(a.rows(i), ma), divided(b.rows(i), mb))
                for i in by_class.split(by_class.order)
            )
        itemsize = torch.empty((), dtype=a.dtype).element_size()
        step = max(1, self.CHUNK_BYTES // (a.width * b.width * itemsize))
        pairs = list(pairs)
        images = []
        for start in range(0, len(pairs), step):
            chunk = pairs[start : start + step]
            if same:
                images.append(fn(SelfGrams.apply(*(x for x, _ in chunk))))
            else:
                images.append(fn(torch.stack([x.T @ y for x, y in chunk])))
        return images[0] if len(images) == 1 else torch.cat(images)


def divided(x: Tensor, m: Tensor | None) -> Tensor:
    return x if m is None else x / m


def gram_chunks(
    a: Table, b: Table, ma: Tensor | None, mb: Tensor | None, weights: Tensor | None
) -> Tensor:
    """``Σ_x w[x, c] (A[x]/ma)ᵀ (B[x]/mb)`` per column ``c`` of ``weights`` (``(X, C)``; None: ones).

    Chunked over rows without autograd (a computed table is never materialised whole); in one piece
    with it, where autograd keeps every chunk anyway and a split's backward would copy the whole
    gradient back together (a third of a CP step at 100k entities).
    """
    size = a.num_values if torch.is_grad_enabled() else DEFAULT_CHUNK
    total, start = None, 0
    for ca, cb in zip(a.chunks(size), b.chunks(size), strict=True):
        ca, cb = divided(ca, ma), divided(cb, mb)
        if weights is None:
            part = (SelfGram.apply(ca) if a is b else ca.T @ cb).unsqueeze(0)
        else:
            w = weights[start : start + ca.shape[0]]
            part = torch.einsum("xc,xi,xj->cij", w, ca, cb)
        total = part if total is None else total + part
        start += ca.shape[0]
    return total


def unique_rows(x: Tensor) -> tuple[Tensor, Tensor]:
    """The distinct rows of a 2-D tensor and the index of each row's distinct row (``inverse``).

    ``torch.unique(x, dim=0)`` sorts whole rows and took 85 ms per constrained PLL step (2034 x 1024
    weights); here rows are keyed by one random projection, grouped by key, and every row is checked
    against its group's first row, ``O(size of x)``. Distinct rows that collide on a key are caught
    by the check and fall back to ``torch.unique``. Equal rows can get keys that differ in the last
    bit (a matrix-vector product need not sum every row in the same order), so the groups' first
    rows, few, are merged with ``torch.unique`` at the end; the distinct rows come sorted.
    """
    if x.numel() == 0:
        return torch.unique(x, dim=0, return_inverse=True)
    generator = torch.Generator().manual_seed(0)
    projection = torch.rand(x.shape[1], generator=generator, dtype=x.dtype).to(x.device)
    _, inverse = torch.unique(x @ projection, return_inverse=True)
    count = int(inverse.max()) + 1
    positions = torch.arange(x.shape[0], device=x.device)
    first = torch.full((count,), x.shape[0], device=x.device).scatter_reduce(
        0, inverse, positions, "amin"
    )
    distinct = x[first]
    if not torch.equal(distinct[inverse], x):
        return torch.unique(x, dim=0, return_inverse=True)
    merged, of_group = torch.unique(distinct, dim=0, return_inverse=True)
    return merged, of_group[inverse]


class SelfGram(torch.autograd.Function):
    """``Xᵀ X`` whose backward is one product, ``X (g + gᵀ)``, where autograd's ``mm`` takes two
    (``X g`` and ``X gᵀ``, each ``O(V K²)``): the backward of a squared model's ``log Z`` halves."""

    @staticmethod
    def forward(ctx, x: Tensor) -> Tensor:
        ctx.save_for_backward(x)
        return x.T @ x

    @staticmethod
    def backward(ctx, grad: Tensor) -> Tensor:
        (x,) = ctx.saved_tensors
        return _self_gram_grad(x, grad)


class SelfGrams(torch.autograd.Function):
    """``stack([X_1ᵀ X_1, ..., X_cᵀ X_c])``, each written in place (no stack copy) and each
    backward as :class:`SelfGram`'s."""

    @staticmethod
    def forward(ctx, *xs: Tensor) -> Tensor:
        ctx.save_for_backward(*xs)
        out = xs[0].new_empty(len(xs), xs[0].shape[1], xs[0].shape[1])
        for x, o in zip(xs, out, strict=True):
            torch.mm(x.T, x, out=o)
        return out

    @staticmethod
    def backward(ctx, grad: Tensor):
        return tuple(_self_gram_grad(x, g) for x, g in zip(ctx.saved_tensors, grad, strict=True))


def _self_gram_grad(x: Tensor, grad: Tensor) -> Tensor:
    """``X (g + gᵀ)``; for a few rows (a schema's entity classes) the two products ``X g + X gᵀ``
    are cheaper than the strided ``K x K`` sum."""
    if 4 * x.shape[0] < x.shape[1]:
        return torch.addmm(x @ grad, x, grad.T)
    return x @ (grad + grad.T)


def finite_max(x: Tensor, dim: int | None) -> Tensor:
    """Max over ``dim`` (all if None), detached, with -inf rows mapped to 0 so shifts stay finite."""
    x = x.detach()
    m = x.amax() if dim is None else x.amax(dim=dim, keepdim=True)
    return torch.where(torch.isfinite(m), m, torch.zeros_like(m))
