"""Schema files: two TSV files or one JSON file (UTF-8, optionally gzip-compressed ``.gz``).

**TSV.** An entity file with one ``entity<TAB>types`` line per entity (or several lines for one
entity: their types are united), and a signature file with one
``relation<TAB>subject_types<TAB>object_types`` line per relation. ``types`` fields are
comma-separated type names (spaces around commas are ignored). Blank lines and lines starting with
``#`` are skipped::

    # entities.tsv                      # signatures.tsv
    loxoprofen<TAB>drug                 interacts<TAB>drug<TAB>protein
    COX2<TAB>protein,enzyme             treats<TAB>drug<TAB>disease

**JSON.** One object: ``entities`` (entity -> type or list of types), ``relations`` (relation ->
``{"subject": [...], "object": [...]}``) and optionally ``types`` (the type vocabulary)::

    {"entities": {"loxoprofen": ["drug"], "COX2": ["protein", "enzyme"]},
     "relations": {"interacts": {"subject": ["drug"], "object": ["protein"]}}}

Every error is a :class:`~circuitkg.constraints.SchemaFormatError` (or :class:`SchemaError`)
starting with ``path:line:``. Reading costs O(file size).
"""

from __future__ import annotations

import gzip
import json
import os
from pathlib import Path

from circuitkg.constraints.schema import (
    DomainSchema,
    SchemaError,
    SchemaFormatError,
    Signature,
    _hint,
)

from circuitkg.data.text import read_text

__all__ = ["read_json", "read_tsv", "write_json", "write_tsv"]

PathLike = str | os.PathLike[str]


def read_tsv(entity_path: PathLike, signature_path: PathLike) -> DomainSchema:
    """A schema from an entity-types TSV file and a signatures TSV file (module docstring)."""
    entity_types: dict[str, set[str]] = {}
    for path, lineno, fields in _tsv_lines(entity_path, 2, "entity, types"):
        entity_types.setdefault(fields[0], set()).update(_types(fields[1], path, lineno))
    known = set().union(*entity_types.values())
    signatures: dict[str, Signature] = {}
    first_line: dict[str, int] = {}
    for path, lineno, fields in _tsv_lines(
        signature_path, 3, "relation, subject types, object types"
    ):
        relation = fields[0]
        if relation in first_line:
            raise SchemaFormatError(
                f"{path}:{lineno}: relation {relation!r} already has a signature (line {first_line[relation]})"
            )
        sides = [_types(f, path, lineno) for f in fields[1:]]
        for side, types in zip(("subject", "object"), sides, strict=True):
            for t in sorted(types - known):
                raise SchemaError(
                    f"{path}:{lineno}: relation {relation!r} has unknown {side} type {t!r}"
                    f"{_hint(t, known)} (no entity of {entity_path} has this type)"
                )
        first_line[relation] = lineno
        signatures[relation] = Signature(frozenset(sides[0]), frozenset(sides[1]))
    return DomainSchema(entity_types, signatures)


def write_tsv(schema: DomainSchema, entity_path: PathLike, signature_path: PathLike) -> None:
    """Write ``schema`` as the two TSV files :func:`read_tsv` reads (untyped entities are left out)."""
    for name in [*schema.entity_types, *schema.signatures, *schema.types]:
        if any(c in name for c in "\t\n,#") or name != name.strip():
            raise SchemaError(f"name {name!r} cannot be written to TSV (tab, newline, comma, '#')")
    entity_lines = [f"{e}\t{','.join(sorted(ts))}\n" for e, ts in schema.entity_types.items() if ts]
    signature_lines = [
        f"{r}\t{','.join(sorted(s.subject))}\t{','.join(sorted(s.object))}\n"
        for r, s in schema.signatures.items()
    ]
    _write(entity_path, "".join(entity_lines))
    _write(signature_path, "".join(signature_lines))


def read_json(path: PathLike) -> DomainSchema:
    """A schema from a JSON file (module docstring)."""
    text = _read(path)
    try:
        data = json.loads(text)
    except json.JSONDecodeError as err:
        raise SchemaFormatError(
            f"{path}:{err.lineno}:{err.colno}: invalid JSON: {err.msg}"
        ) from None
    if not isinstance(data, dict) or not {"entities", "relations"} <= set(data):
        raise SchemaFormatError(
            f"{path}:1: expected an object with keys 'entities' and 'relations' (and optionally 'types')"
        )
    unexpected = set(data) - {"entities", "relations", "types"}
    if unexpected:
        key = sorted(unexpected)[0]
        raise SchemaFormatError(f"{path}:{_line_of(text, key)}: unexpected key {key!r}")
    entities, relations = data["entities"], data["relations"]
    for section in ("entities", "relations"):
        if not isinstance(data[section], dict):
            raise SchemaFormatError(
                f"{path}:{_line_of(text, section)}: {section!r} must be an object"
            )
    for entity, types in entities.items():
        if not _is_types(types):
            raise SchemaFormatError(
                f"{path}:{_line_of(text, 'entities', entity)}: entity {entity!r}: types must be a "
                f"string or a list of strings, got {json.dumps(types)}"
            )
    for relation, sig in relations.items():
        if not (isinstance(sig, dict) and set(sig) == {"subject", "object"}) or not all(
            _is_types(v) for v in sig.values()
        ):
            raise SchemaFormatError(
                f"{path}:{_line_of(text, 'relations', relation)}: relation {relation!r}: expected "
                '{"subject": [types], "object": [types]}, got ' + json.dumps(sig)
            )
    types = data.get("types")
    if types is not None and not (
        isinstance(types, list) and all(isinstance(t, str) for t in types)
    ):
        raise SchemaFormatError(
            f"{path}:{_line_of(text, 'types')}: 'types' must be a list of strings"
        )
    try:
        return DomainSchema(entities, relations, types)
    except SchemaError as err:
        # the constructor's messages name a relation or an entity: point at its line
        culprit = next(
            (
                (section, name)
                for section, names in (("relations", relations), ("entities", entities))
                for name in names
                if f"{'relation' if section == 'relations' else 'entity'} {name!r}" in str(err)
            ),
            None,
        )
        line = _line_of(text, *culprit) if culprit else 1
        raise SchemaError(f"{path}:{line}: {err}") from None


def write_json(schema: DomainSchema, path: PathLike) -> None:
    """Write ``schema`` as the JSON :func:`read_json` reads (types listed, so untyped ones survive)."""
    data = {
        "types": list(schema.types),
        "entities": {e: sorted(ts) for e, ts in schema.entity_types.items()},
        "relations": {
            r: {"subject": sorted(s.subject), "object": sorted(s.object)}
            for r, s in schema.signatures.items()
        },
    }
    _write(path, json.dumps(data, indent=1, ensure_ascii=False) + "\n")


# --- helpers --------------------------------------------------------------------------------------
def _read(path: PathLike) -> str:
    return read_text(Path(path), SchemaFormatError)


def _write(path: PathLike, text: str) -> None:
    path = Path(path)
    data = text.encode("utf-8")
    path.write_bytes(gzip.compress(data) if path.name.endswith(".gz") else data)


def _tsv_lines(path: PathLike, num_fields: int, what: str):
    """``(path, line number, fields)`` for each non-blank, non-comment line, fields checked."""
    for lineno, line in enumerate(_read(path).replace("\r\n", "\n").split("\n"), start=1):
        if not line.strip() or line.startswith("#"):
            continue
        fields = line.split("\t")
        if len(fields) != num_fields or any(not f.strip() for f in fields):
            got = f"{len(fields)} field(s)" if len(fields) != num_fields else "an empty field"
            raise SchemaFormatError(
                f"{path}:{lineno}: expected {num_fields} non-empty tab-separated fields ({what}), "
                f"got {got}: {line[:80]!r}"
            )
        yield path, lineno, [f.strip() for f in fields]


def _types(field: str, path: PathLike, lineno: int) -> set[str]:
    types = [t.strip() for t in field.split(",")]
    if any(not t for t in types):
        raise SchemaFormatError(f"{path}:{lineno}: empty type name in {field!r}")
    return set(types)


def _is_types(value: object) -> bool:
    return isinstance(value, str) or (
        isinstance(value, list) and all(isinstance(t, str) for t in value)
    )


def _line_of(text: str, *keys: str) -> int:
    """1-based line of the first ``"key"`` occurrence, each key searched after the previous one."""
    pos = 0
    for key in keys:
        found = text.find(json.dumps(key, ensure_ascii=False), pos)
        if found < 0:
            break
        pos = found
    return text.count("\n", 0, pos) + 1
