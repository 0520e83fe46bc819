"""Node features ``X`` (``N x K``): the state an encoder starts from.

=====================  ==========================================  ===================  ==========
features               ``X``                                       on a new graph       parameters
=====================  ==========================================  ===================  ==========
:class:`RandomFeatures`  ``μ + σ ε``, ``ε ~ N(0, 1)`` from a fixed     drawn afresh for its  none
                       seed (the paper's inductive setting)          ``N'`` nodes
:class:`LookupFeatures`  a learned ``N x K`` table (transductive)    an error              ``N K``
:class:`GivenFeatures`   a matrix the user supplies                   needs the new matrix  none
=====================  ==========================================  ===================  ==========

``μ`` and ``σ`` of random features are per-column buffers, so :meth:`init_positive_` can move them
to a positive start (what squared models train from) and checkpoints keep them. Drawing costs
``O(N K)`` once per graph and dtype; the draw is cached.
"""

from __future__ import annotations

import torch
from torch import Tensor, nn

from circuitkg.encoders.graph import Graph, GraphError


class NodeFeatures(nn.Module):
    """Base class: ``forward(graph) -> (N, width)``; :meth:`on` binds to another graph."""

    width: int
    supports_positive_init: bool = False

    def forward(self, graph: Graph) -> Tensor:
        raise NotImplementedError

    def on(self, graph: Graph, features: Tensor | None = None) -> NodeFeatures:
        """Features for ``graph`` (another node set); ``features`` for user-supplied ones."""
        raise NotImplementedError

    def init_positive_(self, mean: float, noise: float, shift: slice | None = None) -> None:
        raise GraphError(
            f"{type(self).__name__} has no positive initialisation; use random or lookup features"
        )


class RandomFeatures(NodeFeatures):
    """``X = μ + σ ε`` with ``ε`` drawn from ``torch.Generator().manual_seed(seed)``: fixed, not
    learned, and defined for any number of nodes."""

    supports_positive_init = True

    def __init__(self, width: int, seed: int = 0, std: float = 1.0) -> None:
        super().__init__()
        self.width, self.seed = int(width), int(seed)
        self.register_buffer("mean", torch.zeros(width))
        self.register_buffer("std", torch.full((width,), float(std)))
        self._draws: dict[tuple[int, torch.dtype], Tensor] = {}

    def noise(self, num_nodes: int) -> Tensor:
        key = (num_nodes, self.mean.dtype)
        if key not in self._draws:
            generator = torch.Generator().manual_seed(self.seed)
            eps = torch.randn(num_nodes, self.width, generator=generator, dtype=torch.float64)
            self._draws = {key: eps.to(self.mean.dtype)}
        return self._draws[key].to(self.mean.device)

    def forward(self, graph: Graph) -> Tensor:
        return self.mean + self.std * self.noise(graph.num_nodes)

    def draw(self, graph: Graph, seed: int) -> Tensor:
        """``μ + σ ε`` with a fresh ``ε`` from ``seed`` (not cached): a training-time redraw, so
        the decoder cannot rely on the particular noise of the training nodes."""
        generator = torch.Generator().manual_seed(int(seed))
        eps = torch.randn(graph.num_nodes, self.width, generator=generator, dtype=torch.float64)
        return self.mean + self.std * eps.to(device=self.mean.device, dtype=self.mean.dtype)

    def on(self, graph: Graph, features: Tensor | None = None) -> RandomFeatures:
        if features is not None:
            raise GraphError("random features are drawn for the new graph; pass no feature matrix")
        return self

    def init_positive_(self, mean: float, noise: float, shift: slice | None = None) -> None:
        with torch.no_grad():
            self.mean.zero_()
            self.mean[shift if shift is not None else slice(None)] = mean
            self.std.fill_(mean * noise)


class LookupFeatures(NodeFeatures):
    """A learned ``N x K`` feature table: transductive, since a new graph has no rows in it."""

    supports_positive_init = True

    def __init__(self, num_nodes: int, width: int, std: float = 1.0) -> None:
        super().__init__()
        self.width = int(width)
        self.weight = nn.Parameter(torch.randn(num_nodes, width) * std)

    def forward(self, graph: Graph) -> Tensor:
        if graph.num_nodes != self.weight.shape[0]:
            raise GraphError(
                f"lookup features hold {self.weight.shape[0]} nodes, the graph has {graph.num_nodes}"
            )
        return self.weight

    def on(self, graph: Graph, features: Tensor | None = None) -> NodeFeatures:
        raise GraphError(
            "lookup features are transductive: a new graph's nodes have no learned rows "
            "(train with features='random' or supply a feature matrix for inductive use)"
        )

    def init_positive_(self, mean: float, noise: float, shift: slice | None = None) -> None:
        with torch.no_grad():
            self.weight.copy_(mean * noise * torch.randn_like(self.weight))
            self.weight[:, shift if shift is not None else slice(None)] += mean


class GivenFeatures(NodeFeatures):
    """A fixed feature matrix supplied by the user (e.g. text encodings), one row per node."""

    def __init__(self, features: Tensor) -> None:
        super().__init__()
        features = torch.as_tensor(features, dtype=torch.get_default_dtype())
        if features.dim() != 2:
            raise GraphError(f"a feature matrix must be 2-D, got shape {tuple(features.shape)}")
        self.width = features.shape[1]
        self.register_buffer("values", features.clone())

    def forward(self, graph: Graph) -> Tensor:
        if graph.num_nodes != self.values.shape[0]:
            raise GraphError(
                f"the feature matrix has {self.values.shape[0]} rows, the graph {graph.num_nodes} nodes"
            )
        return self.values

    def on(self, graph: Graph, features: Tensor | None = None) -> GivenFeatures:
        if features is None:
            raise GraphError("given features: pass the new graph's feature matrix")
        out = GivenFeatures(features).to(self.values.device)
        if out.width != self.width:
            raise GraphError(f"the new features have width {out.width}, the model {self.width}")
        return out


FEATURE_KINDS = ("random", "lookup", "given")


def make_features(
    kind: str | Tensor, num_nodes: int, width: int, seed: int = 0, std: float = 1.0
) -> NodeFeatures:
    """``kind`` is ``"random"``, ``"lookup"`` or a feature matrix."""
    if isinstance(kind, Tensor):
        return GivenFeatures(kind)
    if kind == "random":
        return RandomFeatures(width, seed=seed, std=std)
    if kind == "lookup":
        return LookupFeatures(num_nodes, width, std=std)
    if kind == "given":
        return GivenFeatures(torch.zeros(num_nodes, width))
    raise GraphError(f"unknown features {kind!r}; choose one of {FEATURE_KINDS} or pass a matrix")
