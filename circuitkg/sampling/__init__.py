"""Exact sampling from normalised circuits: ``sample(compiled, num_samples, given=None)``.

* ``monotone`` circuits: top-down ancestral sampling (:mod:`circuitkg.sampling.ancestral`);
* ``squared`` circuits: the chain rule in the cheapest variable order, values drawn from Gram
  trees (:mod:`circuitkg.sampling.chain`, :mod:`circuitkg.sampling.tree`);
* any other normalised circuit (schema-constrained ones, of either form): one variable at a time
  from its exact conditionals (:mod:`circuitkg.sampling.sequential`);
* ``score`` circuits are unnormalised and cannot be sampled (:class:`~circuitkg.errors.FormError`).

``given`` fixes variables (an int, or a long tensor of one value per sample) and the rest is drawn
from ``p(rest | given)``. A ``torch.Generator`` makes draws reproducible; it may live on the CPU
while the circuit is on CUDA (uniforms are drawn on the generator's device and moved), so the same
seed gives the same samples on either device up to floating-point ties. Memory is bounded by
``max_entries`` (rows x values of the largest intermediate) through chunking over samples.
"""

from __future__ import annotations

import operator

import torch
from torch import Tensor

from circuitkg.errors import EvidenceError, FormError
from circuitkg.sampling.ancestral import sample_monotone
from circuitkg.sampling.categorical import MAX_ENTRIES, draw, normalise_given
from circuitkg.sampling.chain import choose_order, sample_squared
from circuitkg.sampling.sequential import sample_sequential
from circuitkg.sampling.tree import GramTree, SumTree

__all__ = [
    "MAX_ENTRIES",
    "GramTree",
    "SumTree",
    "choose_order",
    "draw",
    "sample",
    "sample_monotone",
    "sample_sequential",
    "sample_squared",
]


def sample(
    compiled,
    num_samples: int,
    given: dict[str, int | Tensor] | None = None,
    generator: torch.Generator | None = None,
    max_entries: int = MAX_ENTRIES,
) -> Tensor:
    """``num_samples`` exact samples, a long tensor ``(N, V)`` in ``compiled.variables`` order.

    Given variables keep their given values in the output columns. Raises
    :class:`~circuitkg.errors.EvidenceError` for unknown variables, values outside a domain, or
    evidence of probability zero.
    """
    if compiled.form == "score":
        raise FormError(
            "sampling needs a normalised circuit, but this one is in 'score' form (unnormalised); "
            "compile the model with form='squared' or form='monotone'"
        )
    try:
        if isinstance(num_samples, bool):
            raise TypeError
        num_samples = operator.index(num_samples)  # ints (and numpy/torch integers) only
    except TypeError:
        raise EvidenceError(f"num_samples must be a whole number, got {num_samples!r}") from None
    num_samples = int(num_samples)
    if num_samples < 0:
        raise EvidenceError(f"num_samples must be >= 0, got {num_samples}")
    evidence = normalise_given(
        compiled.variables, compiled.domains, given, num_samples, compiled.device
    )
    # a compiled circuit exposes its expansions (the executor's public plan): top-down sampling
    # (monotone) or Gram trees (squared); any other normalised circuit (a schema-constrained one)
    # answers exact conditionals, which the plain chain rule needs
    samplers = {"monotone": sample_monotone, "squared": sample_squared}
    planned = getattr(compiled, "expansions", None) is not None
    sampler = samplers[compiled.form] if planned else sample_sequential
    with torch.no_grad():
        return sampler(compiled, num_samples, evidence, generator, max_entries)
