"""Scaled tensors: linear-space values that cannot overflow or underflow.

A :class:`Scaled` holds ``value * exp(log_scale)`` where ``value`` has shape ``(N, ...)`` and
``log_scale`` has shape ``(N,)``: one scale per batch row. After every operation the value is
renormalised so that ``max |value| = 1`` in each row, which keeps products of hundreds of layers and
Gram matrices of huge or tiny tables finite in float32. Signs are kept, so signed (squared) circuits
run in linear space with this representation; monotone circuits use :class:`LogSemiring`, which
stores plain log-values and converts to :class:`Scaled` only around linear maps.

The scale is detached from autograd: the represented number does not depend on it, so gradients are
exact while the scale itself costs nothing in the backward pass.

Renormalising costs a pass over every intermediate. :func:`robustly` first runs a computation with
renormalisation switched off (plain float arithmetic, as fast as hand-written torch) and reruns it
with renormalisation only when the result is not finite, i.e. when something overflowed or
underflowed to zero on the way.
"""

from __future__ import annotations

import math
import threading
from collections.abc import Callable
from contextlib import contextmanager
from dataclasses import dataclass
from functools import cached_property
from typing import Protocol, TypeVar

import torch
from torch import Tensor

from circuitkg.mixing import NestedSums, could_pay, mixed_rows, nested_sums

_state = threading.local()
#: reductions whose largest entry falls outside this range are redone on prescaled tables
SAFE_RANGE = (1e-30, 1e30)
_LOG_SAFE = (math.log(SAFE_RANGE[0]), math.log(SAFE_RANGE[1]))
T = TypeVar("T")


@contextmanager
def unscaled():
    """Within this block :meth:`Scaled.normalised` is the identity."""
    previous = getattr(_state, "unscaled", False)
    _state.unscaled = True
    try:
        yield
    finally:
        _state.unscaled = previous


def is_unscaled() -> bool:
    """True inside :func:`unscaled`: reductions may skip their own range checks, because the caller
    (:func:`robustly`) checks the result and reruns with scaling."""
    return getattr(_state, "unscaled", False)


def robustly(compute: Callable[[], T], finite: Callable[[T], bool]) -> T:
    """``compute()`` unscaled if ``finite(result)``, else again with scaling."""
    with unscaled():
        result = compute()
    if finite(result):
        return result
    return compute()


def all_finite(x: Tensor) -> bool:
    """No NaN or infinity in ``x``. One sum first (``isfinite(x).all()`` is 15x slower on CPU);
    the exact check only when the sum is not finite (overflow of a finite sum, or a true one)."""
    return bool(torch.isfinite(x.sum())) or bool(torch.isfinite(x).all())


def log_in_range(log_values: Tensor) -> bool:
    """Every entry of ``log_values`` (logs of linear-space results) lies strictly inside
    ``log SAFE_RANGE``: no NaN, no infinity, and no value so small that float32 underflow
    (subnormals) may have cost it precision on the way, nor so large that it nearly overflowed.

    The check of :func:`robustly`'s unscaled attempt of Gram-based (squared) masses: a finite
    result is not enough, as a product of Grams at parameter scale 1e-8 is a float32 subnormal,
    finite but 0.04 nats off."""
    low, high = (v.item() for v in torch.aminmax(log_values.detach()))
    return _LOG_SAFE[0] < low and high < _LOG_SAFE[1]  # False for NaN


def row_norms_in_range(norms: Tensor, width: int) -> bool:
    """The rows behind ``norms`` (their 2-norms; ``width`` entries a row) are finite and each has
    an entry above ``SAFE_RANGE[0]``, so float32 underflow cannot have hurt its larger entries.

    NaN and infinity propagate into a row's norm, and ``max |x_b| >= ‖x_b‖ / √width``. A row whose
    squares overflow fails too (a needless, correct rerun with scaling).
    """
    low, high = (v.item() for v in torch.aminmax(norms))
    return low > SAFE_RANGE[0] * width**0.5 and high < math.inf  # False for NaN


def unit_max(w: Tensor) -> tuple[Tensor, Tensor]:
    """``(w / m, log m)`` with ``m = max |w|`` (detached, at least the smallest positive float):
    a weight tensor brought to unit scale before a linear map, its scale kept as a log.
    Inside :func:`unscaled`: ``(w, 0)``, plain arithmetic like everything there."""
    if is_unscaled():
        return w, w.new_zeros(())
    top = w.detach().abs().amax().clamp_min(torch.finfo(w.dtype).tiny)
    return w / top, torch.log(top)


def abs_max(x: Tensor, dim: int | None = None) -> Tensor:
    """``max |x|`` over everything or along ``dim``; NaN propagates.

    ``aminmax`` rather than ``vector_norm(x, inf)``, which is over 10x slower on CPU.
    """
    lo, hi = torch.aminmax(x) if dim is None else torch.aminmax(x, dim=dim)
    return torch.maximum(-lo, hi)


def _row_view(log_scale: Tensor, ndim: int) -> Tensor:
    return log_scale.reshape(log_scale.shape + (1,) * (ndim - 1))


class _SafeLogAbs(torch.autograd.Function):
    """``log |x|`` whose gradient at ``x = 0`` is 0 instead of ``inf`` (so ``0 · inf`` is no NaN).

    A value that is exactly zero contributes ``-inf`` to a log-probability, and wherever such a
    term is multiplied by a zero weight (a softmax over values, a masked sum) the true derivative is
    0; the plain ``log(abs(x))`` backward would produce ``0 · (1/0) = NaN`` instead.
    """

    @staticmethod
    def forward(ctx, x: Tensor) -> Tensor:
        ctx.save_for_backward(x)
        return torch.log(x.abs())

    @staticmethod
    def backward(ctx, grad: Tensor) -> Tensor:
        (x,) = ctx.saved_tensors
        safe = torch.where(x == 0, torch.ones_like(x), x)
        return torch.where(x == 0, torch.zeros_like(grad), grad / safe)


def safe_log_abs(x: Tensor) -> Tensor:
    """``log |x|`` with a zero gradient where ``x == 0`` (see :class:`_SafeLogAbs`)."""
    return _SafeLogAbs.apply(x)


@dataclass
class Scaled:
    """``value * exp(log_scale)`` with one scale per leading (batch) row."""

    value: Tensor
    log_scale: Tensor

    @staticmethod
    def of(x: Tensor) -> Scaled:
        """Wrap a plain tensor ``(N, ...)`` (scale 1) and normalise it."""
        zeros = torch.zeros(x.shape[0], dtype=x.dtype, device=x.device)
        return Scaled(x, zeros).normalised()

    def normalised(self) -> Scaled:
        """Divide each row by its largest absolute entry (rows of zeros are left alone)."""
        if is_unscaled():
            return self
        v = self.value
        m = abs_max(v.detach().reshape(v.shape[0], -1), dim=1)
        m = torch.where(m > 0, m, torch.ones_like(m))
        return Scaled(v / _row_view(m, v.ndim), self.log_scale + torch.log(m))

    def log_abs(self) -> Tensor:
        """``log |value * exp(log_scale)|`` elementwise, shape of ``value``."""
        return safe_log_abs(self.value) + _row_view(self.log_scale, self.value.ndim)

    def dense(self) -> Tensor:
        """The plain tensor (may overflow; for tests and small values)."""
        return self.value * torch.exp(_row_view(self.log_scale, self.value.ndim))

    @property
    def shape(self) -> torch.Size:
        """The value's shape."""
        return self.value.shape

    @property
    def device(self) -> torch.device:
        return self.value.device

    def map(self, fn) -> Scaled:
        """Apply a linear, shape-changing function to the value (same scale)."""
        return Scaled(fn(self.value), self.log_scale)

    def split(self, sizes: list[int]) -> list[Scaled]:
        """The rows in consecutive pieces of ``sizes``."""
        pieces = zip(self.value.split(sizes), self.log_scale.split(sizes), strict=True)
        return [Scaled(v, s) for v, s in pieces]

    def expand_rows(self, n: int) -> Scaled:
        """Broadcast a one-row scaled tensor to ``n`` rows."""
        if self.value.shape[0] == n:
            return self
        return Scaled(self.value.expand((n,) + self.value.shape[1:]), self.log_scale.expand(n))


class MixtureParts(Protocol):
    """What :class:`MixedScaled` mixes: ``C`` parts of shape ``shape[1:]``, read only through the
    image of a row-wise linear map (with one scale for all parts), e.g.
    :class:`~circuitkg.params.reductions.ClassGrams`. The image of one function object is computed
    once."""

    @property
    def shape(self) -> torch.Size: ...

    def image(self, fn: Callable[[Tensor], Tensor]) -> Scaled: ...


@dataclass
class MixedScaled:
    """Rows ``mix @ parts``: each of ``B`` rows a fixed mixture of ``C`` parts sharing one scale,
    held unmixed.

    A schema's weighted Gram is one (``B`` signature groups, ``C`` entity classes): a consumer that
    applies a row-wise linear map ``f`` first reads ``mix @ f(parts)`` through :meth:`map`, which
    mixes ``f``'s (perhaps smaller) image instead of whole parts. ``row_of`` (optional) repeats the
    mixed rows: row ``b`` of the value is mixed row ``row_of[b]``. ``mix`` carries no gradient.
    Pieces :meth:`split` from one mixture read its rows: the image of a map is mixed once for all
    of them (one pass over the image, forward and backward), then split.
    """

    parts: MixtureParts
    mix: Tensor
    row_of: Tensor | None = None
    #: the mixture this is piece ``piece`` of (split by ``whole.sizes``)
    whole: MixedScaled | None = None
    piece: int = 0
    sizes: tuple[int, ...] = ()

    @property
    def shape(self) -> torch.Size:
        """The shape of the mixed rows' value."""
        if self.whole is not None:
            rows = self.whole.sizes[self.piece]
        else:
            rows = self.mix.shape[0] if self.row_of is None else self.row_of.shape[0]
        return torch.Size((rows, *self.parts.shape[1:]))

    @property
    def device(self) -> torch.device:
        return self.mix.device

    @cached_property
    def nested(self) -> NestedSums | None:
        """The nested sums that mix a 0/1 mixture by additions (:mod:`circuitkg.mixing`)."""
        return nested_sums(self.mix)

    @cached_property
    def mapped(self) -> dict[Callable[[Tensor], Tensor], tuple[Tensor, ...]]:
        """The mixed images computed so far (of a whole mixture, in its pieces), by function."""
        return {}

    def map(self, fn: Callable[[Tensor], Tensor]) -> Scaled:
        """``mix @ fn(parts)`` for a linear ``fn`` acting on each leading row alone, normalised.
        ``O(B C |fn(part)|)``: one ``mm``, whose backward (``mixᵀ @ grad``) is one ``mm`` too; a
        0/1 mixture of nested rows costs far fewer row additions (:mod:`circuitkg.mixing`)."""
        image = self.parts.image(fn)
        whole = self if self.whole is None else self.whole
        if fn not in whole.mapped:
            flat = image.value.flatten(1)
            plan = whole.nested if could_pay(flat.shape[0], flat.shape[1]) else None
            value = mixed_rows(whole.mix, flat, plan)
            value = value.reshape(-1, *image.value.shape[1:])
            value = value if whole.row_of is None else value[whole.row_of]
            whole.mapped[fn] = value.split(list(whole.sizes)) if whole.sizes else (value,)
        value = whole.mapped[fn][self.piece]
        return Scaled(value, image.log_scale[:1].expand(value.shape[0])).normalised()

    def split(self, sizes: list[int]) -> list[MixedScaled]:
        """The rows in consecutive pieces of ``sizes``, each a piece of this mixture."""
        whole = MixedScaled(self.parts, self.mix, self.row_of, sizes=tuple(sizes))
        return [MixedScaled(self.parts, self.mix, self.row_of, whole, i) for i in range(len(sizes))]


def scaled_product(factors: list[Scaled], equation: str) -> Scaled:
    """``einsum(equation, *values)`` of scaled factors; the scales add up.

    The equation must keep the batch index as the first output index of every operand.
    """
    n = max(f.value.shape[0] for f in factors)
    factors = [f.expand_rows(n) for f in factors]
    value = torch.einsum(equation, *[f.value for f in factors])
    log_scale = factors[0].log_scale
    for f in factors[1:]:
        log_scale = log_scale + f.log_scale
    return Scaled(value, log_scale).normalised()


def scaled_sum(terms: list[Scaled]) -> Scaled:
    """Sum of scaled tensors of equal shape, aligned on the largest scale per row."""
    if len(terms) == 1:
        return terms[0]
    n = max(t.value.shape[0] for t in terms)
    terms = [t.expand_rows(n) for t in terms]
    scales = torch.stack([t.log_scale for t in terms])
    top = scales.amax(dim=0)
    top = torch.where(torch.isfinite(top), top, torch.zeros_like(top))
    total = sum(t.value * _row_view(torch.exp(t.log_scale - top), t.value.ndim) for t in terms)
    return Scaled(total, top).normalised()
