"""The in-memory knowledge graph: vocabularies plus integer triple tensors per split."""

from __future__ import annotations

import difflib
from collections.abc import Sequence
from dataclasses import dataclass

import torch

from circuitkg.errors import CircuitKGError

__all__ = ["DataFormatError", "KnowledgeGraph", "UnknownNameError"]

#: Splits that hold true triples; other splits (e.g. ``valid_negatives``) are excluded from
#: :meth:`KnowledgeGraph.known_triples`.
POSITIVE_SPLITS = ("train", "valid", "test")


class DataFormatError(CircuitKGError, ValueError):
    """A triple file is malformed or refers to names the training split does not contain."""


class DatasetNotFoundError(CircuitKGError, FileNotFoundError):
    """A dataset, its folder or one of its files is not where it was looked for."""


class DataArgumentError(CircuitKGError, ValueError):
    """A loader or builder was given an unusable argument (an unknown dataset, setting or option)."""


class UnknownNameError(CircuitKGError, KeyError):
    """An entity, relation or split name is not known."""

    def __str__(self) -> str:  # KeyError would show the repr of the message
        return str(self.args[0])


@dataclass(frozen=True, repr=False, eq=False)
class KnowledgeGraph:
    """Entity and relation vocabularies plus one ``(N, 3)`` int64 tensor per split.

    Each row of a split is ``(head id, relation id, tail id)``. Ids index ``id_to_entity`` and
    ``id_to_relation``; the ``*_to_id`` dicts are their inverses. Construction checks shapes,
    dtypes, the vocabularies' consistency and that every id is in range (O(total triples)).
    """

    name: str
    entity_to_id: dict[str, int]
    id_to_entity: list[str]
    relation_to_id: dict[str, int]
    id_to_relation: list[str]
    splits: dict[str, torch.Tensor]

    def __post_init__(self) -> None:
        for kind, to_id, names in (
            ("entity", self.entity_to_id, self.id_to_entity),
            ("relation", self.relation_to_id, self.id_to_relation),
        ):
            if len(to_id) != len(names) or any(to_id.get(n) != i for i, n in enumerate(names)):
                raise DataFormatError(
                    f"{kind}_to_id and id_to_{kind} are not inverse of each other"
                )
        for split, triples in self.splits.items():
            if triples.dtype != torch.long or triples.dim() != 2 or triples.shape[1] != 3:
                raise DataFormatError(
                    f"split {split!r}: expected an (N, 3) int64 tensor, got "
                    f"{tuple(triples.shape)} {triples.dtype}"
                )
            if triples.numel() == 0:
                continue
            lo, hi = triples.min(dim=0).values, triples.max(dim=0).values
            bounds = (self.num_entities, self.num_relations, self.num_entities)
            if bool((lo < 0).any()) or any(int(h) >= b for h, b in zip(hi, bounds, strict=True)):
                raise DataFormatError(f"split {split!r}: ids out of range")

    @classmethod
    def from_triples(cls, triples, name: str = "custom", splits=None, **options) -> KnowledgeGraph:
        """A knowledge graph from labelled triples (a list of ``(h, r, t)`` strings, a numpy
        array, a pandas DataFrame, or a dict of such per split): see
        :func:`circuitkg.data.build.from_triples`, which takes the same arguments."""
        from circuitkg.data.build import from_triples

        return from_triples(triples, name=name, splits=splits, **options)

    @classmethod
    def from_vocabularies(
        cls,
        name: str,
        entities: Sequence[str],
        relations: Sequence[str],
        splits: dict[str, torch.Tensor],
    ) -> KnowledgeGraph:
        """A knowledge graph whose ids are the positions of the names in ``entities`` and
        ``relations`` (the ``*_to_id`` dicts are derived)."""
        return cls(
            name=name,
            entity_to_id={e: i for i, e in enumerate(entities)},
            id_to_entity=list(entities),
            relation_to_id={r: i for i, r in enumerate(relations)},
            id_to_relation=list(relations),
            splits=splits,
        )

    @property
    def num_entities(self) -> int:
        return len(self.id_to_entity)

    @property
    def num_relations(self) -> int:
        return len(self.id_to_relation)

    @property
    def train(self) -> torch.Tensor:
        return self.split("train")

    @property
    def valid(self) -> torch.Tensor:
        return self.split("valid")

    @property
    def test(self) -> torch.Tensor:
        return self.split("test")

    def split(self, name: str) -> torch.Tensor:
        """The ``(N, 3)`` triples of split ``name``; :class:`UnknownNameError` if absent."""
        try:
            return self.splits[name]
        except KeyError:
            raise UnknownNameError(
                f"{self.name} has no split {name!r}; has {list(self.splits)}"
            ) from None

    def known_triples(self) -> torch.Tensor:
        """All true triples (train, valid and test present) concatenated: the ranking filter."""
        return torch.cat([self.splits[s] for s in POSITIVE_SPLITS if s in self.splits])

    def variable_names(self) -> dict[str, list[str]]:
        """The names of each KG variable's values (``ckg.compile(model, vocabulary=kg)``)."""
        return {"s": self.id_to_entity, "r": self.id_to_relation, "o": self.id_to_entity}

    def entity_id(self, name: str) -> int:
        """The id of entity ``name``; :class:`UnknownNameError` naming close names if absent."""
        return _lookup("entity", self.entity_to_id, name)

    def relation_id(self, name: str) -> int:
        """The id of relation ``name``; :class:`UnknownNameError` naming close names if absent."""
        return _lookup("relation", self.relation_to_id, name)

    def statistics(self) -> dict[str, int | str]:
        """Name, vocabulary sizes and the number of triples of every split."""
        stats: dict[str, int | str] = {
            "name": self.name,
            "num_entities": self.num_entities,
            "num_relations": self.num_relations,
        }
        for split, triples in self.splits.items():
            stats[f"num_{split}"] = len(triples)
        return stats

    def __repr__(self) -> str:
        sizes = ", ".join(f"{s}={len(t)}" for s, t in self.splits.items())
        return (
            f"KnowledgeGraph({self.name!r}, entities={self.num_entities}, "
            f"relations={self.num_relations}, {sizes})"
        )


def _lookup(kind: str, to_id: dict[str, int], name: str) -> int:
    try:
        return to_id[name]
    except KeyError:
        close = difflib.get_close_matches(name, to_id, n=3)
        hint = f"; did you mean {', '.join(map(repr, close))}?" if close else ""
        raise UnknownNameError(f"unknown {kind} {name!r}{hint}") from None
