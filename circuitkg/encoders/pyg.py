"""Any PyTorch Geometric conv stack as an encoder.

``PyGEncoder(convs, features)`` runs ``x = conv(x, edge_index, edge_type)`` (relational convs such as
``RGCNConv``) or ``x = conv(x, edge_index)`` (``relational=False``: ``GCNConv``, ``GATConv``, ...)
for each conv in turn, with ``activation`` between layers, from the node features. The stack is an
ordinary ``nn.Module``: its parameters train with the decoder's. It is stateless (trained
end-to-end, no node-state cache) and inductive whenever its features are. Cost: that of the convs.
PyG itself is not imported here: any module with that call signature works.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

from torch import Tensor, nn

from circuitkg.encoders.base import DecoderObjective, GraphEncoder
from circuitkg.encoders.features import NodeFeatures
from circuitkg.encoders.graph import Graph


class PyGEncoder(GraphEncoder):
    """A conv stack over the graph; ``width`` is the last conv's output width."""

    reset_every = 1

    def __init__(
        self,
        convs: Sequence[nn.Module],
        features: NodeFeatures,
        width: int,
        relational: bool = True,
        activation: Callable[[Tensor], Tensor] | None = nn.functional.relu,
    ) -> None:
        super().__init__()
        self.convs = nn.ModuleList(convs)
        self.features = features
        self.width = int(width)
        self.relational = relational
        self.activation = activation

    def encode(self, graph: Graph, decoder: DecoderObjective | None = None) -> Tensor:
        x = self.features(graph)
        for i, conv in enumerate(self.convs):
            args = (graph.edge_index, graph.edge_type) if self.relational else (graph.edge_index,)
            x = conv(x, *args)
            if self.activation is not None and i < len(self.convs) - 1:
                x = self.activation(x)
        return x
