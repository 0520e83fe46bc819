"""A domain schema in a knowledge graph's id space: entity classes, masks, signature groups.

With ``n`` entities, ``m`` relations and ``T`` types, entities with the same type set form a *class*
(``C ≤ n`` classes; CoDEx-S: 2034 entities, 424 classes). Everything the constrained queries need
is stored per class, never per (relation, entity):

* ``entity_class`` ``(n,)``: the class of each entity; ``class_types`` ``(C, T)``: its types;
* ``subject_class`` / ``object_class`` ``(m, C)``: whether relation ``r`` allows class ``c`` as
  subject / object (all true for an unconstrained relation);
* signature *groups*: relations with identical allowed subject and object classes share a group
  (``G ≤ m`` groups); ``group_of_relation`` ``(m,)``, ``group_subject`` / ``group_object``
  ``(G, C)``. Each relation is in exactly one group, which makes the constraint circuit
  ``c = Σ_g [r ∈ R_g][s ∈ S_g][o ∈ O_g]`` deterministic.

Memory ``O(n + (m + G) C + C T)``; the ``(B, n)`` entity masks are gathered on demand
(:meth:`BoundSchema.allowed`), ``O(B n)``.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

import torch
from circuitkg.constraints.schema import MissingPolicy, SchemaError, _hint
from torch import Tensor

if TYPE_CHECKING:
    from circuitkg.constraints.schema import DomainSchema

    from circuitkg.data import KnowledgeGraph

__all__ = ["BoundSchema", "ViolationReport"]

_SHOWN = 5  # how many names or triples an error message or report quotes


@dataclass(frozen=True)
class ViolationReport:
    """Triples that break the schema, per split and per relation, with a few examples by name."""

    total: dict[str, int]
    violating: dict[str, int]
    by_relation: dict[str, int] = field(default_factory=dict)
    examples: list[tuple[str, str, str]] = field(default_factory=list)

    @property
    def num_violating(self) -> int:
        return sum(self.violating.values())

    def __str__(self) -> str:
        lines = [
            f"{split}: {self.violating[split]} of {self.total[split]} triples violate the schema"
            for split in self.total
        ]
        if self.by_relation:
            worst = sorted(self.by_relation.items(), key=lambda kv: -kv[1])[:_SHOWN]
            lines.append("by relation: " + ", ".join(f"{r}: {c}" for r, c in worst))
        lines += [f"  e.g. ({s}, {r}, {o})" for s, r, o in self.examples]
        return "\n".join(lines)


class BoundSchema:
    """A :class:`~circuitkg.constraints.DomainSchema` on ``kg``'s ids (see the module docstring).

    ``missing`` decides what a relation of ``kg`` without a signature means: ``"unconstrained"``
    (every triple of it is consistent) or ``"error"``. With ``strict``, entities or relations the
    schema names but ``kg`` lacks, and entities of ``kg`` the schema does not type, raise
    :class:`SchemaError` naming them; otherwise the former are ignored and the latter untyped.
    Construction costs ``O(n + m T C)``.
    """

    def __init__(
        self,
        schema: DomainSchema,
        kg: KnowledgeGraph,
        missing: MissingPolicy = "unconstrained",
        strict: bool = True,
    ) -> None:
        if missing not in ("unconstrained", "error"):
            raise ValueError(f"missing must be 'unconstrained' or 'error', got {missing!r}")
        self.schema = schema
        self.entity_names = list(kg.id_to_entity)
        self.relation_names = list(kg.id_to_relation)
        self.entity_to_id = dict(kg.entity_to_id)
        self.relation_to_id = dict(kg.relation_to_id)
        _check_names(schema, kg, missing, strict)

        type_index = {t: i for i, t in enumerate(schema.types)}
        classes: dict[frozenset[str], int] = {}
        entity_class = [
            classes.setdefault(schema.entity_types.get(e, frozenset()), len(classes))
            for e in self.entity_names
        ]
        self.entity_class = torch.tensor(entity_class, dtype=torch.long)
        self.class_type_sets = list(classes)
        self.class_types = _indicator(
            [[type_index[t] for t in ts] for ts in classes], len(type_index)
        )

        self.constrained = torch.tensor(
            [r in schema.signatures for r in self.relation_names], dtype=torch.bool
        )
        sigs = [schema.signatures.get(r) for r in self.relation_names]
        self.subject_types = _indicator(
            [[type_index[t] for t in s.subject] if s else [] for s in sigs], len(type_index)
        )
        self.object_types = _indicator(
            [[type_index[t] for t in s.object] if s else [] for s in sigs], len(type_index)
        )
        self.subject_class = self._class_allowed(self.subject_types)
        self.object_class = self._class_allowed(self.object_types)

        both = torch.cat([self.subject_class, self.object_class], dim=1)
        groups, self.group_of_relation = torch.unique(both, dim=0, return_inverse=True)
        self.group_subject, self.group_object = groups.split(self.num_classes, dim=1)

    # --- sizes ----------------------------------------------------------------------------------
    @property
    def num_entities(self) -> int:
        return len(self.entity_names)

    @property
    def num_relations(self) -> int:
        return len(self.relation_names)

    @property
    def num_classes(self) -> int:
        return len(self.class_type_sets)

    @property
    def num_groups(self) -> int:
        return self.group_subject.shape[0]

    # --- masks ----------------------------------------------------------------------------------
    def allowed(self, target: str, relations: Tensor | None = None) -> Tensor:
        """``(B, n)`` bool: entity ``e`` is an allowed ``target`` (``"s"`` or ``"o"``) of ``relations[b]``.

        ``relations=None`` gives all ``(m, n)``. Gathered from the class masks, ``O(B n)``.
        """
        per_class = {"s": self.subject_class, "o": self.object_class}[target]
        rows = per_class if relations is None else per_class[relations.cpu()]
        return rows[:, self.entity_class]

    def subject_allowed(self, relations: Tensor | None = None) -> Tensor:
        """``allowed("s", relations)``."""
        return self.allowed("s", relations)

    def object_allowed(self, relations: Tensor | None = None) -> Tensor:
        """``allowed("o", relations)``."""
        return self.allowed("o", relations)

    def relation_allowed(self, subjects: Tensor, objects: Tensor) -> Tensor:
        """``(B, m)`` bool: ``(subjects[b], r, objects[b])`` is consistent, for every relation ``r``."""
        s_cls, o_cls = self.entity_class[subjects.cpu()], self.entity_class[objects.cpu()]
        return self.subject_class[:, s_cls].T & self.object_class[:, o_cls].T

    def group_masks(self) -> tuple[Tensor, Tensor, Tensor]:
        """``(S, R, O)``: bool ``(G, n)``, ``(G, m)``, ``(G, n)`` masks of each signature group."""
        s = self.group_subject[:, self.entity_class]
        o = self.group_object[:, self.entity_class]
        r = self.group_of_relation.unsqueeze(0) == torch.arange(self.num_groups).unsqueeze(1)
        return s, r, o

    def consistent(self, triples: Tensor) -> Tensor:
        """``(N,)`` bool: whether each ``(s, r, o)`` row of ``triples`` satisfies the schema. O(N)."""
        triples = triples.cpu()
        s_cls, o_cls = self.entity_class[triples[:, 0]], self.entity_class[triples[:, 2]]
        r = triples[:, 1]
        return self.subject_class[r, s_cls] & self.object_class[r, o_cls]

    # --- validation -----------------------------------------------------------------------------
    def check(self, kg: KnowledgeGraph, splits: tuple[str, ...] | None = None) -> ViolationReport:
        """Count the triples of ``splits`` (default: all) that violate the schema. O(triples)."""
        splits = tuple(kg.splits) if splits is None else splits
        total, violating, by_relation, examples = {}, {}, Counter(), []
        for split in splits:
            triples = kg.split(split)
            bad = triples[~self.consistent(triples)]
            total[split], violating[split] = len(triples), len(bad)
            by_relation.update(self.relation_names[r] for r in bad[:, 1].tolist())
            for s, r, o in bad[: _SHOWN - len(examples)].tolist():
                examples.append(
                    (self.entity_names[s], self.relation_names[r], self.entity_names[o])
                )
        return ViolationReport(total, violating, dict(by_relation), examples)

    def drop_violations(
        self, kg: KnowledgeGraph, splits: tuple[str, ...] = ("train",)
    ) -> KnowledgeGraph:
        """A copy of ``kg`` without the triples of ``splits`` that violate the schema."""
        from circuitkg.data import KnowledgeGraph

        new = dict(kg.splits)
        for split in splits:
            triples = kg.split(split)
            new[split] = triples[self.consistent(triples)]
        return KnowledgeGraph(
            kg.name, kg.entity_to_id, kg.id_to_entity, kg.relation_to_id, kg.id_to_relation, new
        )

    def explain(
        self, s: int | None = None, r: int | None = None, o: int | None = None
    ) -> str | None:
        """Why the partial triple (ids; ``None`` = any) is impossible under the schema, or None."""
        if r is not None and not bool(self.constrained[r]):
            return None
        parts = []
        for side, entity, per_class in (
            ("subject", s, self.subject_class),
            ("object", o, self.object_class),
        ):
            if entity is None:
                continue
            cls = int(self.entity_class[entity])
            if r is not None and not bool(per_class[r, cls]):
                sig = self.schema.signatures[self.relation_names[r]]
                allowed = sig.subject if side == "subject" else sig.object
                parts.append(
                    f"entity {self.entity_names[entity]!r} ({_types(self.class_type_sets[cls])}) "
                    f"is not an allowed {side} of relation {self.relation_names[r]!r} "
                    f"(allowed {side} types: {', '.join(sorted(allowed))})"
                )
            elif r is None and not bool(per_class[:, cls].any()):
                parts.append(
                    f"entity {self.entity_names[entity]!r} ({_types(self.class_type_sets[cls])}) "
                    f"is an allowed {side} of no relation"
                )
        if (
            not parts
            and r is None
            and s is not None
            and o is not None
            and not bool(self.relation_allowed(torch.tensor([s]), torch.tensor([o])).any())
        ):
            parts.append(
                f"no relation allows subject {self.entity_names[s]!r} "
                f"({_types(self.class_type_sets[int(self.entity_class[s])])}) with object "
                f"{self.entity_names[o]!r} ({_types(self.class_type_sets[int(self.entity_class[o])])})"
            )
        return "; ".join(parts) or None

    def _class_allowed(self, relation_types: Tensor) -> Tensor:
        """``(m, C)``: some type of class ``c`` is allowed by relation ``r`` (or ``r`` unconstrained)."""
        hits = relation_types.to(torch.float32) @ self.class_types.to(torch.float32).T
        return (hits > 0) | ~self.constrained.unsqueeze(1)

    def __repr__(self) -> str:
        return (
            f"BoundSchema(entities={self.num_entities}, relations={self.num_relations}, "
            f"classes={self.num_classes}, groups={self.num_groups}, "
            f"unconstrained={int((~self.constrained).sum())})"
        )


def _indicator(rows: list[list[int]], width: int) -> Tensor:
    out = torch.zeros(len(rows), width, dtype=torch.bool)
    for i, cols in enumerate(rows):
        out[i, cols] = True
    return out


def _types(types: frozenset[str]) -> str:
    return "types: " + ", ".join(sorted(types)) if types else "untyped"


def _check_names(schema: DomainSchema, kg: KnowledgeGraph, missing: str, strict: bool) -> None:
    unsigned = [r for r in kg.id_to_relation if r not in schema.signatures]
    if unsigned and missing == "error":
        raise SchemaError(
            f"{len(unsigned)} relation(s) of {kg.name!r} have no signature in the schema: "
            + _listing(unsigned)
            + " (bind with missing='unconstrained' to leave them unconstrained)"
        )
    if not strict:
        return
    for kind, named, known in (
        ("entity", schema.entity_types, kg.entity_to_id),
        ("relation", schema.signatures, kg.relation_to_id),
    ):
        unknown = [x for x in named if x not in known]
        if unknown:
            raise SchemaError(
                f"the schema names {len(unknown)} {kind}(s) absent from {kg.name!r}: "
                f"{_listing(unknown)}{_hint(unknown[0], known)} (bind with strict=False to ignore them)"
            )
    untyped = [e for e in kg.id_to_entity if e not in schema.entity_types]
    if untyped:
        raise SchemaError(
            f"{len(untyped)} entity(ies) of {kg.name!r} have no entry in the schema: "
            f"{_listing(untyped)} (bind with strict=False to leave them untyped)"
        )


def _listing(names: list[str]) -> str:
    shown = ", ".join(map(repr, names[:_SHOWN]))
    return shown + (f", ... ({len(names) - _SHOWN} more)" if len(names) > _SHOWN else "")
