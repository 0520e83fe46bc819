"""One training step's queries, computed as a hand-written step would.

An optimisation step asks several queries of one batch (the PLL's three conditionals, plus a
regulariser over the same rows) and backpropagates once. Inside :func:`training_step`:

* each Gram matrix is computed once and shared by every query
  (:func:`~circuitkg.executor.grams.shared_within_step`): ``O(n K²)`` once per table per step instead
  of once per query;
* each ``(table, index)`` gather is made once, and its backward adds the batch's rows into the
  parameter's gradient, ``O(B K)``, instead of zero-filling an ``n x K`` tensor per gather
  (:func:`~circuitkg.params.gather.row_gradients_accumulated`).

Values and gradients are those of the same queries outside the scope. The trainer and the objectives
in :mod:`circuitkg.train.objectives` enter it; a loop of one's own can too::

    with training_step():
        loss = pll_loss(compiled, batch)
    loss.backward()

Leave the scope before the optimiser changes a parameter: what it memoised is of the old values.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

from circuitkg.executor.grams import shared_within_step
from circuitkg.params.gather import row_gradients_accumulated


@contextmanager
def training_step() -> Iterator[None]:
    """Share Grams and gathers among the queries inside (module docstring); nests."""
    with shared_within_step(), row_gradients_accumulated():
        yield
