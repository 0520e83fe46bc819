"""The constraint circuit of a bound schema: ``c(s, r, o) ∈ {0, 1}`` over ``("s", "r", "o")``.

With the ``G`` signature groups of a :class:`~circuitkg.constraints.BoundSchema`,

    c(s, r, o) = Σ_g  R[r, g] · S[s, g] · O[o, g],   R[r, g] = [r ∈ R_g], S[s, g] = [s ∈ S_g], ...

three :class:`~circuitkg.params.IndicatorTable` inputs of width ``G``, Hadamard products and a sum
with weights one: smooth and decomposable, and *deterministic* because every relation is in exactly
one group (``R`` is one-hot), so at most one term is non-zero and ``c ∈ {0, 1}``. Since ``c² = c``,
``(φ · c)² = φ² · c``: ``multiply(model_circuit, c)`` compiled in squared form *is* the constrained
model, a route the tests use to cross-check :class:`~circuitkg.constraints.ConstrainedCircuit`.

The products follow the variable tree of a model circuit (``like=``) so that
``c.compatible_with(model)`` holds: CP-shaped models split ``{s, r, o}`` into ``{s}, {r}, {o}``;
RESCAL into ``{s, o}, {r}``, giving ``Hadamard(Hadamard(S, O), R)``. Build cost ``O((n + m) G)``.
"""

from __future__ import annotations

import itertools

import torch
from circuitkg.compilers.base import KG_VARIABLES
from circuitkg.constraints.binding import BoundSchema

from circuitkg.ir import Circuit, InputLayer, Layer, ProductLayer, SumLayer
from circuitkg.params import FixedWeight, IndicatorTable

__all__ = ["constraint_circuit", "determinism_violation", "is_deterministic"]


def constraint_circuit(
    bound: BoundSchema, like: Circuit | None = None, dtype: torch.dtype | None = None
) -> Circuit:
    """The deterministic constraint circuit of ``bound``, shaped like ``like`` (module docstring).

    ``dtype`` defaults to the dtype of ``like``'s first table (or torch's default).
    """
    if dtype is None:
        dtype = like.tables()[0].dtype if like is not None else torch.get_default_dtype()
    s, r, o = bound.group_masks()
    tables = {
        "s": IndicatorTable(s.T).to(dtype),
        "r": IndicatorTable(r.T).to(dtype),
        "o": IndicatorTable(o.T).to(dtype),
    }
    splits = _splits(like) if like is not None else {}

    def build(scope: frozenset[str]) -> Layer:
        if len(scope) == 1:
            (var,) = scope
            return InputLayer(var, tables[var], name=f"schema.{var.upper()}")
        parts = splits.get(scope) or [frozenset({v}) for v in sorted(scope)]
        name = "schema." + "".join(sorted(scope, key=KG_VARIABLES.index))
        return ProductLayer([build(p) for p in parts], "hadamard", name=name)

    product = build(frozenset(KG_VARIABLES))
    return Circuit(
        SumLayer([product], FixedWeight.ones(bound.num_groups).to(dtype), name="schema.sum"),
        KG_VARIABLES,
    )


def _splits(circuit: Circuit) -> dict[frozenset[str], list[frozenset[str]]]:
    """How each product layer's scope is split into child scopes (one split per scope)."""
    out: dict[frozenset[str], list[frozenset[str]]] = {}
    for layer in circuit.layers:
        if isinstance(layer, ProductLayer):
            out.setdefault(layer.scope, [c.scope for c in layer.children if c.scope])
    return out


def determinism_violation(circuit: Circuit) -> str | None:
    """Why a constraint circuit is not deterministic, or None when it is.

    Applies to circuits of the shape :func:`constraint_circuit` builds: a sum over one tree of
    Hadamard products of indicator inputs. Unit ``g`` is then the indicator of a box
    ``Π_v A_{g,v}``; the circuit is deterministic iff every two boxes are disjoint, i.e. their
    supports on some variable are. O(G² Σ_v |X_v|).
    """
    root = circuit.output
    if not (isinstance(root, SumLayer) and len(root.children) == 1):
        return f"the output layer {root.name!r} is not a sum over one product layer"
    supports: dict[str, torch.Tensor] = {}
    stack: list[Layer] = [root.children[0]]
    while stack:
        layer = stack.pop()
        if isinstance(layer, ProductLayer) and layer.kind == "hadamard":
            stack.extend(layer.children)
        elif isinstance(layer, InputLayer) and isinstance(layer.table, IndicatorTable):
            if layer.variable in supports:
                return f"variable {layer.variable!r} has two input layers"
            supports[layer.variable] = layer.table.values.T > 0  # (G, |X|)
        else:
            return f"layer {layer.name!r} is neither a Hadamard product nor an indicator input"
    width = root.children[0].width
    for g, h in itertools.combinations(range(width), 2):
        if all(bool((a[g] & a[h]).any()) for a in supports.values()):
            return f"units {g} and {h} of {root.children[0].name!r} are both 1 on some assignment"
    return None


def is_deterministic(circuit: Circuit) -> bool:
    """``determinism_violation(circuit) is None``."""
    return determinism_violation(circuit) is None
