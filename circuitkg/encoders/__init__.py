"""Graph encoders: input tables computed from a graph (``circuitkg.encoders``).

* :class:`Graph`: typed edges over a node set, built from a knowledge graph split or a triple file;
* :mod:`~circuitkg.encoders.features`: what encoders start from (random, learned, given);
* :class:`GraphEncoder`: the protocol, and :func:`register_encoder` to add one by name;
* :class:`ReFactor` (paper 000): layers that are gradient steps of the decoder's objective;
* :class:`RelationalAttention` (paper 003, KBGAT form) and :class:`Mean` (Hamaguchi et al. 2017):
  entities embedded from their (relation, neighbour) pairs, for entities unseen in training;
* :class:`PyGEncoder`: any PyTorch Geometric conv stack as an encoder.

An encoder reaches the circuit through :class:`circuitkg.params.EncodedTable`; models take one with
``create(..., encoder="refactor")`` and move to a new graph with ``model.on(graph)``.
"""

from circuitkg.encoders.attention import RelationalAttention, scatter_softmax
from circuitkg.encoders.base import (
    ENCODERS,
    DecoderObjective,
    GraphEncoder,
    make_encoder,
    register_encoder,
)
from circuitkg.encoders.features import (
    GivenFeatures,
    LookupFeatures,
    NodeFeatures,
    RandomFeatures,
    make_features,
)
from circuitkg.encoders.graph import Graph, GraphError
from circuitkg.encoders.mean import Mean, NeighbourhoodEncoder, neighbourhood_pairs
from circuitkg.encoders.pyg import PyGEncoder
from circuitkg.encoders.refactor import ReFactor, distmult_softmax_messages

__all__ = [
    "ENCODERS",
    "DecoderObjective",
    "GivenFeatures",
    "Graph",
    "GraphEncoder",
    "GraphError",
    "LookupFeatures",
    "Mean",
    "NeighbourhoodEncoder",
    "NodeFeatures",
    "PyGEncoder",
    "RandomFeatures",
    "ReFactor",
    "RelationalAttention",
    "distmult_softmax_messages",
    "make_encoder",
    "make_features",
    "neighbourhood_pairs",
    "register_encoder",
    "scatter_softmax",
]
