"""The numeric representations the executor evaluates circuits in.

:class:`LinearSemiring` values are :class:`~circuitkg.numerics.Scaled` tensors: linear space with one
log-scale per batch row, signs kept (score and squared forms). :class:`PlainSemiring` values are
plain linear-space tensors: the unscaled first attempt of the same forms, redone in
:class:`LinearSemiring` when out of range. :class:`LogSemiring` values are plain log-tensors
(monotone form): products add exactly, and linear maps shift by the row maximum, apply the map in
linear space and take the log again. All expose the same operations, so the forward and adjoint
passes in :mod:`circuitkg.executor.passes` are written once:

* ``hadamard(values)``; ``outer(values)`` (materialised Kronecker, units in row-major order);
* ``linear(x, W)``: ``x @ Wᵀ``; ``unit_sum(x)``: ``Σ_k x_k``, the same for ``W`` a row of ones
  (its backward broadcasts the gradient instead of materialising ``g ⊗ W``); ``add(values)``;
* ``contract(W, head, factors)``: ``W`` of shape ``(o, k_1, ..., k_d)`` contracted with ``head``
  over ``o`` and with each given factor over its ``k_i``; ``None`` keeps the axis. This one routine
  is the fused sum-over-Kronecker of the forward pass (head ``None``, all factors) and every
  adjoint through it (head given, one factor ``None``); it never builds the ``Π k_i`` vector.
"""

from __future__ import annotations

import string

import torch
from torch import Tensor

from circuitkg.executor.blocks import ViewRows, row_operands, row_product, row_values
from circuitkg.numerics import Scaled, scaled_product, scaled_sum, unit_max

_LETTERS = string.ascii_letters.replace("N", "").replace("o", "")


def scaled_contract(w: Tensor, head: Scaled | None, factors: list[Scaled | None]) -> Scaled:
    """``contract`` on :class:`Scaled` values; contracts the head first, then factors last-to-first."""
    d = len(factors)
    if w.ndim != d + 1:
        raise ValueError(f"weight of shape {tuple(w.shape)} does not split into {d} factors")
    w_unit, log_w = unit_max(w)
    if head is not None and factors == [None]:
        # a plain sum layer's adjoint, head @ W: one matmul rather than the einsum below
        return Scaled(head.value @ w_unit, head.log_scale + log_w).normalised()
    axes = ["o"] + list(_LETTERS[:d])
    cur: Scaled | None = None
    cur_axes = axes
    cur_value = w_unit
    steps = ([(0, head)] if head is not None else []) + [
        (i + 1, f) for i, f in reversed(list(enumerate(factors))) if f is not None
    ]
    for axis_pos, operand in steps:
        letter = axes[axis_pos]
        kept = [a for a in cur_axes if a != letter]
        lhs = ("N" if cur is not None else "") + "".join(cur_axes)
        eq = f"{lhs},N{letter}->N{''.join(kept)}"
        value = torch.einsum(eq, cur_value, operand.value)
        log_scale = operand.log_scale if cur is None else cur.log_scale + operand.log_scale
        cur = Scaled(value, log_scale).normalised()
        cur_value, cur_axes = cur.value, kept
    if cur is None:
        raise ValueError("contract needs at least one operand")
    return Scaled(cur.value, cur.log_scale + log_w)


def scaled_linear(x: Scaled, w: Tensor) -> Scaled:
    """``x @ Wᵀ`` for ``x`` of shape ``(N, i)`` and ``W`` of shape ``(o, i)``.

    ``F.linear`` rather than :func:`scaled_contract`'s einsum: its input gradient comes out
    contiguous, where einsum's (a batched matmul for ``o = 1``) is transposed and makes every later
    elementwise op of the backward pass strided (3x slower for ComplEx² log p at K = 100).
    """
    w_unit, log_w = unit_max(w)
    return Scaled(torch.nn.functional.linear(x.value, w_unit), x.log_scale + log_w).normalised()


class LinearSemiring:
    """Signed linear space with per-row scaling (values are :class:`Scaled`)."""

    name = "linear"

    def lift(self, rows: Tensor) -> Scaled:
        return Scaled.of(rows)

    def of_scaled(self, x: Scaled) -> Scaled:
        """A table reduction (column sums, weighted sums) as a value."""
        return x

    def ones(self, n: int, dtype: torch.dtype, device: torch.device) -> Scaled:
        return Scaled.of(torch.ones(n, 1, dtype=dtype, device=device))

    def hadamard(self, values: list[Scaled | ViewRows]) -> Scaled:
        """Elementwise product; lazy view rows (:class:`~circuitkg.executor.blocks.ViewRows`)
        are multiplied from their base rows (:func:`~circuitkg.executor.blocks.row_product`)."""
        if any(isinstance(v, ViewRows) for v in values):
            return row_product(values)
        value, log_scale = values[0].value, values[0].log_scale
        for v in values[1:]:
            value, log_scale = value * v.value, log_scale + v.log_scale
        return Scaled(value, log_scale).normalised()

    def outer(self, values: list[Scaled]) -> Scaled:
        letters = _LETTERS[: len(values)]
        eq = ",".join(f"N{a}" for a in letters) + f"->N{letters}"
        out = scaled_product(values, eq)
        return out.map(lambda v: v.reshape(v.shape[0], -1))

    def outer_adjoint(self, adj: Scaled, factors: list[Scaled | None], widths: list[int]) -> Scaled:
        """Adjoint of the single ``None`` factor of a materialised Kronecker product."""
        letters = _LETTERS[: len(factors)]
        shaped = adj.map(lambda v: v.reshape((v.shape[0], *widths)))
        target = letters[[i for i, f in enumerate(factors) if f is None][0]]
        operands = [shaped] + [f for f in factors if f is not None]
        eq = f"N{letters}," + ",".join(
            f"N{a}" for a, f in zip(letters, factors, strict=True) if f is not None
        )
        return scaled_product(operands, eq.rstrip(",") + f"->N{target}")

    def linear(self, x: Scaled, w: Tensor) -> Scaled:
        return scaled_linear(x, w)

    def unit_sum(self, x: Scaled) -> Scaled:
        """``Σ_k x[:, k]`` as one unit: a sum layer whose weight is a fixed row of ones."""
        return Scaled(x.value.sum(dim=1, keepdim=True), x.log_scale).normalised()

    def contract(self, w: Tensor, head: Scaled | None, factors: list[Scaled | None]) -> Scaled:
        return scaled_contract(w, head, factors)

    def add(self, values: list[Scaled]) -> Scaled:
        return scaled_sum(values)

    def log_abs(self, x: Scaled) -> Tensor:
        return x.log_abs()


class PlainSemiring:
    """Plain linear-space tensors, no scales: the first, unscaled attempt of
    :func:`~circuitkg.numerics.robustly` for score and squared circuits, which a result out of
    range sends back to :class:`LinearSemiring`. Same numbers as :class:`LinearSemiring` inside
    :func:`~circuitkg.numerics.unscaled`, without its per-row scale tensors and their additions;
    the Kronecker operations run through :class:`LinearSemiring` on unit scales."""

    name = "plain"

    def lift(self, rows: Tensor) -> Tensor:
        return rows

    def of_scaled(self, x: Scaled) -> Tensor:
        return x.dense()

    def ones(self, n: int, dtype: torch.dtype, device: torch.device) -> Tensor:
        return torch.ones(n, 1, dtype=dtype, device=device)

    def hadamard(self, values: list[Tensor | ViewRows]) -> Tensor:
        if any(isinstance(v, ViewRows) for v in values):
            return row_values(*row_operands(values))
        out = values[0]
        for v in values[1:]:
            out = out * v
        return out

    def outer(self, values: list[Tensor]) -> Tensor:
        return LinearSemiring().outer([Scaled.of(v) for v in values]).dense()

    def outer_adjoint(self, adj: Tensor, factors: list[Tensor | None], widths: list[int]) -> Tensor:
        lin = LinearSemiring().outer_adjoint(
            Scaled.of(adj), [None if f is None else Scaled.of(f) for f in factors], widths
        )
        return lin.dense()

    def linear(self, x: Tensor, w: Tensor) -> Tensor:
        return torch.nn.functional.linear(x, w)

    def unit_sum(self, x: Tensor) -> Tensor:
        return x.sum(dim=1, keepdim=True)

    def contract(self, w: Tensor, head: Tensor | None, factors: list[Tensor | None]) -> Tensor:
        if head is not None and factors == [None]:
            return head @ w
        h = None if head is None else Scaled.of(head)
        return scaled_contract(w, h, [None if f is None else Scaled.of(f) for f in factors]).dense()

    def add(self, values: list[Tensor]) -> Tensor:
        out = values[0]
        for v in values[1:]:
            out = out + v
        return out


class LogSemiring:
    """Log space for non-negative (monotone) circuits (values are log-tensors)."""

    name = "log"

    def lift(self, log_rows: Tensor) -> Tensor:
        return log_rows

    def ones(self, n: int, dtype: torch.dtype, device: torch.device) -> Tensor:
        return torch.zeros(n, 1, dtype=dtype, device=device)

    def hadamard(self, values: list[Tensor]) -> Tensor:
        out = values[0]
        for v in values[1:]:
            out = out + v
        return out

    def outer(self, values: list[Tensor]) -> Tensor:
        out = values[0]
        for v in values[1:]:
            out = (out.unsqueeze(-1) + v.unsqueeze(-2)).flatten(-2)
        return out

    def outer_adjoint(self, adj: Tensor, factors: list[Tensor | None], widths: list[int]) -> Tensor:
        lin = LinearSemiring().outer_adjoint(
            _to_scaled(adj), [None if f is None else _to_scaled(f) for f in factors], widths
        )
        return _from_scaled(lin)

    def linear(self, x: Tensor, w: Tensor) -> Tensor:
        return _from_scaled(scaled_linear(_to_scaled(x), w))

    def unit_sum(self, x: Tensor) -> Tensor:
        return torch.logsumexp(x, dim=1, keepdim=True)

    def contract(self, w: Tensor, head: Tensor | None, factors: list[Tensor | None]) -> Tensor:
        h = None if head is None else _to_scaled(head)
        return _from_scaled(
            scaled_contract(w, h, [None if f is None else _to_scaled(f) for f in factors])
        )

    def add(self, values: list[Tensor]) -> Tensor:
        if len(values) == 1:
            return values[0]
        shape = torch.broadcast_shapes(*(v.shape for v in values))
        return torch.logsumexp(torch.stack([v.expand(shape) for v in values]), dim=0)

    def log_abs(self, x: Tensor) -> Tensor:
        return x


def _to_scaled(log_x: Tensor) -> Scaled:
    flat = log_x.detach().reshape(log_x.shape[0], -1)
    top = flat.amax(dim=1)
    top = torch.where(torch.isfinite(top), top, torch.zeros_like(top))
    return Scaled(torch.exp(log_x - top.reshape((-1,) + (1,) * (log_x.ndim - 1))), top)


def _from_scaled(x: Scaled) -> Tensor:
    return x.log_abs()
