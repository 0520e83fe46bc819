"""Layers of the circuit IR: input, product (Hadamard, Kronecker) and sum layers.

A layer of width ``K`` computes ``K`` functions (units) of the variables in its *scope*:

* :class:`InputLayer` over variable ``X``: ``x -> T[x]`` for a table ``T`` (see
  :mod:`circuitkg.params.tables`); with ``variable=None`` it is a constant vector (scope ∅).
* :class:`ProductLayer`: ``hadamard`` multiplies children of equal width unit by unit;
  ``kronecker`` takes all products, width ``Π K_i``, unit ``(i_1, ..., i_d)`` in row-major order.
* :class:`SumLayer`: ``W [x_1; ...; x_d]``, a linear map of the concatenated children.

Layers are immutable after construction and are compared by identity; a circuit is the DAG below
its output layer (:class:`circuitkg.ir.Circuit`).
"""

from __future__ import annotations

import itertools
from collections.abc import Sequence

from circuitkg.errors import StructureError
from circuitkg.params.tables import Table
from circuitkg.params.weights import Weight

_ids = itertools.count()


class Layer:
    """A node of the circuit DAG with ``width`` units over ``scope``."""

    children: tuple[Layer, ...]
    width: int
    scope: frozenset[str]

    def __init__(self, children: Sequence[Layer], width: int, name: str | None) -> None:
        self.children = tuple(children)
        self.width = int(width)
        self.scope = (
            frozenset().union(*(c.scope for c in self.children)) if self.children else frozenset()
        )
        self.name = name or f"{type(self).__name__.replace('Layer', '').lower()}{next(_ids)}"

    def __repr__(self) -> str:
        scope = ",".join(sorted(self.scope))
        return f"{type(self).__name__}({self.name!r}, width={self.width}, scope={{{scope}}})"


class InputLayer(Layer):
    """``x -> table.rows(x)`` over one categorical variable (or a constant when ``variable`` is None)."""

    def __init__(self, variable: str | None, table: Table, name: str | None = None) -> None:
        super().__init__((), table.width, name)
        if variable is None and table.num_values != 1:
            raise StructureError(
                f"constant input layer {self.name!r} needs a table with one row, got {table.num_values}"
            )
        self.variable = variable
        self.table = table
        self.scope = frozenset() if variable is None else frozenset({variable})


class ProductLayer(Layer):
    """Hadamard (equal widths) or Kronecker (widths multiply) product of its children."""

    KINDS = ("hadamard", "kronecker")

    def __init__(self, children: Sequence[Layer], kind: str = "hadamard", name: str | None = None):
        children = tuple(children)
        if kind not in self.KINDS:
            raise ValueError(f"product kind must be one of {self.KINDS}, got {kind!r}")
        if len(children) < 2:
            raise StructureError(f"product layer {name or '?'} needs at least two children")
        if kind == "hadamard":
            widths = {c.width for c in children}
            if len(widths) != 1:
                raise StructureError(
                    f"Hadamard product layer {name or '?'} needs children of equal width, got "
                    + ", ".join(f"{c.name}:{c.width}" for c in children)
                )
            width = children[0].width
        else:
            width = 1
            for c in children:
                width *= c.width
        super().__init__(children, width, name)
        self.kind = kind


class SumLayer(Layer):
    """``W @ concat(children)`` with ``W`` of shape ``(width, Σ child widths)``."""

    def __init__(self, children: Sequence[Layer], weight: Weight, name: str | None = None) -> None:
        children = tuple(children)
        in_width = sum(c.width for c in children)
        super().__init__(children, weight.out_width, name)
        if weight.in_width != in_width:
            raise StructureError(
                f"sum layer {self.name!r}: weight has {weight.in_width} inputs but children give {in_width}"
            )
        self.weight = weight

    def blocks(self) -> list[slice]:
        """Column ranges of ``W`` that belong to each child."""
        out, start = [], 0
        for c in self.children:
            out.append(slice(start, start + c.width))
            start += c.width
        return out
