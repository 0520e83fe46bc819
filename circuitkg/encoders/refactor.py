"""ReFactor GNN (Chen et al., NeurIPS 2022; paper 000): message passing that *is* gradient descent.

**The layer** (Theorem 3.1, eq. 8-12). For DistMult, ``φ(s, r, o) = <h[s], g(r), h[o]>``, and the
object-side softmax objective ``L(h) = 1/|T| Σ_{(s,r,o) ∈ T} -log P(o | s, r)`` with
``P(w | s, r) = softmax_w φ(s, r, w)`` over all nodes (the self-candidate ``w = s`` included), one
gradient step on the node states is ``h - η ∇L(h) = h + α z - β n`` with

* ``z[v] = Σ_{(v,r,w) ∈ T} g(r) ⊙ h[w] + Σ_{(s,r,v) ∈ T} (1 - P(v | s, r)) g(r) ⊙ h[s]`` (messages
  over outgoing and incoming edges, summed; eq. 8-9);
* ``n[v] = 1/|T| [Σ_{(v,r,o) ∈ T} E_{u ~ P(·|v,r)} g(r) ⊙ h[u] + Σ_{(s,r,o) ∈ T, o ≠ v} P(v | s, r)
  g(r) ⊙ h[s]]`` (the global term, eq. 11: ``n`` carries its own ``1/|T|``);
* ``α = η / |T|`` and ``β = η``. The paper's text is garbled around the step sizes; this is the
  reading under which one layer is exactly one gradient step, and it is tested against autograd.

Code: with ``q_t = h[s_t] ⊙ g(r_t)`` and ``P`` the ``(|T| x N)`` softmax,
``|T| ∇L = scatter_s(g ⊙ (P h - h[o])) + Pᵀ q - scatter_o(q)``, i.e. two ``index_add_`` scatters and
three dense products, added in place into one ``N x K`` buffer; ``O(|T| N K)`` time, chunked over
triples to :attr:`ReFactor.memory_budget` numbers of ``P`` at a time. ``global_term=False`` drops ``n`` (the paper's ablation, Table 2):
``h + α z``.

**Other decoders** (beyond the paper). A layer is one gradient step of the decoder's own objective
with respect to the node states: the object-side softmax NLL in score form, PLL for the squared
form, computed exactly with ``torch.autograd`` (``create_graph`` while training, so the relation
embeddings get their second-order gradient). The DistMult closed form and the autograd form agree
(a test). ``gradient="auto"`` takes the closed form where the decoder has one.

**The softmax objective under any form** (``objective="softmax"``). The layers may descend the
DistMult softmax objective above even when the decoder is squared or monotone (its relation table is
the same ``g``): the encoder is then paper 000's, the output distribution the decoder's, and the
layer has the closed form (fast); ``objective="decoder"`` (default) descends the decoder's own
objective.

**Edge dropout** (beyond the paper). The decoder is trained on the graph's own triples, which the
layer also passes messages over, so a triple's score can read its own edge. ``edge_dropout = p``
drops a random share ``p`` of the edges from each *training* step's layer (a seeded generator;
inference uses the whole graph), the DropEdge remedy GNN link predictors use for this leakage.

**Feature redraw** (beyond the paper). With random features the training graph's nodes keep one
fixed draw, which the decoder can learn to rely on; a new graph gets another draw.
``redraw_features=True`` draws fresh features (a seeded sequence) at every cache reset of training,
so each ``L``-step cycle starts from new noise; inference keeps the encoder's own seed.

**Steps per layer.** By default each optimiser step applies one layer (depth ``t mod L + 1``).
Paper 000 computes one layer per *full pass* over the triples and clears the cache "every L full
batches"; ``steps_per_layer = k`` keeps each depth for ``k`` optimiser steps (each recomputing the
layer from the same cached input with the current relation embeddings), so ``k`` = batches per
epoch is the paper's schedule.

**Stochastic layer** (section 3, "we adopt a stochastic evaluation"). With ``subgraph_batch = b``
the triples are split into batches of ``b`` (a fixed seeded permutation); each batch's softmax runs
over the nodes of the subgraph it induces only, and the contributions are summed, normalised by
``|T|``: one gradient step of the subgraph-restricted objective. ``None`` is the exact full batch.

**Training** (eq. 13): the relation embeddings are the learned parameters, all layers share them, and
training is layer-wise. Each step applies one layer to the node states cached at the previous step;
the cache is reset to the features every ``L`` steps, so the decoder sees depths ``1..L`` (the step
``t`` with ``t mod L = 0`` starts from the features: our reading of eq. 13, under which training
depths match the ``L``-layer inference). ``layers=None`` is ``L = ∞``: the cache is never reset and
inference reads it (transductive). Otherwise inference runs ``L`` layers from the features.

**N3 on the node states** (``layer_n3 = λ``; beyond the equations, as the official demo
``refactorgnn_demo_sgd.py`` adds it). The layer descends ``L(h) + λ N3(h)`` with ``N3(h) = 1/|T|
Σ_{(s,r,o) ∈ T} (‖h[s]‖₃³ + ‖h[o]‖₃³)``, the trainer's N3 on the triples' entity rows, whose
gradient adds ``3 λ deg(v) h[v] ⊙ |h[v]| / |T|`` to ``∇L`` (``deg``: edges at ``v``, both
directions). Without it only the relation embeddings are regularised; with ``L = ∞`` the node
states are the entity table, so this is the lookup table's N3.

**Step size and preconditioner.** ``preconditioner="none"`` is the plain gradient step above, with
``η = N`` (the number of nodes) unless ``step_size`` is given, i.e. ``α = N/|T|``, one over the mean
out-degree. Its messages add up coherently at hubs: on fb237_v1 with a positive start each layer
multiplied the states' norm by about 10. ``preconditioner="degree"`` (the default) takes the step in
the metric ``D = diag(1 + deg(v)) / |T|``, ``h - η D⁻¹ ∇L(h)``, i.e. per node ``α_v = η / (1 +
deg(v))`` and ``β_v = |T| α_v`` (``deg``: edges at ``v``, both directions), ``η = 1`` unless given:
still one (preconditioned) gradient step, tested against autograd like the plain one, and a
degree-normalised mean of messages like a GCN's, which keeps the states' scale and transfers to a
new graph.

**The official code** (yihong-chen/ReFactorGNN) has two bugs that this module does not reproduce:
``msg[idx] += ...`` drops repeated indices (a node with several edges keeps one message; here
``index_add_`` sums them all), and its AdaGrad variant adds the global term twice.
"""

from __future__ import annotations

import torch
from torch import Tensor

from circuitkg.encoders.base import DecoderObjective, GraphEncoder, register_encoder
from circuitkg.encoders.features import NodeFeatures, RandomFeatures, make_features
from circuitkg.encoders.graph import Graph, GraphError

__all__ = ["ReFactor", "distmult_softmax_messages"]

CLOSED_FORM = "distmult-softmax"
GRADIENTS = ("auto", "closed", "autograd")
OBJECTIVES = ("decoder", "softmax")
PRECONDITIONERS = ("degree", "none")


def distmult_softmax_messages(
    h: Tensor,
    g: Tensor,
    triples: Tensor,
    candidates: Tensor | None = None,
    budget: int = 1 << 24,
    global_term: bool = True,
    out: Tensor | None = None,
) -> Tensor:
    """``z - |T| n`` of the module docstring for ``triples`` (``z`` alone without the global term),
    i.e. ``-|T| ∇L(h)``, with the softmax over ``candidates`` (all nodes when None; node ids
    otherwise, which must include every object of ``triples``).

    In the gradient form, ``z - |T| n = scatter_s(g ⊙ (h[o] - P h_c)) + scatter_o(q) - Pᵀ q`` (the
    ``(1 - P)`` of the incoming messages and the ``o ≠ v`` of ``n`` cancel). Everything is added in
    place into ``out`` (``N x K``, created when None), so chunks and subgraph batches cost one
    ``N x K`` buffer in all, and autograd keeps only the chunks' ``P`` for the backward pass.
    """
    s, r, o = triples.unbind(1)
    hc = h if candidates is None else h[candidates]
    local_o = o if candidates is None else _positions(candidates, o, h.shape[0])
    out = torch.zeros_like(h) if out is None else out
    step = max(1, budget // hc.shape[0])
    for start in range(0, len(triples), step):
        part = slice(start, start + step)
        gr, hs = g[r[part]], h[s[part]]
        q = hs * gr
        p = torch.softmax(q @ hc.T, dim=1)
        if not global_term:
            p_answer = p.gather(1, local_o[part].unsqueeze(1))
            out.index_add_(0, s[part], gr * h[o[part]])
            out.index_add_(0, o[part], (1 - p_answer) * q)
            continue
        out.index_add_(0, s[part], gr * (h[o[part]] - p @ hc))
        out.index_add_(0, o[part], q)
        spread = p.T @ q
        if candidates is None:
            out.sub_(spread)
        else:
            out.index_add_(0, candidates, spread, alpha=-1)
    return out


def _degree(graph: Graph, like: Tensor) -> Tensor:
    """Edges at each node, both directions (a self-loop twice), in ``like``'s dtype."""
    ends = graph.edges[:, [0, 2]].reshape(-1)
    return torch.bincount(ends, minlength=graph.num_nodes).to(like.dtype)


def _positions(candidates: Tensor, ids: Tensor, num_nodes: int) -> Tensor:
    where = torch.full((num_nodes,), -1, dtype=torch.long, device=ids.device)
    where[candidates] = torch.arange(len(candidates), device=ids.device)
    out = where[ids]
    if bool((out < 0).any()):
        raise GraphError("every object of a subgraph batch must be among its candidates")
    return out


@register_encoder("refactor")
class ReFactor(GraphEncoder):
    """``L`` weight-shared ReFactor layers over node ``features`` (see the module docstring)."""

    def __init__(
        self,
        features: NodeFeatures,
        layers: int | None = 6,
        step_size: float | None = None,
        global_term: bool = True,
        gradient: str = "auto",
        subgraph_batch: int | None = None,
        memory_budget: int = 1 << 24,
        seed: int = 0,
        objective: str = "decoder",
        preconditioner: str = "degree",
        edge_dropout: float = 0.0,
        redraw_features: bool = False,
        steps_per_layer: int = 1,
        layer_n3: float = 0.0,
    ) -> None:
        super().__init__()
        if layers is not None and layers < 1:
            raise GraphError(f"ReFactor needs layers >= 1 or None (L = ∞), got {layers}")
        if gradient not in GRADIENTS:
            raise GraphError(f"unknown gradient {gradient!r}; choose one of {GRADIENTS}")
        if objective not in OBJECTIVES:
            raise GraphError(f"unknown objective {objective!r}; choose one of {OBJECTIVES}")
        if preconditioner not in PRECONDITIONERS:
            raise GraphError(
                f"unknown preconditioner {preconditioner!r}; choose one of {PRECONDITIONERS}"
            )
        if not 0.0 <= edge_dropout < 1.0:
            raise GraphError(f"edge_dropout must lie in [0, 1), got {edge_dropout}")
        if subgraph_batch is not None and subgraph_batch < 1:
            raise GraphError(f"subgraph_batch must be positive, got {subgraph_batch}")
        self.features = features
        self.width = features.width
        self.layers = layers
        self.reset_every = layers
        self.step_size = step_size
        self.global_term = bool(global_term)
        self.gradient = gradient
        self.subgraph_batch = subgraph_batch
        self.memory_budget = int(memory_budget)
        self.seed = int(seed)
        self.objective = objective
        self.preconditioner = preconditioner
        self.edge_dropout = float(edge_dropout)
        self._dropout_generator = torch.Generator().manual_seed(self.seed)
        if redraw_features and not isinstance(features, RandomFeatures):
            raise GraphError("redraw_features needs random features")
        self.redraw_features = bool(redraw_features)
        if steps_per_layer < 1:
            raise GraphError(f"steps_per_layer must be positive, got {steps_per_layer}")
        self.steps_per_layer = int(steps_per_layer)
        if layer_n3 < 0:
            raise GraphError(f"layer_n3 must be non-negative, got {layer_n3}")
        self.layer_n3 = float(layer_n3)
        self._draws = 0

    @classmethod
    def build(
        cls, width: int, num_nodes: int, features: str | Tensor = "random", feature_seed: int = 0,
        feature_std: float = 1.0, **options,
    ) -> ReFactor:  # fmt: skip
        """The registry's factory: ``features`` is ``random``, ``lookup`` or a matrix."""
        return cls(make_features(features, num_nodes, width, feature_seed, feature_std), **options)

    # --- the regimes -------------------------------------------------------------------------------
    def encode(self, graph: Graph, decoder: DecoderObjective | None = None) -> Tensor:
        if self.layers is None:
            raise GraphError(
                "ReFactor with L = ∞ is transductive: inference reads the node-state cache, "
                "which only training fills (a new graph has none)"
            )
        h = self.features(graph)
        for _ in range(self.layers):
            h = self.layer(graph, h, decoder)
        return h

    def train_step(
        self, graph: Graph, states: Tensor | None, decoder: DecoderObjective | None = None
    ) -> Tensor:
        if states is not None:
            h = states
        elif self.redraw_features:  # a fresh draw at every cache reset (training only)
            self._draws += 1
            h = self.features.draw(graph, seed=self.features.seed + 7919 * self._draws)
        else:
            h = self.features(graph)
        return self.layer(self._dropped(graph), h, decoder)

    def _dropped(self, graph: Graph) -> Graph:
        """``graph`` without a random ``edge_dropout`` share of its edges (training steps only)."""
        if self.edge_dropout == 0.0:
            return graph
        keep = torch.rand(graph.num_edges, generator=self._dropout_generator) >= self.edge_dropout
        if not bool(keep.any()):
            return graph
        edges = graph.edges[keep.to(graph.device)]
        return Graph(
            edges, graph.num_nodes, graph.num_relations, graph.node_names, graph.relation_names
        )

    # --- one layer ---------------------------------------------------------------------------------
    def layer(self, graph: Graph, h: Tensor, decoder: DecoderObjective | None) -> Tensor:
        """``h - η ∇_h L(h)`` (closed form or autograd, per :attr:`gradient`)."""
        if decoder is None:
            raise GraphError("a ReFactor layer descends its decoder's objective; bind a decoder")
        closed = self._closed(decoder)
        if not self.global_term and not closed:
            raise GraphError(
                "global_term=False (dropping n[v]) is defined for the DistMult closed form only"
            )
        rate = self.rates(graph, h)  # η D⁻¹ / |T|: the step on |T| ∇L, a scalar or one per node
        batches = self._batches(graph)
        if closed:
            g = decoder.relation_rows()
            if g.shape[-1] != h.shape[-1]:
                raise GraphError(
                    f"the softmax layer needs relation embeddings of the node width {h.shape[-1]} "
                    f"(a DistMult decoder); this decoder's are {g.shape[-1]} wide"
                )
            total = torch.zeros_like(h)
            for triples, candidates in batches:
                distmult_softmax_messages(
                    h, g, triples, candidates, self.memory_budget, self.global_term, out=total
                )
        else:
            total = -graph.num_edges * self._autograd_gradient(h, batches, decoder)
        if self.layer_n3:
            total = total - 3 * self.layer_n3 * _degree(graph, h).unsqueeze(1) * h * h.abs()
        return h + rate * total

    def rates(self, graph: Graph, like: Tensor) -> Tensor | float:
        """``η / |T|`` (plain step) or ``η / (1 + deg(v))`` as an ``(N, 1)`` column (degree)."""
        if self.preconditioner == "none":
            eta = float(graph.num_nodes if self.step_size is None else self.step_size)
            return eta / graph.num_edges
        eta = 1.0 if self.step_size is None else float(self.step_size)
        return (eta / (1 + _degree(graph, like))).unsqueeze(1)

    def _closed(self, decoder: DecoderObjective) -> bool:
        has = decoder.closed_form == CLOSED_FORM or self.objective == "softmax"
        if self.gradient == "autograd":
            if self.objective == "softmax":
                raise GraphError("objective='softmax' is computed in closed form only")
            return False
        if self.gradient == "closed" and not has:
            raise GraphError(
                f"gradient='closed' needs a decoder with the {CLOSED_FORM} closed form "
                f"(DistMult in score form); this decoder has {decoder.closed_form}"
            )
        return has

    def _batches(self, graph: Graph) -> list[tuple[Tensor, Tensor | None]]:
        edges = graph.edges
        if self.subgraph_batch is None or self.subgraph_batch >= len(edges):
            return [(edges, None)]
        generator = torch.Generator().manual_seed(self.seed)
        order = torch.randperm(len(edges), generator=generator).to(edges.device)
        out = []
        for index in torch.split(order, self.subgraph_batch):
            triples = edges[index]
            out.append((triples, torch.unique(triples[:, [0, 2]])))
        return out

    def _autograd_gradient(
        self,
        h: Tensor,
        batches: list[tuple[Tensor, Tensor | None]],
        decoder: DecoderObjective,
    ) -> Tensor:
        """``∇_h`` of the (subgraph-restricted) objective, differentiable while training."""
        if any(candidates is not None for _, candidates in batches):
            raise GraphError("subgraph batches are defined for the DistMult closed form only")
        outer = torch.is_grad_enabled()
        with torch.enable_grad():
            leaf = h if outer and h.requires_grad else h.detach().requires_grad_(True)
            loss = decoder.loss(leaf, batches[0][0])
            (grad,) = torch.autograd.grad(loss, leaf, create_graph=outer)
        return grad
