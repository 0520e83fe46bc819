"""The circuit: a DAG of layers over named categorical variables, and its structural properties.

Properties are computed on the DAG (networkx), never assumed:

* **smooth**: the children of every sum layer have equal scopes;
* **decomposable**: the children of every product layer have pairwise disjoint scopes;
* **structured-decomposable**: decomposable, and all product layers with the same scope split it the
  same way (the same set of child scopes), so the circuit follows one variable tree;
* **compatible** with another circuit: product layers of the two with the same scope split it the same
  way (what ``multiply`` and squaring need);
* **monotone**: every table and every weight is non-negative by construction.

:meth:`Circuit.require` raises :class:`~circuitkg.errors.StructureError` naming the first offending
layer. Costs are linear in the number of edges.
"""

from __future__ import annotations

from collections.abc import Iterator

import networkx as nx
from torch import nn

from circuitkg.errors import StructureError
from circuitkg.ir.layers import InputLayer, Layer, ProductLayer, SumLayer
from circuitkg.params.tables import Table
from circuitkg.params.weights import Weight

PROPERTIES = ("smooth", "decomposable", "structured-decomposable", "monotone")


class Circuit:
    """The DAG below ``output`` (a layer of width 1) over categorical variables.

    ``variables`` fixes the order of variables (the columns of a full assignment); by default they
    are sorted by name. Domain sizes come from the input tables, which must agree per variable.
    """

    def __init__(
        self, output: Layer, variables: list[str] | None = None, folds: str | None = None
    ) -> None:
        self.output = output
        #: the name under which closed forms of this circuit are registered, which the executor may
        #: use in place of layer-by-layer passes (:mod:`circuitkg.executor.folds`: its squared sums,
        #: its coefficients in one variable); a circuit derived from this one (a product, a
        #: replaced input) does not inherit it
        self.folds = folds
        self.graph = nx.DiGraph()
        stack, seen = [output], set()
        while stack:
            layer = stack.pop()
            if id(layer) in seen:
                continue
            seen.add(id(layer))
            self.graph.add_node(layer)
            for child in layer.children:
                self.graph.add_edge(child, layer)
                stack.append(child)
        self.layers: list[Layer] = list(nx.topological_sort(self.graph))
        self.domains: dict[str, int] = {}
        for layer in self.input_layers():
            if layer.variable is None:
                continue
            size = self.domains.setdefault(layer.variable, layer.table.num_values)
            if size != layer.table.num_values:
                raise StructureError(
                    f"input layer {layer.name!r} gives variable {layer.variable!r} "
                    f"{layer.table.num_values} values, another input layer gives {size}"
                )
        if variables is None:
            variables = sorted(self.domains)
        missing = set(self.domains) - set(variables)
        if missing:
            raise StructureError(
                f"variables {sorted(missing)} occur in the circuit but not in `variables`"
            )
        self.variables = list(variables)
        for v in self.variables:
            self.domains.setdefault(v, 1)

    # --- traversal ---------------------------------------------------------------------------
    def input_layers(self) -> Iterator[InputLayer]:
        return (layer for layer in self.layers if isinstance(layer, InputLayer))

    def parents(self, layer: Layer) -> list[Layer]:
        return list(self.graph.successors(layer))

    def tables(self) -> list[Table]:
        """Distinct tables, in a deterministic order."""
        return _unique(layer.table for layer in self.input_layers())

    def weights(self) -> list[Weight]:
        return _unique(layer.weight for layer in self.layers if isinstance(layer, SumLayer))

    def modules(self) -> nn.ModuleList:
        return nn.ModuleList(self.tables() + self.weights())

    @property
    def scope(self) -> frozenset[str]:
        return self.output.scope

    # --- structural properties ------------------------------------------------------------------
    def violation(self, prop: str) -> str | None:
        """Why the circuit lacks ``prop`` (naming a layer), or None when it has it."""
        if prop == "smooth":
            for layer in self.layers:
                if isinstance(layer, SumLayer) and len({c.scope for c in layer.children}) > 1:
                    return (
                        f"sum layer {layer.name!r} has children with different scopes "
                        + _scopes(layer)
                    )
        elif prop == "decomposable":
            for layer in self.layers:
                if isinstance(layer, ProductLayer):
                    total = sum(len(c.scope) for c in layer.children)
                    if total != len(layer.scope):
                        return (
                            f"product layer {layer.name!r} has children with overlapping scopes "
                            + _scopes(layer)
                        )
        elif prop == "structured-decomposable":
            reason = self.violation("decomposable")
            if reason:
                return reason
            return _partition_conflict(self, self)
        elif prop == "monotone":
            for layer in self.layers:
                if isinstance(layer, InputLayer) and not layer.table.nonnegative:
                    return f"input layer {layer.name!r} has a table that may be negative ({type(layer.table).__name__})"
                if isinstance(layer, SumLayer) and not layer.weight.nonnegative:
                    return f"sum layer {layer.name!r} has a weight that may be negative ({type(layer.weight).__name__})"
        else:
            raise ValueError(f"unknown property {prop!r}; known: {PROPERTIES}")
        return None

    def has(self, prop: str) -> bool:
        return self.violation(prop) is None

    def require(self, *props: str, operation: str = "this operation") -> None:
        """Raise :class:`StructureError` naming the layer if any of ``props`` is missing."""
        for prop in props:
            reason = self.violation(prop)
            if reason:
                raise StructureError(f"{operation} needs a {prop} circuit, but {reason}")

    def compatible_with(self, other: Circuit) -> bool:
        return _partition_conflict(self, other) is None

    def require_compatible(self, other: Circuit, operation: str = "multiply") -> None:
        reason = _partition_conflict(self, other)
        if reason:
            raise StructureError(f"{operation} needs compatible circuits, but {reason}")

    def __repr__(self) -> str:
        doms = ", ".join(f"{v}:{self.domains[v]}" for v in self.variables)
        return (
            f"Circuit(variables=[{doms}], layers={len(self.layers)}, output={self.output.name!r})"
        )


def _unique(items) -> list:
    out, seen = [], set()
    for item in items:
        if id(item) not in seen:
            seen.add(id(item))
            out.append(item)
    return out


def _scopes(layer: Layer) -> str:
    return (
        "(" + "; ".join(f"{c.name}: {{{','.join(sorted(c.scope))}}}" for c in layer.children) + ")"
    )


def _partition(layer: ProductLayer) -> frozenset[frozenset[str]]:
    return frozenset(c.scope for c in layer.children if c.scope)


def _partition_conflict(a: Circuit, b: Circuit) -> str | None:
    """First pair of same-scope product layers of ``a`` and ``b`` that split the scope differently."""
    seen: dict[frozenset[str], ProductLayer] = {}
    for layer in a.layers:
        if isinstance(layer, ProductLayer):
            seen.setdefault(layer.scope, layer)
    for layer in b.layers:
        if not isinstance(layer, ProductLayer) or layer.scope not in seen:
            continue
        first = seen[layer.scope]
        if _partition(first) != _partition(layer):
            return (
                f"product layers {first.name!r} {_scopes(first)} and {layer.name!r} {_scopes(layer)} "
                "split the same scope differently"
            )
    return None
