"""Brute-force reference computations: a naive interpreter of the IR and full enumeration.

Nothing here shares code with the executor: layers are evaluated one assignment batch at a time with
plain tensor operations (``torch.kron``-style outer products, explicit matrix products), so agreement
between the two is evidence, not tautology. Cost is exponential in the number of variables; meant
for domains of a few thousand assignments.
"""

from __future__ import annotations

import itertools

import torch
from torch import Tensor

from circuitkg.executor import CompiledCircuit
from circuitkg.ir import Circuit, InputLayer, ProductLayer, SumLayer


def all_assignments(circuit: Circuit, variables: list[str] | None = None) -> Tensor:
    """Every joint value of ``variables`` (default: all), shape ``(Π |X|, len(variables))``."""
    variables = circuit.variables if variables is None else variables
    ranges = [range(circuit.domains[v]) for v in variables]
    return torch.tensor(list(itertools.product(*ranges)), dtype=torch.long).reshape(
        -1, len(variables)
    )


def evaluate_naive(circuit: Circuit, x: Tensor) -> Tensor:
    """``φ(x)`` for assignments ``x`` of shape ``(B, V)``, layer by layer, no scaling, no fusion."""
    column = {v: i for i, v in enumerate(circuit.variables)}
    values: dict[int, Tensor] = {}
    batch = x.shape[0]
    for layer in circuit.layers:
        if isinstance(layer, InputLayer):
            if layer.variable is None:
                idx = torch.zeros(batch, dtype=torch.long)
            else:
                idx = x[:, column[layer.variable]]
            values[id(layer)] = layer.table.rows(idx.to(layer.table.device))
        elif isinstance(layer, SumLayer):
            stacked = torch.cat([values[id(c)] for c in layer.children], dim=1)
            values[id(layer)] = stacked @ layer.weight.matrix().T
        elif isinstance(layer, ProductLayer):
            children = [values[id(c)] for c in layer.children]
            out = children[0]
            for child in children[1:]:
                if layer.kind == "hadamard":
                    out = out * child
                else:
                    out = torch.stack([torch.kron(a, b) for a, b in zip(out, child, strict=True)])
            values[id(layer)] = out
    return values[id(circuit.output)][:, 0]


def joint_distribution(compiled: CompiledCircuit) -> Tensor:
    """``p(x)`` for every assignment (in :func:`all_assignments` order), by enumeration."""
    x = all_assignments(compiled.circuit)
    phi = evaluate_naive(compiled.circuit, x)
    mass = phi * phi if compiled.form == "squared" else phi
    return mass / mass.sum()


def joint_table(compiled: CompiledCircuit) -> Tensor:
    """The joint distribution reshaped to one axis per variable (``variables`` order)."""
    shape = [compiled.domains[v] for v in compiled.variables]
    return joint_distribution(compiled).reshape(shape)
