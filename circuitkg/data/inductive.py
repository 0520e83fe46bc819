"""Inductive link-prediction splits (GraIL): train on one graph, test on a disjoint one.

Teru, Denis and Hamilton (2020), *Inductive relation prediction by subgraph reasoning*, released 12
benchmark pairs: ``fb237_v1..v4``, ``WN18RR_v1..v4`` and ``nell_v1..v4``. A pair is two folders,
``<name>/`` (the training graph: train, valid and test triples) and ``<name>_ind/`` (the inference
graph: new entities, the training graph's relations). At test time a model sees
``<name>_ind/train.txt`` as its graph and answers ``<name>_ind/test.txt``; its entity embeddings
must come from that graph (an encoder, :meth:`model.on(graph)`), not from training.

:func:`load_inductive` reads a pair into an :class:`InductiveSplit`. ``fb237_v1`` ships with the
package; the others are read from a data root (see :func:`load_inductive`).
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal, NoReturn

import torch

from circuitkg.data.kg import (
    DataArgumentError,
    DataFormatError,
    DatasetNotFoundError,
    KnowledgeGraph,
)
from circuitkg.data.loaders import (
    DATA_ENV_VAR,
    REQUIRED_SPLITS,
    _data_root,
    _encode,
    _split_file,
    _TripleFile,
)

__all__ = ["INDUCTIVE_DATASETS", "SHIPPED_INDUCTIVE_DATASETS", "InductiveSplit", "load_inductive"]

#: The 12 GraIL pairs, spelled as their folders are.
INDUCTIVE_DATASETS = tuple(
    f"{family}_v{version}" for family in ("fb237", "WN18RR", "nell") for version in (1, 2, 3, 4)
)
#: Pairs inside the package (``circuitkg/data/datasets/grail/<name>{,_ind}/``).
SHIPPED_INDUCTIVE_DATASETS = ("fb237_v1",)
#: Suffix of the inference graph's folder.
INFERENCE_SUFFIX = "_ind"

_PACKAGE_GRAIL = Path(__file__).resolve().parent / "datasets" / "grail"
_SHOWN_NAMES = 10  # how many unseen relation names an error message lists


@dataclass(frozen=True, repr=False, eq=False)
class InductiveSplit:
    """A training graph and a disjoint inference graph over one relation vocabulary.

    ``train`` holds the training graph's vocabulary and its ``train``/``valid``/``test`` splits.
    ``inference`` has its own entity vocabulary; its split ``"train"`` is the graph a model
    message-passes over at test time, ``"valid"`` and ``"test"`` are the triples to answer. Both
    graphs use the same relation ids (the training graph's): ``inference.id_to_relation ==
    train.id_to_relation``, checked at construction. ``dropped`` counts the triples dropped for an
    unseen relation, keyed ``"<graph>/<split>"`` (e.g. ``"inference/test"``).
    """

    name: str
    train: KnowledgeGraph
    inference: KnowledgeGraph
    dropped: dict[str, int] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if (
            self.inference.id_to_relation != self.train.id_to_relation
            or self.inference.relation_to_id != self.train.relation_to_id
        ):
            raise DataArgumentError(
                f"{self.name}: the inference graph's relation vocabulary differs from the "
                "training graph's; an inductive split needs one shared relation vocabulary"
            )

    @staticmethod
    def inductive_datasets() -> tuple[str, ...]:
        """The names :func:`load_inductive` knows (:data:`INDUCTIVE_DATASETS`)."""
        return INDUCTIVE_DATASETS

    @property
    def num_relations(self) -> int:
        return self.train.num_relations

    def isolated_entities(self) -> list[str]:
        """Inference entities that occur in no triple of the inference graph's ``train`` split."""
        graph = self.inference.split("train")
        present = torch.zeros(self.inference.num_entities, dtype=torch.bool)
        present[graph[:, 0]] = True
        present[graph[:, 2]] = True
        return [self.inference.id_to_entity[i] for i in (~present).nonzero()[:, 0].tolist()]

    def statistics(self) -> dict[str, int | str]:
        """Both graphs' :meth:`KnowledgeGraph.statistics` (keys prefixed ``train_`` and
        ``inference_``), the relation count, isolated inference entities, entity names the two
        graphs share (GraIL's WN18RR_v3 and nell_v3/v4 have a few) and the dropped counts."""
        stats: dict[str, int | str] = {"name": self.name, "num_relations": self.num_relations}
        for prefix, kg in (("train", self.train), ("inference", self.inference)):
            for key, value in kg.statistics().items():
                if key not in ("name", "num_relations"):
                    stats[f"{prefix}_{key}"] = value
        stats["inference_num_isolated"] = len(self.isolated_entities())
        shared = set(self.train.entity_to_id).intersection(self.inference.entity_to_id)
        stats["num_shared_entity_names"] = len(shared)
        for key, count in self.dropped.items():
            stats[f"dropped_{key.replace('/', '_')}"] = count
        return stats

    def __repr__(self) -> str:
        return f"InductiveSplit({self.name!r}, train={self.train!r}, inference={self.inference!r})"


def load_inductive(
    name: str,
    root: str | os.PathLike[str] | None = None,
    unseen_relations: Literal["error", "drop"] = "error",
) -> InductiveSplit:
    """Load the GraIL pair ``name`` (case-insensitive, e.g. ``"wn18rr_v1"``).

    **Where.** With ``root`` given, the pair is read from ``<root>/<name>/`` and
    ``<root>/<name>_ind/`` (folder names spelled as in :data:`INDUCTIVE_DATASETS`). Otherwise a
    shipped pair (:data:`SHIPPED_INDUCTIVE_DATASETS`) comes from the package, and any other from
    the folder named by the environment variable ``CIRCUITKG_DATA``, the data root of
    :func:`circuitkg.data.load`. Files are as :func:`circuitkg.data.load_folder` reads them
    (``train``/``valid``/``test`` with ``.txt``, ``.txt.gz``, ``.tsv`` or ``.tsv.gz``); malformed
    lines raise :class:`DataFormatError` naming file and line.

    **Vocabularies.** Relations: those of the training graph's ``train`` file, sorted. Entities,
    per graph: those of its ``train`` file, sorted, then those that occur only in its ``valid`` or
    ``test`` file, sorted, as *isolated nodes* (no edge in the graph). That is GraIL's protocol:
    its code builds each graph's entity ids from all of that graph's files, so such an entity is a
    node of the test-time graph with no edges, and it is among the candidates negatives are drawn
    from. (The released files have none: every valid/test entity of ``<name>_ind`` occurs in
    ``<name>_ind/train.txt``, and likewise for ``<name>``.)
    :meth:`InductiveSplit.isolated_entities` lists them.

    **Unseen relations.** A triple of either graph whose relation is not in the training graph's
    ``train`` file raises :class:`DataFormatError` naming those relations
    (``unseen_relations="error"``), or is dropped and counted in ``InductiveSplit.dropped``
    (``"drop"``). Cost: linear in the file sizes.
    """
    if unseen_relations not in ("error", "drop"):
        raise DataArgumentError(
            f"unseen_relations must be 'error' or 'drop', got {unseen_relations!r}"
        )
    canonical = {n.lower(): n for n in INDUCTIVE_DATASETS}.get(name.lower())
    if canonical is None:
        raise DataArgumentError(
            f"unknown inductive dataset {name!r}; known: {', '.join(INDUCTIVE_DATASETS)}"
        )
    folder = _pair_root(canonical, root)
    dropped: dict[str, int] = {}
    train = _read_graph(folder / canonical, canonical, None, unseen_relations, "train", dropped)
    inference_name = canonical + INFERENCE_SUFFIX
    inference = _read_graph(
        folder / inference_name, inference_name, train, unseen_relations, "inference", dropped
    )
    return InductiveSplit(name=canonical, train=train, inference=inference, dropped=dropped)


def _pair_root(name: str, root: str | os.PathLike[str] | None) -> Path:
    """The folder holding ``<name>/`` and ``<name>_ind/``."""
    if root is None and name in SHIPPED_INDUCTIVE_DATASETS:
        return _PACKAGE_GRAIL
    data_root = _data_root(root)
    if data_root is None:
        raise DatasetNotFoundError(
            f"inductive dataset {name!r} is not shipped with circuitkg: pass root=<folder "
            f"containing {name}/ and {name}{INFERENCE_SUFFIX}/> or set the environment variable "
            f"{DATA_ENV_VAR}"
        )
    missing = [
        str(data_root / n) for n in (name, name + INFERENCE_SUFFIX) if not (data_root / n).is_dir()
    ]
    if missing:
        source = "root" if root is not None else f"${DATA_ENV_VAR}"
        raise DatasetNotFoundError(
            f"inductive dataset {name!r} not found: no folder {' or '.join(missing)} (from {source})"
        )
    return data_root


def _read_graph(
    folder: Path,
    name: str,
    relations_from: KnowledgeGraph | None,
    unseen_relations: str,
    graph: str,
    dropped: dict[str, int],
) -> KnowledgeGraph:
    """One graph of a pair; relations from ``relations_from`` (or this graph's train file)."""
    files = {s: _TripleFile(_split_file(folder, s, required=True)) for s in REQUIRED_SPLITS}
    if relations_from is None:
        id_to_relation = sorted(set(files["train"].relations))
        relation_to_id = {r: i for i, r in enumerate(id_to_relation)}
    else:
        id_to_relation, relation_to_id = (
            relations_from.id_to_relation,
            relations_from.relation_to_id,
        )
    unseen = {
        split: sorted(set(file.relations).difference(relation_to_id))
        for split, file in files.items()
    }
    if unseen_relations == "error" and any(unseen.values()):
        _raise_unseen_relations(folder, unseen)

    graph_entities = sorted(set(files["train"].heads).union(files["train"].tails))
    others = set().union(*(set(f.heads).union(f.tails) for s, f in files.items() if s != "train"))
    id_to_entity = graph_entities + sorted(others.difference(graph_entities))
    entity_to_id = {e: i for i, e in enumerate(id_to_entity)}

    splits = {}
    for split, file in files.items():
        triples = _encode(file, entity_to_id, relation_to_id)
        known = triples[:, 1] >= 0  # entities are all in the vocabulary by construction
        if relations_from is not None or split != "train":
            dropped[f"{graph}/{split}"] = int((~known).sum())
        splits[split] = triples[known]
    return KnowledgeGraph(
        name=name,
        entity_to_id=entity_to_id,
        id_to_entity=id_to_entity,
        relation_to_id=relation_to_id,
        id_to_relation=id_to_relation,
        splits=splits,
    )


def _raise_unseen_relations(folder: Path, unseen: dict[str, list[str]]) -> NoReturn:
    names = sorted(set().union(*unseen.values()))
    shown = ", ".join(map(repr, names[:_SHOWN_NAMES]))
    more = f" and {len(names) - _SHOWN_NAMES} more" if len(names) > _SHOWN_NAMES else ""
    where = ", ".join(f"{s}: {len(r)}" for s, r in unseen.items() if r)
    raise DataFormatError(
        f"{folder}: {len(names)} relation(s) absent from the training graph's train file: "
        f"{shown}{more} (distinct unseen relations per split: {where}); pass "
        "unseen_relations='drop' to drop their triples"
    )
