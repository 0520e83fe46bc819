"""Symbolic operations on circuits; each returns a new circuit sharing the original parameters.

* ``multiply(c1, c2)``: a circuit computing ``c1(x) · c2(x)``. Needs smooth, decomposable, compatible
  circuits. Layers are paired recursively (the standard product algorithm): inputs give row-wise
  Kronecker tables, sums give Kronecker weights, products pair their children scope by scope. The
  result has ``K_1 K_2`` units per layer pair: it is for inspection and general circuits; the
  executor answers queries on squared models without building it (Gram matrices, see
  :mod:`circuitkg.executor.pairs`).
* ``conjugate(c)``: complex conjugation; circuitkg circuits are real (ComplEx is written with
  ``[Re; Im]`` tables), so this returns ``c``.
* ``square(c) = multiply(c, conjugate(c))``.
* ``integrate(c, variables)``: ``Σ_{variables} c``; the input layers over those variables become
  constants ``Σ_x T[x]`` (smoothness and decomposability make this exact).
* ``condition(c, evidence)``: ``c(·, X = x)`` for observed values; the input layers become the rows.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable

import torch

from circuitkg.errors import StructureError
from circuitkg.evidence import check_variables, validated
from circuitkg.ir.circuit import Circuit
from circuitkg.ir.layers import InputLayer, Layer, ProductLayer, SumLayer
from circuitkg.params.derived import KroneckerRowTable, RowTable, SummedTable
from circuitkg.params.weights import FixedWeight, KroneckerWeight


def conjugate(circuit: Circuit) -> Circuit:
    """Complex conjugate; circuitkg's circuits are real-valued, so this is the identity."""
    return circuit


def square(circuit: Circuit) -> Circuit:
    """``c(x)²`` as an explicit circuit (``multiply(c, conjugate(c))``)."""
    return multiply(circuit, conjugate(circuit))


def multiply(c1: Circuit, c2: Circuit) -> Circuit:
    """The product circuit ``c1(x) · c2(x)`` over the union of the variables."""
    for c in (c1, c2):
        c.require("smooth", "decomposable", operation="multiply")
    c1.require_compatible(c2, operation="multiply")
    for var in set(c1.domains) & set(c2.domains):
        if c1.domains[var] != c2.domains[var]:
            raise StructureError(
                f"multiply: variable {var!r} has {c1.domains[var]} values in one circuit and {c2.domains[var]} in the other"
            )
    memo: dict[tuple[int, int], Layer] = {}

    def pair(a: Layer, b: Layer) -> Layer:
        key = (id(a), id(b))
        if key not in memo:
            memo[key] = _pair(a, b, pair)
        return memo[key]

    variables = list(c1.variables) + [v for v in c2.variables if v not in c1.variables]
    return Circuit(pair(c1.output, c2.output), variables)


def _pair(a: Layer, b: Layer, pair: Callable[[Layer, Layer], Layer]) -> Layer:
    if isinstance(a, SumLayer) or isinstance(b, SumLayer):
        a_children = a.children if isinstance(a, SumLayer) else (a,)
        b_children = b.children if isinstance(b, SumLayer) else (b,)
        a_blocks = a.blocks() if isinstance(a, SumLayer) else [None]
        b_blocks = b.blocks() if isinstance(b, SumLayer) else [None]
        children, blocks = [], []
        for ca, sa in zip(a_children, a_blocks, strict=True):
            for cb, sb in zip(b_children, b_blocks, strict=True):
                children.append(pair(ca, cb))
                blocks.append((sa, sb))
        weight = KroneckerWeight(
            a.weight if isinstance(a, SumLayer) else a.width,
            b.weight if isinstance(b, SumLayer) else b.width,
            blocks,
        )
        return SumLayer(children, weight, name=f"{a.name}*{b.name}")
    if a.scope != b.scope:
        raise StructureError(
            f"multiply: layers {a.name!r} and {b.name!r} are paired but have different scopes"
        )
    if isinstance(a, InputLayer) and isinstance(b, InputLayer):
        return InputLayer(
            a.variable, KroneckerRowTable(a.table, b.table), name=f"{a.name}*{b.name}"
        )
    if isinstance(a, ProductLayer) and isinstance(b, ProductLayer):
        return _pair_products(a, b, pair)
    raise StructureError(
        f"multiply: cannot pair {type(a).__name__} {a.name!r} with {type(b).__name__} {b.name!r} "
        "over the same scope"
    )


def _pair_products(
    a: ProductLayer, b: ProductLayer, pair: Callable[[Layer, Layer], Layer]
) -> Layer:
    by_scope = {}
    for c in b.children:
        if not c.scope or c.scope in by_scope:
            raise StructureError(
                f"multiply: product layer {b.name!r} has children with empty or repeated scopes"
            )
        by_scope[c.scope] = c
    if any(not c.scope for c in a.children):
        raise StructureError(f"multiply: product layer {a.name!r} has a child with empty scope")
    matched = [(ca, by_scope[ca.scope]) for ca in a.children]
    children = [pair(ca, cb) for ca, cb in matched]
    name = f"{a.name}*{b.name}"
    if a.kind == "hadamard" and b.kind == "hadamard":
        return ProductLayer(children, "hadamard", name=name)
    # Units of the result are (unit of a, unit of b); the Kronecker product of the pairs has units
    # (a_1, b_1, a_2, b_2, ...). A fixed 0/1 sum layer selects and reorders them.
    kron = ProductLayer(children, "kronecker", name=name + "/kron")
    select = _selection_matrix(a, b, matched).to(_dtype_below(a))
    return SumLayer([kron], FixedWeight(select), name=name)


def _dtype_below(layer: Layer) -> torch.dtype:
    while not isinstance(layer, InputLayer):
        layer = layer.children[0]
    return layer.table.dtype


def _selection_matrix(
    a: ProductLayer, b: ProductLayer, matched: list[tuple[Layer, Layer]]
) -> torch.Tensor:
    """0/1 matrix mapping Kronecker units ``(a_1,b_1,a_2,b_2,...)`` to units ``(a, b)``."""
    pos_b = {id(cb): i for i, cb in enumerate(b.children)}
    a_units = _unit_indices(a)  # (K_a, d): per unit of a, the unit of each child (a's order)
    b_units = _unit_indices(b)  # (K_b, d_b) in b's child order
    widths = [ca.width * cb.width for ca, cb in matched]
    strides = [1] * len(widths)
    for i in range(len(widths) - 2, -1, -1):
        strides[i] = strides[i + 1] * widths[i + 1]
    cols = torch.zeros(a.width, b.width, dtype=torch.long)
    for i, (_, cb) in enumerate(matched):
        j = pos_b[id(cb)]
        unit = a_units[:, i].unsqueeze(1) * cb.width + b_units[:, j].unsqueeze(0)
        cols += unit * strides[i]
    rows = torch.arange(a.width * b.width)
    total = 1
    for w in widths:
        total *= w
    select = torch.zeros(a.width * b.width, total)
    select[rows, cols.reshape(-1)] = 1.0
    return select


def _unit_indices(layer: ProductLayer) -> torch.Tensor:
    """For each unit of a product layer, the unit it reads from each child."""
    d = len(layer.children)
    if layer.kind == "hadamard":
        return torch.arange(layer.width).unsqueeze(1).expand(layer.width, d)
    grids = torch.meshgrid(*[torch.arange(c.width) for c in layer.children], indexing="ij")
    return torch.stack([g.reshape(-1) for g in grids], dim=1)


def integrate(circuit: Circuit, variables: Iterable[str]) -> Circuit:
    """``Σ_{x_V} c(x)`` over ``variables``: a circuit over the remaining variables."""
    variables = set(variables)
    check_variables(sorted(variables), circuit.variables)
    circuit.require("smooth", "decomposable", operation="integrate")
    return _replace_inputs(
        circuit,
        lambda layer: (
            InputLayer(None, SummedTable(layer.table), name=f"∫{layer.name}")
            if layer.variable in variables
            else None
        ),
        [v for v in circuit.variables if v not in variables],
    )


def condition(circuit: Circuit, evidence: dict[str, int]) -> Circuit:
    """``c(x_rest, x_E = e)``: a circuit over the variables not in ``evidence`` (one id each,
    checked by :func:`circuitkg.evidence.validated`)."""
    ids, _ = validated(evidence, circuit.variables, circuit.domains, torch.device("cpu"), batch=1)
    evidence = {v: int(i) for v, i in ids.items() if i is not None}
    return _replace_inputs(
        circuit,
        lambda layer: (
            InputLayer(
                None, RowTable(layer.table, int(evidence[layer.variable])), name=f"{layer.name}|"
            )
            if layer.variable in evidence
            else None
        ),
        [v for v in circuit.variables if v not in evidence],
    )


def _replace_inputs(
    circuit: Circuit, replace: Callable[[InputLayer], Layer | None], variables: list[str]
) -> Circuit:
    new: dict[int, Layer] = {}
    for layer in circuit.layers:
        if isinstance(layer, InputLayer):
            new[id(layer)] = replace(layer) or layer
            continue
        children = [new[id(c)] for c in layer.children]
        if all(c is o for c, o in zip(children, layer.children, strict=True)):
            new[id(layer)] = layer
        elif isinstance(layer, SumLayer):
            new[id(layer)] = SumLayer(children, layer.weight, name=layer.name)
        else:
            new[id(layer)] = ProductLayer(children, layer.kind, name=layer.name)
    return Circuit(new[id(circuit.output)], variables)
