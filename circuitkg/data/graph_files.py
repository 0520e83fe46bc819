"""A new graph from a triple file, over a trained model's relations (``circuitkg ... --graph``).

:func:`load_graph_file` reads a ``head<TAB>relation<TAB>tail`` file (``.txt`` or ``.txt.gz``, the
format of :mod:`circuitkg.data.loaders`; malformed lines raise :class:`DataFormatError` naming
file and line) into a :class:`KnowledgeGraph` whose entities are the file's own (sorted) and whose
relations are the given vocabulary, in its order: the relation ids of the model that will read the
graph (``model.on(Graph.from_kg(kg))``). A relation name outside that vocabulary raises
:class:`UnknownNameError` naming it, its line and close names.
"""

from __future__ import annotations

import difflib
import os
from collections.abc import Sequence
from pathlib import Path

from circuitkg.data.kg import (
    DataFormatError,
    DatasetNotFoundError,
    KnowledgeGraph,
    UnknownNameError,
)
from circuitkg.data.loaders import _encode, _TripleFile

__all__ = ["load_graph_file"]


def load_graph_file(
    path: str | os.PathLike[str],
    relations: Sequence[str],
    *,
    test: str | os.PathLike[str] | None = None,
    name: str | None = None,
) -> KnowledgeGraph:
    """The graph of the triple file ``path`` over the relation vocabulary ``relations``.

    Split ``"train"`` holds the file's triples (the graph an encoder reads); split ``"test"`` the
    triples of the file ``test`` (default: the graph's own triples). Entity ids: the graph file's
    names, sorted, then names that occur only in ``test``, sorted (isolated nodes, as in
    :func:`circuitkg.data.load_inductive`). Cost: linear in the file sizes.
    """
    path = Path(path)
    if not path.is_file():
        raise DatasetNotFoundError(f"graph file {path} does not exist")
    relation_to_id = {r: i for i, r in enumerate(relations)}
    graph = _TripleFile(path)
    if len(graph) == 0:
        raise DataFormatError(f"{path}: the graph file holds no triples")
    _check_relations(graph, relation_to_id)
    files = {"train": graph}
    if test is not None:
        test = Path(test)
        if not test.is_file():
            raise DatasetNotFoundError(f"test triple file {test} does not exist")
        files["test"] = _TripleFile(test)
        _check_relations(files["test"], relation_to_id)
    entities = sorted(set(graph.heads).union(graph.tails))
    others = set().union(*(set(f.heads).union(f.tails) for f in files.values()))
    id_to_entity = entities + sorted(others.difference(entities))
    entity_to_id = {e: i for i, e in enumerate(id_to_entity)}
    splits = {split: _encode(file, entity_to_id, relation_to_id) for split, file in files.items()}
    splits.setdefault("test", splits["train"])
    return KnowledgeGraph(
        name=name if name is not None else path.name.split(".")[0],
        entity_to_id=entity_to_id,
        id_to_entity=id_to_entity,
        relation_to_id=relation_to_id,
        id_to_relation=list(relations),
        splits=splits,
    )


def _check_relations(file: _TripleFile, relation_to_id: dict[str, int]) -> None:
    unknown = set(file.relations).difference(relation_to_id)
    if not unknown:
        return
    row = next(i for i, r in enumerate(file.relations) if r in unknown)
    first = file.relations[row]
    close = difflib.get_close_matches(first, relation_to_id, n=3)
    hint = f"; did you mean {', '.join(map(repr, close))}?" if close else ""
    more = f" ({len(unknown)} unknown relations in all)" if len(unknown) > 1 else ""
    raise UnknownNameError(
        f"{file.where(row)}: relation {first!r} is not one of the model's "
        f"{len(relation_to_id)} relations{hint}{more}"
    )
