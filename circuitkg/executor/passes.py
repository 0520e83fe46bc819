"""Layer-by-layer passes over a circuit: forward evaluation and the adjoint of one variable.

**Forward** (:func:`forward`) evaluates every layer in topological order for a batch. Each variable is
either *observed* (an index tensor of shape ``(B,)``: input rows ``T[x_b]``) or *integrated*
(``None``: the input layer becomes ``Σ_x T[x]``, exact for smooth decomposable circuits), or
*skipped* (the target of an adjoint pass; layers over it are left out). Cost ``O(B · Σ_layers
K_out K_in)``; for CP that is ``O(BK)``.

A Kronecker product layer whose parents are all sum layers is *lazy*: it is never materialised, each
sum parent contracts its weight block, reshaped to ``(K_out, k_1, ..., k_d)``, with the factors
directly (TuckER's ``Σ W_abc s_a r_b o_c`` costs ``O(B K_e K_r K_e)`` instead of building the
``K_e² K_r`` vector per triple and then multiplying).

**Adjoint** (:func:`adjoint`). A smooth decomposable circuit is multilinear in the input units of any
one variable ``X``: ``φ(x, rest) = Σ_l q_l(rest) · T_l[x]`` over the input layers ``l`` over ``X``.
The coefficient vectors ``q_l = ∂φ/∂T_l[x]`` are the reverse-mode derivatives, computed top-down
over the layers whose scope contains ``X``. One forward pass without ``X`` plus this pass cost
``O(BK)`` for CP, after which all ``|X|`` values cost one ``(B x K)(K x |X|)`` product: the
all-entity conditional and PLL plans of the executor.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import torch
from torch import Tensor

from circuitkg.errors import StructureError
from circuitkg.executor.blocks import ViewRows
from circuitkg.ir.circuit import Circuit
from circuitkg.ir.layers import InputLayer, Layer, ProductLayer, SumLayer
from circuitkg.params.tables import MAX_RUNS
from circuitkg.params.weights import FixedWeight

#: per variable: ``None`` (sum it out), a long tensor ``(B,)`` of observed values, or a float tensor
#: ``(B, |X|)`` of non-negative weights (sum it out with those weights, e.g. a 0/1 schema mask)
Evidence = dict[str, "Tensor | None"]


def is_integrated(value: Tensor | None) -> bool:
    """True for ``None`` and for weight tensors: the variable is summed out."""
    return value is None or value.is_floating_point()


@dataclass
class Plan:
    """What the passes need to know about a circuit, computed once at compile time."""

    circuit: Circuit
    lazy: set[int] = field(default_factory=set)
    #: input layers over views (``table.as_view()`` names another base) that only Hadamard layers
    #: read: in linear space their value is the base's rows kept lazy
    #: (:class:`~circuitkg.executor.blocks.ViewRows`)
    view_rows: set[int] = field(default_factory=set)
    #: sum layers whose weight is a fixed row of ones (CP, DistMult, TuckER-free sums): plain sums
    unit_sums: set[int] = field(default_factory=set)

    def __post_init__(self) -> None:
        c = self.circuit
        for layer in c.layers:
            parents = c.parents(layer)
            if (
                isinstance(layer, ProductLayer)
                and layer.kind == "kronecker"
                and parents
                and all(isinstance(p, SumLayer) for p in parents)
            ):
                self.lazy.add(id(layer))
            if (
                isinstance(layer, SumLayer)
                and isinstance(layer.weight, FixedWeight)
                and layer.width == 1
                and bool((layer.weight.matrix() == 1).all())
            ):
                self.unit_sums.add(id(layer))
            if (
                isinstance(layer, InputLayer)
                and _is_view(layer.table)
                and parents
                and all(isinstance(p, ProductLayer) and p.kind == "hadamard" for p in parents)
            ):
                self.view_rows.add(id(layer))

    def is_lazy(self, layer: Layer) -> bool:
        return id(layer) in self.lazy


def _is_view(table) -> bool:
    """``table`` reads another table's columns in at most :data:`MAX_RUNS` contiguous runs."""
    base, _, runs = table.as_view()
    return base is not table and len(runs) <= MAX_RUNS


def _input_value(plan: Plan, semiring, layer: InputLayer, evidence: Evidence):
    table = layer.table
    log = semiring.name == "log"
    if layer.variable is None:
        index = torch.zeros(1, dtype=torch.long, device=table.device)
        return semiring.lift(table.log_rows(index) if log else table.rows(index))
    index = evidence[layer.variable]
    if index is None:
        return table.log_column_sum() if log else semiring.of_scaled(table.column_sum())
    if index.is_floating_point():
        if log:
            return table.log_weighted_sum(torch.log(index))
        return semiring.of_scaled(table.weighted_sum(index))
    if not log and id(layer) in plan.view_rows:
        base, _, runs = table.as_view()
        return ViewRows(semiring.lift(base.rows(index)), tuple(runs))
    return semiring.lift(table.log_rows(index) if log else table.rows(index))


def _kron_shape(weight: Tensor, block: slice, child: ProductLayer) -> Tensor:
    return weight[:, block].reshape((weight.shape[0], *[c.width for c in child.children]))


def forward(plan: Plan, semiring, evidence: Evidence, skip: str | None = None) -> dict[int, object]:
    """Values of all layers whose scope does not contain ``skip`` (lazy Kronecker layers: factor lists)."""
    values: dict[int, object] = {}
    for layer in plan.circuit.layers:
        if skip is not None and skip in layer.scope:
            continue
        if isinstance(layer, InputLayer):
            values[id(layer)] = _input_value(plan, semiring, layer, evidence)
        elif isinstance(layer, SumLayer):
            w = layer.weight.matrix()
            terms = []
            for child, block in zip(layer.children, layer.blocks(), strict=True):
                if plan.is_lazy(child):
                    factors = [values[id(c)] for c in child.children]
                    terms.append(semiring.contract(_kron_shape(w, block, child), None, factors))
                elif id(layer) in plan.unit_sums:
                    terms.append(semiring.unit_sum(values[id(child)]))
                else:
                    terms.append(semiring.linear(values[id(child)], w[:, block]))
            values[id(layer)] = semiring.add(terms)
        else:
            children = [values[id(c)] for c in layer.children]
            if layer.kind == "hadamard":
                values[id(layer)] = semiring.hadamard(children)
            elif plan.is_lazy(layer):
                values[id(layer)] = children
            else:
                values[id(layer)] = semiring.outer(children)
    return values


def adjoint(
    plan: Plan,
    semiring,
    values: dict[int, object],
    target: str,
    batch: int,
    dtype: torch.dtype,
    device: torch.device,
) -> list[tuple[InputLayer, object]]:
    """``(input layer over target, q_l)`` pairs: ``φ = Σ_l q_l · T_l[x_target]`` for each batch row."""
    pending: dict[int, list] = {id(plan.circuit.output): [semiring.ones(batch, dtype, device)]}

    def push(layer: Layer, value) -> None:
        pending.setdefault(id(layer), []).append(value)

    out = []
    for layer in reversed(plan.circuit.layers):
        if target not in layer.scope or plan.is_lazy(layer):
            continue
        parts = pending.pop(id(layer), None)
        if parts is None:
            continue
        adj = semiring.add(parts)
        if isinstance(layer, InputLayer):
            out.append((layer, adj))
        elif isinstance(layer, SumLayer):
            w = layer.weight.matrix()
            for child, block in zip(layer.children, layer.blocks(), strict=True):
                if plan.is_lazy(child):
                    pos = _position_of(child, target)
                    factors = [
                        None if i == pos else values[id(c)] for i, c in enumerate(child.children)
                    ]
                    push(
                        child.children[pos],
                        semiring.contract(_kron_shape(w, block, child), adj, factors),
                    )
                else:
                    push(child, semiring.contract(w[:, block], adj, [None]))
        else:
            pos = _position_of(layer, target)
            others = [values[id(c)] for i, c in enumerate(layer.children) if i != pos]
            if layer.kind == "hadamard":
                push(layer.children[pos], semiring.hadamard([adj, *others]))
            else:
                factors = [
                    None if i == pos else values[id(c)] for i, c in enumerate(layer.children)
                ]
                widths = [c.width for c in layer.children]
                push(layer.children[pos], semiring.outer_adjoint(adj, factors, widths))
    return out


def _position_of(layer: Layer, variable: str) -> int:
    hits = [i for i, c in enumerate(layer.children) if variable in c.scope]
    if len(hits) != 1:
        raise StructureError(
            f"product layer {layer.name!r} has {len(hits)} children over {variable!r}; "
            "the adjoint needs a decomposable circuit"
        )
    return hits[0]
