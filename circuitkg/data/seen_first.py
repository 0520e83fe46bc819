"""Splits whose test entities are unseen in training, in seen-first ids.

Both kinds of such split (the WN11 OOKB splits, :mod:`circuitkg.data.ookb`, and Head-R / Tail-R
splits of a transductive graph, :mod:`circuitkg.data.unseen_split`) hold a training graph over the
``num_seen`` seen entities, numbered ``0 .. num_seen - 1``, and *auxiliary* edges that connect the
unseen ones, numbered after them. The training graph is then a prefix of the graph with aux edges,
so an encoder with learned rows for the seen entities embeds the others from their edges after
``model.on(split.graph_with_aux())``. :class:`SeenFirstSplit` is that shared part.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor

from circuitkg.data.kg import KnowledgeGraph

__all__ = ["SeenFirstSplit"]


@dataclass(frozen=True, eq=False)
class SeenFirstSplit:
    """``train`` over the seen entities, ``aux`` edges ``(n, 3)`` and every entity's name."""

    train: KnowledgeGraph
    aux: Tensor
    entity_names: tuple[str, ...]

    @property
    def num_seen(self) -> int:
        return self.train.num_entities

    @property
    def num_entities(self) -> int:
        return len(self.entity_names)

    @property
    def num_relations(self) -> int:
        return self.train.num_relations

    def graph(self):
        """The training graph (seen entities, train edges)."""
        from circuitkg.encoders import Graph

        return Graph.from_kg(self.train)

    def graph_with_aux(self):
        """Training and aux edges over all entities: the graph to evaluate on."""
        from circuitkg.encoders import Graph

        edges = torch.cat([self.train.train, self.aux])
        return Graph.from_triples(
            edges, self.num_entities, self.num_relations, self.entity_names,
            self.train.id_to_relation,
        )  # fmt: skip

    def unseen(self, triples: Tensor) -> Tensor:
        """``(n,)`` bool: the triple involves an unseen entity."""
        return (triples[:, 0] >= self.num_seen) | (triples[:, 2] >= self.num_seen)
