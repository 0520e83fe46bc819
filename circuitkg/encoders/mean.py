"""Neighbourhood aggregators for unseen entities: the shared machinery, and MEAN (Hamaguchi et al. 2017).

An entity is embedded from its (relation, neighbour) pairs, not from a row of its own, so an entity
absent from training (an *out-of-knowledge-base*, OOKB, entity) gets an embedding from the edges
that connect it at test time (``model.on(graph_with_aux)``).

**Pairs.** Both directions count: an edge ``(v, r, u)`` gives ``v`` the pair ``(r, u)`` and ``u``
the pair ``(r⁻¹, v)``. Relation embeddings come from the *decoder's* relation table ``g``
(``DecoderObjective.relation_rows()``), so encoder and decoder agree on what a relation is; the
inverse direction has its own learned embedding ``g(r⁻¹) = M g(r)`` with one learned
``relation_width x relation_width`` map ``M``, initialised to ``-I`` (a translation's inverse).
The encoder needs no relation count of its own, and the registry's factory
``build(width, num_nodes, ...)`` suffices. ``relation_width`` (default: the entity width) must be
the decoder's relation width (TransE, DistMult, ComplEx: the default; CP, RESCAL: pass it).

**Pair feature.** ``c = W_c [x_u ; g(ρ)]``, a learned linear map of the neighbour's feature and the
relation's embedding (``ρ`` is ``r`` or ``r⁻¹``). ``W_c`` starts at ``[I, -I]`` plus noise, i.e.
``c = x_u - g(ρ)``: the TransE reading of ``v + r ≈ u``, so the encoder starts as an averaged
translation and learns away from it.

**Nodes.** A node with at least one pair is its aggregated pair features (no self term: its own
feature row does not enter its value, so in training the encoder must learn to embed entities
from their neighbourhoods, which is what it does for unseen ones). A node without pairs keeps its
own feature row.

**Features.** ``features="lookup"`` (the default) learns one row per *training* node. On a larger
graph whose first ``N`` nodes are the training nodes (the layout of
:func:`circuitkg.data.load_ookb`: seen entities first), the extra nodes get a zero feature row:
an unseen entity's output depends only on its own pairs, i.e. its aux edges, the features of its
neighbours (learned rows of seen entities; zero for unseen neighbours) and the relation
embeddings. ``features="random"`` (fixed seeded rows, defined for any node count) also works.

Cost per encoder call (once per training step): ``O(N d K + m d_r K)`` for the projections and
``O(E K)`` for gathering and scattering the ``2E`` pair features (``E`` edges, ``K`` the width).
"""

from __future__ import annotations

import torch
from torch import Tensor, nn

from circuitkg.encoders.base import DecoderObjective, GraphEncoder, register_encoder
from circuitkg.encoders.features import LookupFeatures, NodeFeatures, make_features
from circuitkg.encoders.graph import Graph, GraphError

__all__ = ["Mean", "NeighbourhoodEncoder", "neighbourhood_pairs"]

ACTIVATIONS = {
    "none": lambda x: x,
    "tanh": torch.tanh,
    "relu": torch.relu,
    "elu": nn.functional.elu,
}


def neighbourhood_pairs(graph: Graph) -> tuple[Tensor, Tensor, Tensor]:
    """``(centre, neighbour, relation)`` of the ``2E`` pairs: out-edges ``(v, r, u)`` give
    ``(v, u, r)``, in-edges give ``(u, v, r + m)`` (``m + r`` is ``r⁻¹``)."""
    head, relation, tail = graph.edges.unbind(1)
    centre = torch.cat([head, tail])
    neighbour = torch.cat([tail, head])
    rel = torch.cat([relation, relation + graph.num_relations])
    return centre, neighbour, rel


class NeighbourhoodEncoder(GraphEncoder):
    """Base of encoders that embed a node from its (relation, neighbour) pairs (module docstring).

    Subclasses implement :meth:`aggregate` ``(x, pairs, values, centre_index) -> (N, width)`` for
    the nodes with pairs."""

    reset_every = 1  # stateless: every step encodes from the features

    def __init__(
        self,
        features: NodeFeatures,
        value_width: int,
        relation_width: int | None = None,
        activation: str = "none",
        init_noise: float = 0.1,
    ) -> None:
        super().__init__()
        if activation not in ACTIVATIONS:
            raise GraphError(
                f"unknown activation {activation!r}; choose one of {sorted(ACTIVATIONS)}"
            )
        self.features = features
        self.width = int(features.width)
        self.relation_width = int(relation_width if relation_width is not None else self.width)
        self.activation = activation
        self.init_noise = float(init_noise)
        d, dr = self.width, self.relation_width
        self.inverse = nn.Parameter(-torch.eye(dr))
        self.pair = nn.Parameter(self._pair_init(value_width, d, dr))

    def _pair_init(self, rows: int, d: int, dr: int) -> Tensor:
        """``[I, -I]`` (one block per ``d`` rows: per head when the heads are averaged) plus
        ``init_noise / sqrt(d + dr)`` noise."""
        block = min(rows, d)
        repeats = -(-rows // block)
        eye = torch.cat([torch.eye(block, d), -torch.eye(block, dr)], dim=1).repeat(repeats, 1)
        noise = torch.randn(rows, d + dr) * self.init_noise / (d + dr) ** 0.5
        return eye[:rows] + noise

    # --- features on a (possibly larger) graph ---------------------------------------------------
    def node_features(self, graph: Graph) -> Tensor:
        """The feature rows of ``graph``'s nodes; lookup rows extend by zero rows (docstring)."""
        if isinstance(self.features, LookupFeatures):
            weight = self.features.weight
            rows = weight.shape[0]
            if graph.num_nodes < rows:
                raise GraphError(
                    f"lookup features hold {rows} nodes; a graph of {graph.num_nodes} nodes is not "
                    "an extension of the training graph"
                )
            extra = weight.new_zeros(graph.num_nodes - rows, weight.shape[1])
            return torch.cat([weight, extra]) if len(extra) else weight
        return self.features(graph)

    def on(self, graph: Graph, features: Tensor | None = None) -> GraphEncoder:
        if isinstance(self.features, LookupFeatures) and features is None:
            if graph.num_nodes < self.features.weight.shape[0]:
                self.node_features(graph)  # raises the error
            return self  # the same module: new nodes are zero rows of the learned table
        return super().on(graph, features)

    # --- the table -------------------------------------------------------------------------------
    def relation_rows(self, graph: Graph, decoder: DecoderObjective | None) -> Tensor:
        """``(2m, relation_width)``: the decoder's ``g(r)``, then ``g(r⁻¹) = M g(r)``."""
        if decoder is None:
            raise GraphError(
                f"{type(self).__name__} reads the decoder's relation table; bind a decoder "
                "(create the model with encoder=...)"
            )
        g = decoder.relation_rows()
        if g.shape != (graph.num_relations, self.relation_width):
            raise GraphError(
                f"the decoder's relation table is {tuple(g.shape)}; the encoder expects "
                f"({graph.num_relations}, {self.relation_width}): pass relation_width="
                f"{g.shape[-1]} to the encoder"
            )
        return torch.cat([g, g @ self.inverse.T])

    def pair_values(self, x: Tensor, g2: Tensor, neighbour: Tensor, relation: Tensor) -> Tensor:
        """``W_c [x_u ; g(ρ)]`` per pair, computed as ``(x W_x)[u] + (g W_g)[ρ]``: ``(2E, rows)``."""
        d = self.width
        return (x @ self.pair[:, :d].T)[neighbour] + (g2 @ self.pair[:, d:].T)[relation]

    def encode(self, graph: Graph, decoder: DecoderObjective | None = None) -> Tensor:
        x = self.node_features(graph)
        g2 = self.relation_rows(graph, decoder).to(x.dtype)
        centre, neighbour, relation = neighbourhood_pairs(graph)
        values = self.pair_values(x, g2, neighbour, relation)
        out = ACTIVATIONS[self.activation](self.aggregate(x, centre, values, graph.num_nodes))
        has_pairs = torch.zeros(graph.num_nodes, dtype=torch.bool, device=x.device)
        has_pairs[centre] = True
        return torch.where(has_pairs.unsqueeze(1), out, x)

    def aggregate(self, x: Tensor, centre: Tensor, values: Tensor, num_nodes: int) -> Tensor:
        raise NotImplementedError


def scatter_mean(values: Tensor, index: Tensor, num_nodes: int) -> Tensor:
    """``out[v] = mean of values[index == v]`` (zero where there are none)."""
    total = values.new_zeros(num_nodes, *values.shape[1:]).index_add_(0, index, values)
    count = torch.zeros(num_nodes, dtype=values.dtype, device=values.device)
    count.index_add_(0, index, torch.ones_like(index, dtype=values.dtype))
    return total / count.clamp_min(1).reshape(-1, *([1] * (values.dim() - 1)))


@register_encoder("mean")
class Mean(NeighbourhoodEncoder):
    """MEAN (Hamaguchi et al., IJCAI 2017): the average of the pair features ``W_c [x_u ; g(ρ)]``.

    Hamaguchi et al. transform each neighbour with a relation-specific map (with batch norm and a
    ReLU) before pooling; here the pair feature is the same linear map of ``[x_u ; g(ρ)]`` that the
    attention encoder (:class:`~circuitkg.encoders.attention.RelationalAttention`) uses, so the
    two differ only in the neighbourhood weights (uniform here, learned there).
    """

    def __init__(self, features: NodeFeatures, **options) -> None:
        super().__init__(features, features.width, **options)

    @classmethod
    def build(
        cls, width: int, num_nodes: int, features: str | Tensor = "lookup", feature_seed: int = 0,
        feature_std: float | None = None, **options,
    ) -> Mean:  # fmt: skip
        """The registry's factory: ``features`` is ``lookup`` (default), ``random`` or a matrix."""
        std = width**-0.5 if feature_std is None else feature_std
        return cls(make_features(features, num_nodes, width, feature_seed, std), **options)

    def aggregate(self, x: Tensor, centre: Tensor, values: Tensor, num_nodes: int) -> Tensor:
        return scatter_mean(values, centre, num_nodes)
