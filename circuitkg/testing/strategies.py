"""Hypothesis strategies for random circuits, KGE models, parameter scales and tiny typed KGs.

* :func:`circuits`: random smooth, structured-decomposable circuits over 2-4 categorical variables
  with domains of at most 6 values. A random variable tree fixes how each scope splits; every scope
  gets one or two layers (sums of Hadamard or Kronecker products, inputs with several tables), so
  DAG sharing, mixed product kinds and cross-pairs in squaring all occur. ``monotone=True`` draws
  non-negative tables and weights, otherwise signs are free.
* :func:`kge_models`: any registered model in any form it has, on a tiny KG.
* :func:`parameter_scales`: magnitudes from ``1e-4`` to ``1e2`` to stress the numerics.
* :func:`tiny_kgs`: random triple sets with entity types, for tests that need data.
* :func:`tiny_inductive_splits`: a tiny training graph and a disjoint tiny inference graph over the
  same relations, for tests of encoders on unseen graphs.

Parameter values come from a ``torch.Generator`` seeded by hypothesis, so failures replay exactly.
"""

from __future__ import annotations

import math

import torch
from hypothesis import strategies as st

from circuitkg.compilers import MODELS, create_model
from circuitkg.data import InductiveSplit, KnowledgeGraph
from circuitkg.encoders import Graph
from circuitkg.ir import Circuit, InputLayer, Layer, ProductLayer, SumLayer
from circuitkg.params import FixedWeight, FreeTable, FreeWeight, PositiveTable, PositiveWeight

VARIABLE_NAMES = ("a", "b", "c", "d")


def parameter_scales() -> st.SearchStrategy[float]:
    """Typical magnitude of parameters: ``10^k`` for ``k ∈ [-4, 2]``."""
    return st.sampled_from([1e-4, 1e-3, 1e-2, 1e-1, 1.0, 10.0, 100.0])


class _Builder:
    def __init__(
        self,
        draw,
        domains: dict[str, int],
        monotone: bool,
        generator: torch.Generator,
        dtype: torch.dtype,
    ) -> None:
        self.draw, self.domains, self.monotone = draw, domains, monotone
        self.gen, self.dtype = generator, dtype
        self.splits: dict[frozenset[str], list[frozenset[str]]] = {}
        self.cache: dict[tuple[frozenset[str], int], Layer] = {}

    def values(self, *shape: int):
        x = torch.randn(*shape, generator=self.gen, dtype=self.dtype)
        return x.abs() + 0.05 if self.monotone else x

    def table(self, var: str, width: int):
        t = (
            PositiveTable(self.domains[var], width)
            if self.monotone
            else FreeTable(self.domains[var], width)
        )
        t = t.to(self.dtype)
        with torch.no_grad():
            if self.monotone:
                t.log_weight.copy_(torch.log(self.values(self.domains[var], width)))
            else:
                t.weight.copy_(self.values(self.domains[var], width))
        return t

    def weight(self, out_width: int, in_width: int):
        kind = self.draw(st.sampled_from(["free", "fixed"]))
        if kind == "fixed":
            return FixedWeight(self.values(out_width, in_width)).to(self.dtype)
        w = (PositiveWeight if self.monotone else FreeWeight)(out_width, in_width).to(self.dtype)
        with torch.no_grad():
            target = w.log_weight if self.monotone else w.weight
            target.copy_(
                torch.log(self.values(out_width, in_width))
                if self.monotone
                else self.values(out_width, in_width)
            )
        return w

    def split(self, scope: frozenset[str]) -> list[frozenset[str]]:
        if scope not in self.splits:
            ordered = sorted(scope)
            order = self.draw(st.permutations(ordered))
            parts = self.draw(st.integers(2, len(ordered)))
            cuts = sorted(
                self.draw(
                    st.sets(
                        st.integers(1, len(ordered) - 1), min_size=parts - 1, max_size=parts - 1
                    )
                )
            )
            bounds = [0, *cuts, len(ordered)]
            self.splits[scope] = [
                frozenset(order[bounds[i] : bounds[i + 1]]) for i in range(len(bounds) - 1)
            ]
        return self.splits[scope]

    def layer(self, scope: frozenset[str], width: int) -> Layer:
        key = (scope, width)
        if key in self.cache and self.draw(st.booleans()):
            return self.cache[key]  # share a sub-circuit: the result is a DAG
        if len(scope) == 1:
            (var,) = scope
            n_inputs = self.draw(st.integers(1, 2))
            inputs = [
                InputLayer(var, self.table(var, self.draw(st.integers(1, 3))))
                for _ in range(n_inputs)
            ]
            if n_inputs == 1 and inputs[0].width == width and self.draw(st.booleans()):
                out: Layer = inputs[0]
            else:
                out = SumLayer(inputs, self.weight(width, sum(i.width for i in inputs)))
        else:
            parts = self.split(scope)
            products = []
            for _ in range(self.draw(st.integers(1, 2))):
                if self.draw(st.booleans()):
                    k = self.draw(st.integers(1, 3))
                    products.append(ProductLayer([self.layer(p, k) for p in parts], "hadamard"))
                else:
                    widths = [self.draw(st.integers(1, 2)) for _ in parts]
                    products.append(
                        ProductLayer(
                            [self.layer(p, w) for p, w in zip(parts, widths, strict=True)],
                            "kronecker",
                        )
                    )
            out = SumLayer(products, self.weight(width, sum(p.width for p in products)))
        self.cache[key] = out
        return out


@st.composite
def circuits(
    draw,
    monotone: bool | None = None,
    min_variables: int = 2,
    max_variables: int = 4,
    max_domain: int = 6,
    dtype: torch.dtype = torch.float64,
    scale: float | None = None,
) -> Circuit:
    """A random smooth, structured-decomposable circuit (see the module docstring)."""
    if monotone is None:
        monotone = draw(st.booleans())
    n_vars = draw(st.integers(min_variables, max_variables))
    variables = list(VARIABLE_NAMES[:n_vars])
    domains = {v: draw(st.integers(1, max_domain)) for v in variables}
    seed = draw(st.integers(0, 2**31 - 1))
    gen = torch.Generator().manual_seed(seed)
    builder = _Builder(draw, domains, monotone, gen, dtype)
    circuit = Circuit(builder.layer(frozenset(variables), 1), variables)
    if scale is not None:
        rescale(circuit, scale)
    return circuit


def rescale(circuit: Circuit, scale: float) -> None:
    """Multiply every parameter of every table by ``scale`` in place, once each (a log-parameter
    shifts by ``log scale``): entries of free tables and their column views scale by ``scale``."""
    with torch.no_grad():
        parameters = {
            id(p): (name, p) for table in circuit.tables() for name, p in table.named_parameters()
        }
        for name, p in parameters.values():
            if name.rsplit(".", 1)[-1].startswith("log"):
                p.add_(math.log(scale))
            else:
                p.mul_(scale)


def model_forms() -> list[tuple[str, str]]:
    """Every registered (model, form) pair."""
    return [(name, form) for name, cls in MODELS.items() for form in cls.forms]


@st.composite
def kge_models(
    draw,
    names: list[str] | None = None,
    forms: list[str] | None = None,
    max_entities: int = 5,
    max_relations: int = 3,
    max_rank: int = 3,
    dtype: torch.dtype = torch.float64,
):
    """A registered KGE model in one of its forms, on a tiny KG, with seeded parameters."""
    pairs = [
        (n, f)
        for n, f in model_forms()
        if (names is None or n in names) and (forms is None or f in forms)
    ]
    name, form = draw(st.sampled_from(pairs))
    n = draw(st.integers(1, max_entities))
    m = draw(st.integers(1, max_relations))
    rank = draw(st.integers(1, max_rank))
    seed = draw(st.integers(0, 2**31 - 1))
    torch.manual_seed(seed)
    init_std = None if form == "monotone" else draw(st.sampled_from([None, 0.5, 1.0]))
    model = create_model(name, n, m, rank, form=form, init_std=init_std)
    if form == "monotone":
        with torch.no_grad():
            for p in model.parameters():
                p.add_(torch.randn(p.shape) * 0.5)  # move away from the near-uniform initialisation
    return model.to(dtype)


@st.composite
def tiny_kgs(
    draw, max_entities: int = 6, max_relations: int = 3, max_types: int = 3, max_triples: int = 12
):
    """``(num_entities, num_relations, triples (N, 3), entity_types list[set[int]])``."""
    n = draw(st.integers(2, max_entities))
    m = draw(st.integers(1, max_relations))
    n_types = draw(st.integers(1, max_types))
    types = [
        draw(st.sets(st.integers(0, n_types - 1), min_size=1, max_size=n_types)) for _ in range(n)
    ]
    triples = draw(
        st.lists(
            st.tuples(st.integers(0, n - 1), st.integers(0, m - 1), st.integers(0, n - 1)),
            min_size=1,
            max_size=max_triples,
            unique=True,
        )
    )
    return n, m, torch.tensor(triples, dtype=torch.long), types


def _tiny_graph(draw, name: str, prefix: str, n: int, relations: list[str]) -> KnowledgeGraph:
    """A graph of ``n`` entities named ``<prefix><i>``: distinct triples, each in a random split,
    at least one in ``test``; entities in no train triple are isolated nodes."""
    triples = draw(
        st.lists(
            st.tuples(
                st.integers(0, n - 1), st.integers(0, len(relations) - 1), st.integers(0, n - 1)
            ),
            min_size=1,
            max_size=3 * n,
            unique=True,
        )
    )
    if draw(st.booleans()):  # a self-loop, and a relation used twice from one entity
        h = draw(st.integers(0, n - 1))
        r = draw(st.integers(0, len(relations) - 1))
        triples = list(dict.fromkeys([*triples, (h, r, h), (h, r, draw(st.integers(0, n - 1)))]))
    labels = draw(
        st.lists(
            st.sampled_from(["train", "train", "valid", "test"]),
            min_size=len(triples),
            max_size=len(triples),
        )
    )
    labels[0] = "test"
    names = [f"{prefix}{i}" for i in range(n)]
    return KnowledgeGraph.from_vocabularies(
        name,
        names,
        relations,
        {
            split: torch.tensor(
                [t for t, label in zip(triples, labels, strict=True) if label == split],
                dtype=torch.long,
            ).reshape(-1, 3)
            for split in ("train", "valid", "test")
        },
    )


@st.composite
def tiny_graphs(
    draw, max_nodes: int = 6, max_relations: int = 3, max_edges: int = 12, max_isolated: int = 2
) -> Graph:
    """A tiny :class:`~circuitkg.encoders.Graph` for encoder tests: 1 to ``max_edges`` edges
    among 2 to ``max_nodes`` nodes (self-loops, parallel edges and repeated (head, relation) pairs
    occur), plus up to ``max_isolated`` nodes without edges."""
    n = draw(st.integers(2, max_nodes))
    m = draw(st.integers(1, max_relations))
    edges = draw(
        st.lists(
            st.tuples(st.integers(0, n - 1), st.integers(0, m - 1), st.integers(0, n - 1)),
            min_size=1,
            max_size=max_edges,
        )
    )
    isolated = draw(st.integers(0, max_isolated))
    return Graph.from_triples(torch.tensor(edges), n + isolated, m)


@st.composite
def tiny_inductive_splits(draw, max_entities: int = 5, max_relations: int = 3) -> InductiveSplit:
    """An :class:`~circuitkg.data.InductiveSplit`: a tiny training graph (entities ``e0, e1,
    ...``) and a disjoint tiny inference graph (``u0, u1, ...``) over the same relations
    (``r0, r1, ...``), each with 1 to ``max_entities`` entities and at least one test triple.
    Isolated nodes, self-loops and one relation used several times from one entity all occur, so
    an encoder's brute-force tests on unseen graphs meet them."""
    m = draw(st.integers(1, max_relations))
    relations = [f"r{i}" for i in range(m)]
    train = _tiny_graph(draw, "tiny", "e", draw(st.integers(1, max_entities)), relations)
    inference = _tiny_graph(draw, "tiny_ind", "u", draw(st.integers(1, max_entities)), relations)
    return InductiveSplit(name="tiny", train=train, inference=inference, dropped={})
