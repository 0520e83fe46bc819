"""The encoder protocol: a module that computes a whole input table ``(N, width)`` from a graph.

An encoder is bound to a graph by :class:`~circuitkg.params.EncodedTable`, which calls it once per
training step and once per no-grad parameter state; the executor only sees the table. Two regimes:

* **inference** (:meth:`GraphEncoder.encode`): the table of a graph from its node features;
* **training** (:meth:`GraphEncoder.train_step`): the table used by one training step, given the
  node states the table cached at the previous step (``None`` when there are none, or when the
  cache was reset). Layer-wise encoders (ReFactor) apply one layer to the cached states; stateless
  encoders ignore them and run :meth:`encode`.

:attr:`GraphEncoder.reset_every` is the cache schedule: the cached states are dropped every that many
training steps (``None``: never, the transductive ``L = ∞``).

Encoders whose layers are gradient steps of the decoder's own objective (ReFactor) read the decoder
through a :class:`DecoderObjective`, which the model supplies when it binds its tables; other encoders
ignore it. A new encoder subclasses :class:`GraphEncoder` in its own module and registers a factory
with :func:`register_encoder`; nothing else changes.
"""

from __future__ import annotations

from collections.abc import Callable, Hashable
from typing import Protocol

from torch import Tensor, nn

from circuitkg.encoders.features import NodeFeatures
from circuitkg.encoders.graph import Graph, GraphError

__all__ = ["ENCODERS", "DecoderObjective", "GraphEncoder", "make_encoder", "register_encoder"]


class DecoderObjective(Protocol):
    """What a decoder offers an encoder whose layers descend the decoder's objective."""

    #: the name of a closed form of the objective's gradient, or None (``"distmult-softmax"``:
    #: DistMult in score form with the object-side softmax objective, paper 000's Theorem 3.1)
    closed_form: str | None

    def relation_rows(self) -> Tensor:
        """The relation embeddings ``g(r)`` as an ``(m, width)`` tensor (closed forms only)."""
        ...

    def loss(self, states: Tensor, triples: Tensor) -> Tensor:
        """The decoder's objective, averaged over ``triples``, with the encoded table set to
        ``states`` (differentiable in ``states`` and in the decoder's parameters)."""
        ...

    def token(self) -> Hashable:
        """Changes whenever a decoder parameter the objective reads may have changed."""
        ...


class GraphEncoder(nn.Module):
    """Base class of encoders: ``encode(graph) -> (num_nodes, width)``."""

    width: int
    features: NodeFeatures
    #: drop the training node-state cache every this many steps (None: never)
    reset_every: int | None = 1

    def encode(self, graph: Graph, decoder: DecoderObjective | None = None) -> Tensor:
        raise NotImplementedError

    def train_step(
        self, graph: Graph, states: Tensor | None, decoder: DecoderObjective | None = None
    ) -> Tensor:
        """The table of one training step; stateless encoders run :meth:`encode`."""
        return self.encode(graph, decoder)

    @property
    def inductive(self) -> bool:
        """False when inference reads cached states, which a new graph does not have."""
        return self.reset_every is not None

    @property
    def supports_positive_init(self) -> bool:
        return self.features.supports_positive_init

    def init_positive_(self, mean: float, noise: float, shift: slice | None = None) -> None:
        """Move the features to a positive start (the squared forms' training start)."""
        self.features.init_positive_(mean, noise, shift)

    def on(self, graph: Graph, features: Tensor | None = None) -> GraphEncoder:
        """This encoder for another graph: the same module (shared parameters) when its features
        carry over, else a shallow copy with the graph's features."""
        new_features = self.features.on(graph, features)
        if new_features is self.features:
            return self
        clone = object.__new__(type(self))
        clone.__dict__ = self.__dict__.copy()
        clone._modules = dict(self._modules)
        clone._modules["features"] = new_features
        return clone


#: name -> factory ``(width, num_nodes, **options) -> GraphEncoder``
ENCODERS: dict[str, Callable[..., GraphEncoder]] = {}


def register_encoder(name: str):
    """Class or function decorator: make an encoder factory reachable by ``name``."""

    def decorate(factory):
        ENCODERS[name] = factory
        return factory

    return decorate


def make_encoder(name: str, width: int, num_nodes: int, **options) -> GraphEncoder:
    """The registered encoder ``name`` of output ``width`` for a graph of ``num_nodes`` nodes."""
    if name not in ENCODERS:
        raise GraphError(f"unknown encoder {name!r}; known encoders: {sorted(ENCODERS)}")
    try:
        return ENCODERS[name].build(width, num_nodes, **options)
    except TypeError as err:
        raise GraphError(f"encoder {name!r}: {err}") from None
