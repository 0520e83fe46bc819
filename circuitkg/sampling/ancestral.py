"""Exact top-down (ancestral) sampling from monotone circuits.

A monotone circuit ``φ ≥ 0`` defines ``p(x) = φ(x) / Z``. With evidence ``e`` (the given variables)
one forward pass in log space (:func:`~circuitkg.executor.passes.forward`, unobserved variables
integrated) gives every unit's integral ``Z_L[k] = Σ_{x unobserved} L_k(x, e)``. A sample then walks
down from the output unit:

* sum layer, unit ``u``: choose input ``j`` of the concatenated children with probability
  ``W[u, j] Z_child[j] / Z_L[u]`` (weights *times* integrals: a uniform choice of component is
  biased as soon as training moves the parameters);
* Hadamard product, unit ``u``: every child continues with unit ``u``; Kronecker product: the unit
  decomposes row-major into one unit per child (lazy Kronecker children of sum layers included:
  their integrals are the outer sum of the factors');
* input layer over an unobserved ``X``, unit ``k``: draw ``x ∝ T[x, k]`` from the table's
  :class:`~circuitkg.sampling.tree.SumTree` (block sums of each column, built once per parameter
  state), ``O(log |X| + L K)`` per draw for leaves of ``L`` values.

By decomposability a sample meets every layer with non-empty scope at most once, so the walk is
exact and batched: each layer handles all samples that reached it at once. Cost per chunk of ``M``
samples: one forward pass ``O(B Σ K_out K_in)`` (``B = 1`` for shared evidence, ``M`` for
per-sample evidence), ``O(M K_in)`` per sum layer, and ``O(M (log |X| + L K))`` per input layer.
The integrals come from ``compiled.expansions.log_integrals`` (:mod:`circuitkg.executor.expansions`).
"""

from __future__ import annotations

import torch
from torch import Tensor

from circuitkg.ir.circuit import Circuit
from circuitkg.ir.layers import InputLayer, Layer, ProductLayer, SumLayer
from circuitkg.params.tables import Table
from circuitkg.sampling.categorical import MAX_ENTRIES, draw
from circuitkg.sampling.tree import SumTree, cached

#: values per leaf of the input tables' sum trees
LEAF_SIZE = 256


def sample_monotone(
    compiled,
    num_samples: int,
    given: dict[str, Tensor],
    generator: torch.Generator | None = None,
    max_entries: int = MAX_ENTRIES,
) -> Tensor:
    """``(num_samples, V)`` ids drawn from ``p(x_unobserved | given)`` of a monotone ``compiled``."""
    variables = compiled.variables
    device = compiled.device
    out = torch.empty(num_samples, len(variables), dtype=torch.long, device=device)
    chunk = max(1, max_entries // _widest(compiled.circuit))
    for start in range(0, num_samples, chunk):
        m = min(chunk, num_samples - start)
        evidence = {
            v: (given[v] if given[v].numel() == 1 else given[v][start : start + m])
            if v in given
            else None
            for v in variables
        }
        x = _sample_chunk(compiled, evidence, m, generator)
        out[start : start + m] = torch.stack([x[v] for v in variables], dim=1)
    return out


def _widest(circuit: Circuit) -> int:
    """Largest number of logits one sample needs at once (a sum layer's concatenated input)."""
    widest = 1
    for layer in circuit.layers:
        if isinstance(layer, SumLayer):
            widest = max(widest, sum(c.width for c in layer.children))
    return widest


def _sample_chunk(
    compiled, evidence: dict, m: int, generator: torch.Generator | None
) -> dict[str, Tensor]:
    circuit: Circuit = compiled.circuit
    device = compiled.device
    given = {v: e for v, e in evidence.items() if e is not None}
    values = compiled.expansions.log_integrals(**given)
    open_vars = {v for v, e in evidence.items() if e is None}
    x = {
        v: torch.full((m,), -1, dtype=torch.long, device=device) if e is None else e.expand(m)
        for v, e in evidence.items()
    }
    everyone = torch.arange(m, device=device)
    pending: dict[int, list[tuple[Tensor, Tensor]]] = {
        id(circuit.output): [(everyone, torch.zeros(m, dtype=torch.long, device=device))]
    }

    def push(layer: Layer, rows: Tensor, units: Tensor) -> None:
        if layer.scope & open_vars and rows.numel():
            pending.setdefault(id(layer), []).append((rows, units))

    for layer in reversed(circuit.layers):
        parts = pending.pop(id(layer), None)
        if parts is None:
            continue
        rows = torch.cat([p[0] for p in parts])
        units = torch.cat([p[1] for p in parts])
        if isinstance(layer, InputLayer):
            x[layer.variable][rows] = sum_tree(layer.table).draw(units, generator)
        elif isinstance(layer, SumLayer):
            choice = draw(_sum_logits(layer, values, rows, units), generator=generator)
            for child, block in zip(layer.children, layer.blocks(), strict=True):
                hit = (choice >= block.start) & (choice < block.stop)
                push(child, rows[hit], choice[hit] - block.start)
        elif isinstance(layer, ProductLayer) and layer.kind == "hadamard":
            for child in layer.children:
                push(child, rows, units)
        else:
            rest = units
            for child in reversed(layer.children):
                push(child, rows, rest % child.width)
                rest = rest // child.width
    return x


def _sum_logits(layer: SumLayer, values: dict, rows: Tensor, units: Tensor) -> Tensor:
    """``log W[u_i, j] + log Z_child[j]`` for each sample ``i``, shape ``(M, K_in)``."""
    parts = [values[id(child)] for child in layer.children]
    batch = max(p.shape[0] for p in parts)
    log_z = torch.cat([p.expand(batch, -1) for p in parts], dim=1)
    log_z = log_z[rows] if batch > 1 else log_z
    return torch.log(layer.weight.matrix().detach())[units] + log_z


def sum_tree(table: Table, leaf_size: int | None = None) -> SumTree:
    """The :class:`~circuitkg.sampling.tree.SumTree` of a non-negative table's columns, kept
    while the table's parameters are unchanged (leaves of :data:`LEAF_SIZE` values by default)."""
    leaf_size = LEAF_SIZE if leaf_size is None else leaf_size
    key = ("sum-tree", leaf_size, id(table), table.state_token())
    return cached(key, lambda: SumTree(table.log_rows, table.num_values, leaf_size, table.device))
