"""Exact sampling from squared circuits, one variable at a time from conditional marginals.

A squared circuit defines ``p(x) = φ(x)² / Z``; its top-down walk is not a distribution (``φ`` has
signs), but every marginal is exact (Gram matrices / pair mode of the executor). So the unobserved
variables ``X_1, ..., X_d`` (in ``compiled.variables`` order) are drawn by the chain rule

``x_1 ~ p(x_1 | e), x_2 ~ p(x_2 | e, x_1), ..., x_d ~ p(x_d | e, x_1..x_{d-1})``

with :meth:`CompiledCircuit.log_conditional` (the variables after ``X_t`` are integrated). Samples
that share a prefix ``(e, x_1..x_{t-1})`` share one conditional: each sample carries a dense prefix
id, extended by every drawn variable (``id · |X_t| + x_t``, re-densified with ``torch.unique``:
``O(N log N)`` per variable, no overflow), and each distinct prefix costs one row of
``log_conditional``. For a KG (``s, r, o``) that is ``p(s)`` once, ``p(r | s)`` per distinct ``s``
(``O(mK²)`` each with the executor's Gram plan) and ``p(o | s, r)`` per distinct ``(s, r)``
(``O(nK)``: everything else is observed). Conditionals are computed in chunks of prefixes sized
so that the executor's intermediates stay within about ``max_entries`` entries
(:func:`_entries_per_prefix`).
"""

from __future__ import annotations

import torch
from torch import Tensor

from circuitkg.sampling.categorical import MAX_ENTRIES, draw


def sample_sequential(
    compiled,
    num_samples: int,
    given: dict[str, Tensor],
    generator: torch.Generator | None = None,
    max_entries: int = MAX_ENTRIES,
) -> Tensor:
    """``(num_samples, V)`` ids drawn from ``p(x_unobserved | given)`` by the chain rule."""
    variables = compiled.variables
    out = torch.empty(num_samples, len(variables), dtype=torch.long, device=compiled.device)
    prefix = out.new_zeros(num_samples)  # id of each sample's prefix, dense in [0, #prefixes)
    known = []
    for v in [v for v in variables if v in given] + [v for v in variables if v not in given]:
        column = variables.index(v)
        if v in given:
            out[:, column] = given[v].expand(num_samples)
        else:
            out[:, column] = _draw_variable(compiled, v, out, prefix, known, generator, max_entries)
        known.append(v)
        _, prefix = torch.unique(prefix * compiled.domains[v] + out[:, column], return_inverse=True)
    return out


def _draw_variable(
    compiled,
    target: str,
    out: Tensor,
    prefix: Tensor,
    known: list[str],
    generator: torch.Generator | None,
    max_entries: int,
) -> Tensor:
    """``x_i ~ p(target | prefix_i)`` for every sample, one conditional per distinct prefix."""
    n = out.shape[0]
    num_prefixes = int(prefix.max()) + 1 if n else 0
    representative = prefix.new_empty(num_prefixes).scatter_(
        0, prefix, torch.arange(n, device=out.device)
    )
    values = out[representative][:, [compiled.variables.index(v) for v in known]]
    chunk = max(1, max_entries // _entries_per_prefix(compiled, target, known))
    order = torch.argsort(prefix)
    starts = torch.arange(0, num_prefixes + chunk, chunk, device=out.device)
    bounds = torch.searchsorted(prefix[order], starts)
    result = torch.empty(n, dtype=torch.long, device=out.device)
    for c, start in enumerate(range(0, num_prefixes, chunk)):
        block = values[start : start + chunk]
        log_p = compiled.log_conditional(target, **{v: block[:, j] for j, v in enumerate(known)})
        chosen = order[int(bounds[c]) : int(bounds[c + 1])]
        result[chosen] = draw(log_p, prefix[chosen] - start, generator)
    return result


def _entries_per_prefix(compiled, target: str, known: list[str]) -> int:
    """Memory of one conditional row: ``|X|`` when every other variable is observed (one
    contraction), else ``|X| · K_max`` (the executor expands each prefix to ``|X|`` rows of pair-mode
    or quadratic-form evaluation over layers of width up to ``K_max``)."""
    size = compiled.domains[target]
    if len(known) == len(compiled.variables) - 1:
        return size
    return size * max(layer.width for layer in compiled.circuit.layers)
