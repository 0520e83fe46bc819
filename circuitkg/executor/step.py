"""One training step's queries, computed as a hand-written step would.

An optimisation step asks several queries of one batch (the PLL's three conditionals, plus a
regulariser over the same rows) and backpropagates once. Inside :func:`training_step`:

* each Gram matrix is computed once and shared by every query
  (:func:`~circuitkg.executor.grams.shared_within_step`): ``O(n K²)`` once per table per step instead
  of once per query;
* each ``(table, index)`` gather is made once, and its backward adds the batch's rows into the
  parameter's gradient, ``O(B K)``, instead of zero-filling an ``n x K`` tensor per gather
  (:func:`~circuitkg.params.gather.row_gradients_accumulated`);
* a value the executor marks with :func:`memoised_in_step` (the full triple's ``log φ²``, which
  all three PLL terms subtract from) is computed once for the same evidence tensors.

Values and gradients are those of the same queries outside the scope. The trainer and the objectives
in :mod:`circuitkg.train.objectives` enter it; a loop of one's own can too::

    with training_step():
        loss = pll_loss(compiled, batch)
    loss.backward()

Leave the scope before the optimiser changes a parameter: what it memoised is of the old values.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from typing import TypeVar

from torch import Tensor

from circuitkg.executor.grams import shared_within_step
from circuitkg.params.gather import memo_scope, row_gradients_accumulated, tensor_key

T = TypeVar("T")

#: per active step: ``key -> (the tensors it names, value)``; ``None`` outside a step
_STEP_VALUES: ContextVar[dict | None] = ContextVar("circuitkg_step_values", default=None)


@contextmanager
def training_step() -> Iterator[None]:
    """Share Grams, gathers and marked values among the queries inside (module docstring); nests."""
    with memo_scope(_STEP_VALUES), shared_within_step(), row_gradients_accumulated():
        yield


def memoised_in_step(
    owner: object, what: str, tensors: list[Tensor | None], compute: Callable[[], T]
) -> T:
    """``compute()``, or inside :func:`training_step` the value it gave for the same ``owner``,
    ``what`` and evidence ``tensors`` (by memory: :func:`~circuitkg.params.gather.tensor_key`)."""
    memo = _STEP_VALUES.get()
    if memo is None:
        return compute()
    key = (id(owner), what, *(None if t is None else tensor_key(t) for t in tensors))
    hit = memo.get(key)
    if hit is None:
        hit = memo[key] = ((owner, tensors), compute())  # holding them keeps their ids unique
    return hit[1]
