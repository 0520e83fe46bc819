"""Domain schemas: entity types and, per relation, the allowed subject and object types.

A schema ``(τ, σ)`` gives every entity ``e`` a set of types ``τ(e)`` (one or several, possibly none)
and every relation ``r`` a signature ``σ(r) = (D_r, R_r)``: the allowed subject (domain) and object
(range) types. A triple is *consistent* when

    τ(s) ∩ D_r ≠ ∅   and   τ(o) ∩ R_r ≠ ∅,

i.e. the subject has an allowed subject type and the object an allowed object type.

A :class:`DomainSchema` is name-based and independent of any dataset; :meth:`DomainSchema.bind`
maps it onto a :class:`~circuitkg.data.KnowledgeGraph`'s id space (:class:`BoundSchema`), where the
masks, the constraint circuit and the constrained queries live. Build one from Python dicts (the
constructor), from files (:mod:`circuitkg.constraints.io`) or from data (:meth:`DomainSchema.infer`).
"""

from __future__ import annotations

import difflib
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Literal

from circuitkg.errors import CircuitKGError

if TYPE_CHECKING:
    from circuitkg.constraints.binding import BoundSchema

    from circuitkg.data import KnowledgeGraph

__all__ = ["DomainSchema", "SchemaError", "SchemaFormatError", "Signature"]

#: what to do with a relation of the knowledge graph that the schema gives no signature
MissingPolicy = Literal["unconstrained", "error"]


class SchemaError(CircuitKGError, ValueError):
    """A schema is inconsistent or does not fit a knowledge graph; the message names the culprit."""


class SchemaFormatError(SchemaError):
    """A schema file is malformed; the message starts with ``path:line:``."""


@dataclass(frozen=True)
class Signature:
    """The types a relation allows on each side: ``subject`` (domain) and ``object`` (range)."""

    subject: frozenset[str]
    object: frozenset[str]

    def __repr__(self) -> str:
        return f"Signature(subject={sorted(self.subject)}, object={sorted(self.object)})"


TypesLike = str | Iterable[str]
SignatureLike = Signature | tuple[TypesLike, TypesLike] | Mapping[str, TypesLike]


class DomainSchema:
    """Entity types and relation signatures, by name (see the module docstring).

    ``entity_types`` maps an entity to one type name or an iterable of them (an empty iterable: an
    untyped entity, allowed in no constrained relation). ``signatures`` maps a relation to a
    :class:`Signature`, a ``(subject_types, object_types)`` pair or a ``{"subject": ...,
    "object": ...}`` dict. ``types`` declares the type vocabulary; by default it is the set of types
    of the entities. Every signature type must be in it, and with ``types`` given every entity type
    too; an unknown type raises :class:`SchemaError` naming it, its relation or entity, and close
    names. A signature side without types is an error (no triple could hold). O(size of the input).
    """

    def __init__(
        self,
        entity_types: Mapping[str, TypesLike],
        signatures: Mapping[str, SignatureLike],
        types: Iterable[str] | None = None,
    ) -> None:
        self.entity_types: dict[str, frozenset[str]] = {
            str(e): _type_set(t) for e, t in entity_types.items()
        }
        observed = frozenset().union(*self.entity_types.values())
        if types is None:
            known = observed
        else:
            known = frozenset(types)
            for entity, ts in self.entity_types.items():
                for t in sorted(ts - known):
                    raise SchemaError(f"entity {entity!r} has unknown type {t!r}{_hint(t, known)}")
        self.types: tuple[str, ...] = tuple(sorted(known))
        self.signatures: dict[str, Signature] = {}
        for relation, sig in signatures.items():
            sig = _signature(relation, sig)
            for side, ts in (("subject", sig.subject), ("object", sig.object)):
                if not ts:
                    raise SchemaError(
                        f"relation {relation!r} allows no {side} types: no triple could hold"
                    )
                for t in sorted(ts - known):
                    raise SchemaError(
                        f"relation {relation!r} has unknown {side} type {t!r}{_hint(t, known)}"
                        + ("" if types is not None else " (no entity has this type)")
                    )
            self.signatures[str(relation)] = sig

    # --- construction from data -----------------------------------------------------------------
    @classmethod
    def infer(
        cls,
        kg: KnowledgeGraph,
        entity_types: Mapping[str, TypesLike],
        split: str = "train",
        types: Iterable[str] | None = None,
    ) -> DomainSchema:
        """The schema observed in ``kg``'s ``split``: ``D_r = ∪ τ(s)``, ``R_r = ∪ τ(o)`` over its triples.

        ``entity_types`` may cover more entities than ``kg`` (e.g. all of CoDEx for CoDEx-S); only
        ``kg``'s entities are kept, and those it lacks become untyped. A relation whose observed
        subjects (or objects) are all untyped, or that has no triple in ``split``, gets no
        signature (see the ``missing`` policy of :meth:`bind`). Every training triple with typed
        entities is consistent with the result by construction. O(triples · types per entity).
        """
        typed = {e: _type_set(entity_types.get(e, ())) for e in kg.id_to_entity}
        triples = kg.split(split).tolist()
        sides: dict[int, tuple[set[str], set[str]]] = {}
        for s, r, o in triples:
            subject, obj = sides.setdefault(r, (set(), set()))
            subject |= typed[kg.id_to_entity[s]]
            obj |= typed[kg.id_to_entity[o]]
        signatures = {
            kg.id_to_relation[r]: Signature(frozenset(sub), frozenset(obj))
            for r, (sub, obj) in sorted(sides.items())
            if sub and obj
        }
        if types is not None:
            types = frozenset(types) | frozenset().union(*typed.values())
        return cls(typed, signatures, types)

    # --- files (formats in circuitkg.constraints.io) ---------------------------------------------
    @classmethod
    def from_tsv(cls, entity_path, signature_path) -> DomainSchema:
        """Read an entity-types TSV file and a signatures TSV file."""
        from circuitkg.constraints.io import read_tsv

        return read_tsv(entity_path, signature_path)

    @classmethod
    def from_json(cls, path) -> DomainSchema:
        """Read a JSON schema file."""
        from circuitkg.constraints.io import read_json

        return read_json(path)

    def to_tsv(self, entity_path, signature_path) -> None:
        from circuitkg.constraints.io import write_tsv

        write_tsv(self, entity_path, signature_path)

    def to_json(self, path) -> None:
        from circuitkg.constraints.io import write_json

        write_json(self, path)

    # --- queries by name ------------------------------------------------------------------------
    @property
    def entities(self) -> list[str]:
        return list(self.entity_types)

    @property
    def relations(self) -> list[str]:
        return list(self.signatures)

    def types_of(self, entity: str) -> frozenset[str]:
        """``τ(entity)``; :class:`SchemaError` with close names for an unknown entity."""
        try:
            return self.entity_types[entity]
        except KeyError:
            raise SchemaError(
                f"unknown entity {entity!r}{_hint(entity, self.entity_types)}"
            ) from None

    def signature(self, relation: str) -> Signature:
        """``σ(relation)``; :class:`SchemaError` with close names if it has none."""
        try:
            return self.signatures[relation]
        except KeyError:
            raise SchemaError(
                f"relation {relation!r} has no signature{_hint(relation, self.signatures)}"
            ) from None

    def consistent(self, subject: str, relation: str, obj: str) -> bool:
        """Whether the named triple satisfies the schema (its relation must have a signature)."""
        sig = self.signature(relation)
        return bool(self.types_of(subject) & sig.subject) and bool(self.types_of(obj) & sig.object)

    def bind(
        self, kg: KnowledgeGraph, missing: MissingPolicy = "unconstrained", strict: bool = True
    ) -> BoundSchema:
        """This schema in ``kg``'s id space; see :class:`~circuitkg.constraints.BoundSchema`."""
        from circuitkg.constraints.binding import BoundSchema

        return BoundSchema(self, kg, missing=missing, strict=strict)

    def __eq__(self, other: object) -> bool:
        return (
            isinstance(other, DomainSchema)
            and self.entity_types == other.entity_types
            and self.signatures == other.signatures
            and self.types == other.types
        )

    __hash__ = None  # mutable containers inside: not hashable

    def __repr__(self) -> str:
        return (
            f"DomainSchema(entities={len(self.entity_types)}, types={len(self.types)}, "
            f"relations={len(self.signatures)})"
        )


def _type_set(types: TypesLike) -> frozenset[str]:
    if isinstance(types, str):
        return frozenset({types})
    return frozenset(str(t) for t in types)


def _signature(relation: str, sig: SignatureLike) -> Signature:
    if isinstance(sig, Signature):
        return sig
    if isinstance(sig, Mapping):
        if set(sig) != {"subject", "object"}:
            raise SchemaError(
                f"relation {relation!r}: a signature dict needs exactly the keys 'subject' and "
                f"'object', got {sorted(sig)}"
            )
        return Signature(_type_set(sig["subject"]), _type_set(sig["object"]))
    if isinstance(sig, tuple) and len(sig) == 2:
        return Signature(_type_set(sig[0]), _type_set(sig[1]))
    raise SchemaError(
        f"relation {relation!r}: a signature is a Signature, a (subject_types, object_types) "
        f"pair or a dict, got {type(sig).__name__}"
    )


def _hint(name: str, known: Iterable[str]) -> str:
    close = difflib.get_close_matches(name, list(known), n=3)
    return f"; did you mean {', '.join(map(repr, close))}?" if close else ""
