"""Conditionals of a squared circuit with other variables summed out, for every target value.

``log Σ_rest φ(x, rest, e)²`` for all ``x`` at once: one pair-mode pass with the target's input
pairs as leaves, one backward pass for ``Q = ∂root/∂P``, then ``T[x] Q T[x]ᵀ`` per value
(:func:`quadratic_rows`), ``O(B K² + |X| K²)`` per row instead of one pair-mode pass per value.
"""

from __future__ import annotations

import torch
from torch import Tensor

from circuitkg.executor.grams import _QueryGrams
from circuitkg.executor.pairs import PairEvaluator
from circuitkg.executor.passes import Evidence, Plan
from circuitkg.numerics import abs_max, is_unscaled, log_in_range

__all__ = ["enumerated_log_mass", "quadratic_rows", "row_max_in_range"]


def enumerated_log_mass(
    plan: Plan, evidence: Evidence, grams: _QueryGrams, target: str, batch: int
) -> Tensor:
    """Squared circuits with other variables summed out: ``log Σ_rest φ(x, rest, e)²`` for
    every ``x`` (``log p(x | e)`` up to a constant per row).

    One pair-mode pass with the target's input pairs as leaves, one backward pass for
    ``Q = ∂root/∂P`` (:meth:`PairEvaluator.target_adjoint`), then ``T[x] Q T[x]ᵀ`` for all ``x``:
    ``O(B K² + |X| K²)`` per row instead of one pair-mode pass per value.
    """
    evaluator = PairEvaluator(plan, evidence, grams, target=target, batch=batch)
    _, pairs = evaluator.target_adjoint()
    if is_unscaled():
        mass = sum(
            quadratic_rows(a.table, g * torch.exp(f).reshape(-1, 1, 1), b.table)
            for a, b, g, f in pairs
        )
        return torch.log(mass.clamp_min(0))
    # scaled: each term T_a[x] Q T_b[x]ᵀ on unit-max tables and Q, its scale kept as a log
    terms = []
    for a, b, q, factor in pairs:
        ma, mb = a.table.abs_max(), b.table.abs_max()
        mq = abs_max(q.detach().reshape(q.shape[0], -1), dim=1)
        mq = mq.clamp_min(torch.finfo(q.dtype).tiny).reshape(-1, 1, 1)
        value = quadratic_rows(a.table, q / mq, b.table, scales=(ma, mb))
        log_scale = factor + torch.log(mq).reshape(-1) + torch.log(ma) + torch.log(mb)
        terms.append((value, log_scale.reshape(-1, 1)))
    top = torch.stack([c for _, c in terms]).amax(dim=0)
    mass = sum(value * torch.exp(c - top) for value, c in terms)
    return torch.log(mass.clamp_min(0)) + top


def quadratic_rows(ta, q: Tensor, tb, budget: int = 2**24, scales=None) -> Tensor:
    """``(B, |X|)``: ``T_a[x] Q_b T_b[x]ᵀ`` for every value ``x``, chunked over values; with
    ``scales = (m_a, m_b)`` of the tables divided by them.

    Views are folded into their base first (:meth:`~circuitkg.params.Table.fold`; ComplEx: ``Q``
    of ``4K x 4K`` becomes ``2K x 2K``), so the ``O(B |X| K_a K_b)`` part runs at the base width.
    """
    q = tb.fold(ta.fold(q, dim=1), dim=2)
    ta, tb = ta.as_view()[0], tb.as_view()[0]
    batch, ka, kb = q.shape
    step = max(1, budget // max(1, batch * kb))
    out = []
    for ca, cb in zip(ta.chunks(step), tb.chunks(step), strict=True):
        if scales is not None:
            ca, cb = ca / scales[0], cb / scales[1]
        out.append(torch.einsum("xi,bij,xj->bx", ca, q, cb))
    return torch.cat(out, dim=1)


def row_max_in_range(x: Tensor) -> bool:
    """Log-masses ``(B, |X|)``: every row's largest entry in range (:func:`log_in_range`), so no
    row overflowed, is NaN, or underflowed into float32 subnormals (zero mass rows rerun too)."""
    return log_in_range(x.amax(dim=-1))
