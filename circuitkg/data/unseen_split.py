"""Entity prediction with unseen entities: Head-R / Tail-R splits built from a transductive KG.

Paper 003 (section 5.1) builds them from FB15k "following a similar procedure" to Hamaguchi et al.
(2017); our copy of the paper lost the end of that procedure, so the steps below are the ones the
text keeps, completed by Hamaguchi et al.'s rules for the WN11 splits, and applied here to any
knowledge graph (FB15k-237 in the docs). Deterministic for a given ``seed``:

1. **Unseen entities.** The test triples are put in a seeded random order and the first
   ``ceil(ratio · |test|)`` are chosen; their heads (``side="head"``, Head-R) or tails (Tail-R)
   form the unseen set ``U``.
2. **Training and auxiliary edges.** A training triple with no entity in ``U`` stays in training;
   one with exactly one entity in ``U`` becomes an auxiliary edge (seen at test time only); one
   with both in ``U`` is dropped. Validation keeps the triples with no entity in ``U``.
3. **Test.** A chosen test triple is kept if its unseen entity has an auxiliary edge and its other
   entity and relation occur in the new training graph (so the triple is answerable from the graph
   with aux edges alone); the query hides its unseen entity: ``(?, r, t)`` for Head-R,
   ``(h, r, ?)`` for Tail-R.

Ids: the entities of the new training graph first (the :class:`OOKBSplit` convention, so an encoder
with learned rows for seen entities embeds the others after ``model.on(split.graph_with_aux())``),
then ``U`` in the original id order. Entities in neither are left out, with the valid/test triples
that name them. Cost: ``O(|triples|)``.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
from torch import Tensor

from circuitkg.data.kg import DataArgumentError, KnowledgeGraph
from circuitkg.data.seen_first import SeenFirstSplit

__all__ = ["UnseenEntitySplit", "unseen_entity_split"]


@dataclass(frozen=True, eq=False)
class UnseenEntitySplit(SeenFirstSplit):
    """A Head-R / Tail-R split (module docstring), in the ids of :meth:`graph_with_aux`."""

    name: str
    side: str
    ratio: float
    test: Tensor
    known: Tensor

    @property
    def direction(self) -> str:
        """The hidden position of a test query: ``"s"`` (Head-R) or ``"o"`` (Tail-R)."""
        return "s" if self.side == "head" else "o"

    def statistics(self) -> dict[str, int | str | float]:
        return {
            "name": self.name,
            "side": self.side,
            "ratio": self.ratio,
            "num_seen": self.num_seen,
            "num_unseen": self.num_entities - self.num_seen,
            "num_train": len(self.train.train),
            "num_valid": len(self.train.valid),
            "num_aux": len(self.aux),
            "num_test": len(self.test),
        }


def unseen_entity_split(
    kg: KnowledgeGraph, side: str = "head", ratio: float = 0.05, seed: int = 0
) -> UnseenEntitySplit:
    """The Head-R (``side="head"``) or Tail-R split of ``kg`` with ``ratio`` of its test triples
    chosen to hold unseen entities (module docstring)."""
    if side not in ("head", "tail"):
        raise DataArgumentError(f"side must be 'head' or 'tail', got {side!r}")
    if not 0 < ratio <= 1:
        raise DataArgumentError(f"ratio must be in (0, 1], got {ratio!r}")
    column = 0 if side == "head" else 2
    order = torch.randperm(len(kg.test), generator=torch.Generator().manual_seed(seed))
    chosen = kg.test[order[: math.ceil(ratio * len(kg.test))]]
    unseen = torch.zeros(kg.num_entities, dtype=torch.bool)
    unseen[chosen[:, column]] = True
    hits = unseen[kg.train[:, 0]].long() + unseen[kg.train[:, 2]].long()
    train, aux = kg.train[hits == 0], kg.train[hits == 1]
    seen = torch.zeros(kg.num_entities, dtype=torch.bool)
    seen[train[:, [0, 2]].flatten()] = True
    joined = torch.zeros(kg.num_entities, dtype=torch.bool)  # unseen entities with an aux edge
    aux = aux[seen[aux[:, 0]] | seen[aux[:, 2]]]
    joined[aux[:, [0, 2]].flatten()] = True
    joined &= unseen
    relations = torch.zeros(kg.num_relations, dtype=torch.bool)
    relations[train[:, 1]] = True
    other = 2 - column
    keep = joined[chosen[:, column]] & seen[chosen[:, other]] & relations[chosen[:, 1]]
    old_ids = torch.cat([seen.nonzero()[:, 0], joined.nonzero()[:, 0]])
    new_id = torch.full((kg.num_entities,), -1, dtype=torch.long)
    new_id[old_ids] = torch.arange(len(old_ids))

    def remap(triples: Tensor) -> Tensor:
        out = triples.clone()
        out[:, [0, 2]] = new_id[triples[:, [0, 2]]]
        return out[(out[:, [0, 2]] >= 0).all(dim=1)]

    names = tuple(kg.id_to_entity[i] for i in old_ids.tolist())
    num_seen = int(seen.sum())
    valid = remap(kg.valid)
    name = f"{kg.name}-{side}-r{ratio:g}"
    train_kg = KnowledgeGraph.from_vocabularies(
        name,
        list(names[:num_seen]),
        list(kg.id_to_relation),
        {
            "train": remap(train),
            "valid": valid[(valid[:, [0, 2]] < num_seen).all(dim=1)],
            "test": torch.zeros(0, 3, dtype=torch.long),
        },
    )
    return UnseenEntitySplit(
        name=name, side=side, ratio=ratio, train=train_kg, aux=remap(aux),
        test=remap(chosen[keep]), known=remap(kg.known_triples()), entity_names=names,
    )  # fmt: skip
