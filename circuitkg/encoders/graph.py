"""The graph an encoder reads: typed edges ``(head, relation, tail)`` over ``num_nodes`` nodes.

A :class:`Graph` is the message-passing view of a knowledge graph's triples. It is built from a
:class:`~circuitkg.data.KnowledgeGraph` split (``Graph.from_kg(kg)``), from an ``(E, 3)`` id tensor
(``Graph.from_triples``) or from a triple file whose relation names must be those of a trained model
(``Graph.from_file``). ``edge_index`` (``2 x E``, PyG's layout: row 0 the source, i.e. the head) and
``edge_type`` (``E``) are views of the same tensor. Nodes without edges are allowed: an encoder keeps
their feature row.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import torch
from torch import Tensor

from circuitkg.errors import CircuitKGError

__all__ = ["Graph", "GraphError"]


class GraphError(CircuitKGError, ValueError):
    """A graph is empty, malformed, or does not fit the model it is bound to."""


@dataclass(frozen=True, eq=False)
class Graph:
    """``edges`` is ``(E, 3)`` int64 ``(head, relation, tail)``; names are optional vocabularies."""

    edges: Tensor
    num_nodes: int
    num_relations: int
    node_names: tuple[str, ...] | None = None
    relation_names: tuple[str, ...] | None = None

    def __post_init__(self) -> None:
        edges = self.edges
        if edges.dtype != torch.long or edges.dim() != 2 or edges.shape[1] != 3:
            raise GraphError(
                f"graph edges must be an (E, 3) int64 tensor, got {tuple(edges.shape)} {edges.dtype}"
            )
        if self.num_nodes < 1:
            raise GraphError("an empty graph: it has no nodes")
        if len(edges) == 0:
            raise GraphError(
                f"an empty graph: {self.num_nodes} nodes and no edges (nothing to pass messages over)"
            )
        lo, hi = edges.min(dim=0).values, edges.max(dim=0).values
        bounds = (self.num_nodes, self.num_relations, self.num_nodes)
        if bool((lo < 0).any()) or any(int(h) >= b for h, b in zip(hi, bounds, strict=True)):
            raise GraphError(
                f"graph edges hold ids outside {self.num_nodes} nodes / {self.num_relations} relations"
            )
        for what, names, size in (
            ("node", self.node_names, self.num_nodes),
            ("relation", self.relation_names, self.num_relations),
        ):
            if names is not None and len(names) != size:
                raise GraphError(f"{len(names)} {what} names for {size} {what}s")

    @classmethod
    def from_triples(
        cls,
        triples: Tensor,
        num_nodes: int,
        num_relations: int,
        node_names: Sequence[str] | None = None,
        relation_names: Sequence[str] | None = None,
    ) -> Graph:
        return cls(
            torch.as_tensor(triples, dtype=torch.long).reshape(-1, 3),
            int(num_nodes),
            int(num_relations),
            None if node_names is None else tuple(node_names),
            None if relation_names is None else tuple(relation_names),
        )

    @classmethod
    def from_kg(cls, kg, split: str = "train") -> Graph:
        """The graph of ``kg``'s ``split`` over all of ``kg``'s entities and relations."""
        return cls.from_triples(
            kg.split(split), kg.num_entities, kg.num_relations, kg.id_to_entity, kg.id_to_relation
        )

    @property
    def num_edges(self) -> int:
        return len(self.edges)

    @property
    def edge_index(self) -> Tensor:
        """``(2, E)``: heads then tails (PyG's ``edge_index``, messages flow head -> tail)."""
        return self.edges[:, [0, 2]].T

    @property
    def edge_type(self) -> Tensor:
        return self.edges[:, 1]

    @property
    def device(self) -> torch.device:
        return self.edges.device

    def to(self, device: torch.device | str) -> Graph:
        if self.edges.device == torch.device(device):
            return self
        return Graph(
            self.edges.to(device),
            self.num_nodes,
            self.num_relations,
            self.node_names,
            self.relation_names,
        )

    def check_relations(self, num_relations: int, names: Sequence[str] | None) -> None:
        """Raise :class:`GraphError` unless this graph's relation vocabulary is ``names``
        (or, without names on either side, has ``num_relations`` relations)."""
        if names is not None and self.relation_names is not None:
            ours, theirs = list(names), list(self.relation_names)
            if ours != theirs:
                unknown = sorted(set(theirs) - set(ours))
                missing = sorted(set(ours) - set(theirs))
                raise GraphError(
                    "the graph's relation vocabulary differs from the model's: "
                    + (f"unknown to the model: {unknown[:10]}; " if unknown else "")
                    + (f"missing from the graph: {missing[:10]}; " if missing else "")
                    + ("same names in another order" if not unknown and not missing else "")
                )
        if self.num_relations != num_relations:
            raise GraphError(
                f"the graph has {self.num_relations} relations, the model {num_relations}"
            )

    def __repr__(self) -> str:
        return (
            f"Graph(nodes={self.num_nodes}, relations={self.num_relations}, edges={self.num_edges})"
        )
