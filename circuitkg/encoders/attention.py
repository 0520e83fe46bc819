"""Relational multi-head graph attention (paper 003, NAKGR), in the KBGAT form (Nathani et al. 2019).

Our text of paper 003 lost its equations; this is the standard relational graph-attention layer
it describes, as written by Nathani et al. (ACL 2019, *Learning attention-based embeddings for
relation prediction in knowledge graphs*), one layer, over the (relation, neighbour) pairs of each
node (:mod:`circuitkg.encoders.mean` for the pairs, inverse relations, features and unseen nodes).
For a node ``v`` with pairs ``j = (ρ, u)`` and head ``k = 1..K``:

* pair feature ``c_j^k = W_c^k [x_u ; g(ρ)]`` (a learned linear map of the neighbour's feature and
  the relation's embedding; ``g(r⁻¹) = M g(r)`` for incoming edges);
* score ``b_j^k = LeakyReLU(a^k · [W_q^k x_v ; c_j^k])`` (negative slope 0.2), a feed-forward
  attention function of the centre and the pair;
* ``α_j^k = softmax_j b_j^k`` over the neighbourhood of ``v`` (a stable scatter softmax:
  ``scatter_reduce("amax")``, ``exp``, ``index_add_``);
* ``h_v^k = Σ_j α_j^k c_j^k``; heads concatenated (``combine="concat"``: each head ``width / K``
  wide) or averaged (``"mean"``: each head ``width`` wide); then ``activation`` (default none).

A node without pairs keeps its own feature row; a node with pairs has no self term (its own row only
enters through the query ``W_q x_v``, which is a zero row for a node unseen in training with lookup
features, so an unseen entity's row depends only on its aux edges and seen embeddings).

Cost: ``O(N d K + m d_r K)`` for the projections, ``O(E K)`` for the pair features, scores, softmax
and aggregation (``E`` edges, ``K`` the width): the pair feature ``W_c [x_u ; g(ρ)]`` is computed as
``(x W_x)[u] + (g W_g)[ρ]``, never as a ``(2E, d + d_r)`` concatenation.
"""

from __future__ import annotations

import torch
from torch import Tensor, nn

from circuitkg.encoders.base import register_encoder
from circuitkg.encoders.features import NodeFeatures, make_features
from circuitkg.encoders.graph import Graph, GraphError
from circuitkg.encoders.mean import NeighbourhoodEncoder, neighbourhood_pairs

__all__ = ["RelationalAttention", "scatter_softmax"]

COMBINE = ("concat", "mean")


def scatter_softmax(scores: Tensor, index: Tensor, num_nodes: int) -> Tensor:
    """Softmax of ``scores`` (``(P, ...)``) within each group ``index`` (``(P,)``), stably."""
    shape = (num_nodes, *scores.shape[1:])
    expanded = index.reshape(-1, *([1] * (scores.dim() - 1))).expand_as(scores)
    peak = scores.new_full(shape, float("-inf")).scatter_reduce(
        0, expanded, scores, reduce="amax", include_self=True
    )
    weights = torch.exp(scores - peak.detach()[index])
    total = scores.new_zeros(shape).index_add_(0, index, weights)
    return weights / total[index]


@register_encoder("attention")
class RelationalAttention(NeighbourhoodEncoder):
    """One KBGAT-form relational attention layer with ``heads`` heads (module docstring)."""

    def __init__(
        self,
        features: NodeFeatures,
        heads: int = 1,
        combine: str = "concat",
        negative_slope: float = 0.2,
        **options,
    ) -> None:
        width = features.width
        if heads < 1:
            raise GraphError(f"the attention encoder needs heads >= 1, got {heads}")
        if combine not in COMBINE:
            raise GraphError(f"unknown combine {combine!r}; choose one of {COMBINE}")
        if combine == "concat" and width % heads:
            raise GraphError(
                f"{heads} concatenated heads do not divide the width {width}; "
                "choose another head count or combine='mean'"
            )
        head_width = width // heads if combine == "concat" else width
        super().__init__(features, heads * head_width, **options)
        self.heads, self.combine, self.head_width = int(heads), combine, head_width
        self.negative_slope = float(negative_slope)
        d = self.width
        self.query = nn.Parameter(torch.randn(heads * head_width, d) / d**0.5)
        self.attend = nn.Parameter(torch.randn(heads, 2 * head_width) / (2 * head_width) ** 0.5)

    @classmethod
    def build(
        cls, width: int, num_nodes: int, features: str | Tensor = "lookup", feature_seed: int = 0,
        feature_std: float | None = None, **options,
    ) -> RelationalAttention:  # fmt: skip
        """The registry's factory: ``features`` is ``lookup`` (default), ``random`` or a matrix."""
        std = width**-0.5 if feature_std is None else feature_std
        return cls(make_features(features, num_nodes, width, feature_seed, std), **options)

    def scores(self, x: Tensor, centre: Tensor, values: Tensor) -> Tensor:
        """``LeakyReLU(a^k · [W_q^k x_v ; c_j^k])``: ``(2E, heads)``."""
        k, w = self.heads, self.head_width
        a_query, a_pair = self.attend[:, :w], self.attend[:, w:]
        query = (x @ self.query.T).reshape(-1, k, w)
        node_term = (query * a_query).sum(-1)  # (N, heads), gathered per pair below
        pair_term = (values.reshape(-1, k, w) * a_pair).sum(-1)
        return nn.functional.leaky_relu(node_term[centre] + pair_term, self.negative_slope)

    def attention(self, graph: Graph, decoder=None) -> tuple[Tensor, Tensor]:
        """``(α, centre)``: the attention weights ``(2E, heads)`` of the pairs of
        :func:`~circuitkg.encoders.mean.neighbourhood_pairs` and their centre nodes."""
        x = self.node_features(graph)
        g2 = self.relation_rows(graph, decoder).to(x.dtype)
        centre, neighbour, relation = neighbourhood_pairs(graph)
        values = self.pair_values(x, g2, neighbour, relation)
        return scatter_softmax(self.scores(x, centre, values), centre, graph.num_nodes), centre

    def aggregate(self, x: Tensor, centre: Tensor, values: Tensor, num_nodes: int) -> Tensor:
        k, w = self.heads, self.head_width
        alpha = scatter_softmax(self.scores(x, centre, values), centre, num_nodes)
        weighted = values.reshape(-1, k, w) * alpha.unsqueeze(-1)
        out = values.new_zeros(num_nodes, k, w).index_add_(0, centre, weighted)
        return out.reshape(num_nodes, k * w) if self.combine == "concat" else out.mean(1)
