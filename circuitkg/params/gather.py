"""Row gathers of parameter tables, and their cost inside one training step.

A table's ``rows(index)`` is ``θ[index]``, ``O(B K)``. Its plain autograd backward is not: it
zero-fills a dense ``n x K`` gradient and scatters the ``B`` rows into it, and autograd then adds that
tensor into the parameter's gradient, two passes over ``n K`` per gather. A squared PLL step makes
one gather per (input layer, query), nine to fifteen of them, so at FB15k-237 size those passes were
15-35% of a step (``docs/performance.md``).

Inside :func:`row_gradients_accumulated` (which :func:`circuitkg.executor.training_step` enters):

* each gather of a leaf parameter gives a *sparse* row gradient (``F.embedding(sparse=True)``):
  autograd adds the ``B`` rows into the parameter's dense gradient, ``O(B K)``, with no dense
  intermediate. Where every use of a parameter in the step was a gather, its accumulated gradient
  is sparse; a hook turns it dense once, after accumulation (one ``n K`` fill, as a hand-written
  step with one gather per table pays), so optimisers see the usual dense ``.grad``;
* the same ``(parameter, index)`` is gathered once: the step's queries (three PLL terms, the N3
  regulariser) read the same rows of the batch, and a repeat returns the first gather's tensor.

Outside it (evaluation, sampling, :func:`torch.autograd.grad` in user code) gathers are plain
indexing. The values are the same either way; only the backward's bookkeeping differs.
"""

from __future__ import annotations

import weakref
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from contextvars import ContextVar

import torch
import torch.nn.functional as F
from torch import Tensor

#: per active step: ``(id(weight), index key) -> (index, weight, rows)``; ``None`` outside a step
_STEP_ROWS: ContextVar[dict | None] = ContextVar("circuitkg_step_rows", default=None)
#: parameters that carry the densifying hook (a deep copy of a module gets new ones, without it)
_HOOKED: weakref.WeakValueDictionary = weakref.WeakValueDictionary()  # id -> parameter


@contextmanager
def memo_scope(memo: ContextVar[dict | None]) -> Iterator[None]:
    """``memo`` holds a fresh dict inside (``None`` outside); a nested scope shares the outermost
    one's. The one mechanism behind a training step's shared gathers, Grams and values."""
    if memo.get() is not None:
        yield
        return
    token = memo.set({})
    try:
        yield
    finally:
        memo.reset(token)


def row_gradients_accumulated():
    """Gathers inside give sparse, densified-once row gradients and are memoised (module doc).
    Nested scopes share the outermost one's memo."""
    return memo_scope(_STEP_ROWS)


def gather(weight: Tensor, index: Tensor, transform: Callable[[Tensor], Tensor] | None = None):
    """``transform(weight[index])`` (``weight[index]`` without one), sparse-gradient and memoised
    inside :func:`row_gradients_accumulated` (``transform`` is part of the memo key by identity,
    so pass a module-level function)."""
    memo = _STEP_ROWS.get()
    if memo is None or not (weight.is_leaf and weight.requires_grad) or index.ndim != 1:
        rows = weight[index]
        return rows if transform is None else transform(rows)
    key = (id(weight), id(transform), tensor_key(index))
    hit = memo.get(key)
    if hit is not None:
        return hit[2]
    if _HOOKED.get(id(weight)) is not weight:
        weight.register_post_accumulate_grad_hook(_densify)
        _HOOKED[id(weight)] = weight
    rows = F.embedding(index, weight, sparse=True)
    rows = rows if transform is None else transform(rows)
    memo[key] = (index, weight, rows)  # holding ``index`` keeps its address from being reused
    return rows


def tensor_key(x: Tensor) -> tuple:
    """What identifies ``x``'s values within a step, with the grad mode: its memory (address,
    shape, strides, device). Sound while ``x`` is alive and unmodified; memos hold ``x`` for that."""
    return (x.data_ptr(), tuple(x.shape), x.stride(), x.device, x.dtype, torch.is_grad_enabled())


def _densify(parameter: Tensor) -> None:
    if parameter.grad is not None and parameter.grad.is_sparse:
        parameter.grad = parameter.grad.to_dense()
