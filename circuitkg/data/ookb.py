"""Out-of-knowledge-base (OOKB) entity splits: WN11 with entities unseen in training (Hamaguchi et al. 2017).

Hamaguchi, Oiwa, Shimbo and Matsumoto (IJCAI 2017), *Knowledge transfer for out-of-knowledge-base
entities: a graph neural network approach*, released nine splits of WN11 (``takuo-h/GNN-for-OOKB``):
``head``, ``tail`` or ``both`` (where the unseen entities of the test triples sit), each with 1000,
3000 or 5000 unseen entities. A split folder holds

* ``train``: ``head<TAB>relation<TAB>tail`` integer ids, the training graph (no unseen entity);
* ``aux``: the auxiliary edges that connect each unseen entity to the graph (seen at test time only;
  some join two unseen entities);
* ``dev``, ``test``: labelled triples ``head<TAB>relation<TAB>tail<TAB>label``, label ``1``
  (true) or ``0`` (corrupted; the issue text's ``±1``), for triple classification; the test
  triples all involve an unseen entity, a few dev triples do too.

Names are in ``vocab/entity`` and ``vocab/relation`` (``name<TAB>id``), optional here.

**Ids.** :func:`load_ookb` renumbers the entities: the *seen* ones (those of ``train``), in
increasing original id, are ``0 .. num_seen - 1``; the others (in ``aux``, ``dev`` or ``test``
only), in increasing original id, follow. The training graph is therefore a prefix of the graph with
aux edges, which is what lets an encoder with learned rows for seen entities
(:mod:`circuitkg.encoders.mean`) embed the others from their edges after
``model.on(split.graph_with_aux())``. Relation ids are the file's (``vocab/relation`` order).
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from torch import Tensor

from circuitkg.data.kg import (
    DataArgumentError,
    DataFormatError,
    DatasetNotFoundError,
    KnowledgeGraph,
)
from circuitkg.data.loaders import DATA_ENV_VAR, SUFFIXES, _data_root, _shown
from circuitkg.data.seen_first import SeenFirstSplit
from circuitkg.data.text import read_text

__all__ = [
    "OOKB_DATASETS",
    "OOKB_NAMES",
    "OOKB_SETTINGS",
    "OOKB_SIZES",
    "LabelledTriples",
    "OOKBSplit",
    "load_ookb",
    "load_ookb_named",
]

#: Dataset name -> folder under the data root.
OOKB_DATASETS = {"wn11": "wn11-hamaguchi"}
OOKB_SETTINGS = ("head", "tail", "both")
OOKB_SIZES = (1000, 3000, 5000)
_SUFFIXES = ("", ".gz") + SUFFIXES
#: the splits by one name each, ``<dataset>-<setting>-<size>`` (``wn11-head-1000``), as the
#: command line takes them
OOKB_NAMES = tuple(f"{d}-{s}-{n}" for d in OOKB_DATASETS for s in OOKB_SETTINGS for n in OOKB_SIZES)


@dataclass(frozen=True, eq=False)
class LabelledTriples:
    """``triples`` ``(n, 3)`` int64 and their ``labels`` ``(n,)`` bool (True: a true triple)."""

    triples: Tensor
    labels: Tensor

    def __post_init__(self) -> None:
        if (
            self.triples.dim() != 2
            or self.triples.shape[1] != 3
            or self.labels.shape != (len(self.triples),)
        ):
            raise DataArgumentError(
                f"labelled triples: (n, 3) triples and (n,) labels, got "
                f"{tuple(self.triples.shape)} and {tuple(self.labels.shape)}"
            )

    def __len__(self) -> int:
        return len(self.triples)

    @property
    def positives(self) -> Tensor:
        return self.triples[self.labels]


@dataclass(frozen=True, repr=False, eq=False)
class OOKBSplit(SeenFirstSplit):
    """One OOKB split (module docstring for ids).

    ``train`` is a :class:`KnowledgeGraph` over the ``num_seen`` seen entities (split ``train``;
    ``valid``: the true dev triples among seen entities; ``test``: empty), what a model is created
    from and trained on. ``aux`` holds the auxiliary edges, ``dev`` and ``test`` the labelled
    triples, all in the ids of :meth:`graph_with_aux` (seen entities first).
    """

    name: str
    setting: str
    size: int
    dev: LabelledTriples
    test: LabelledTriples

    def statistics(self) -> dict[str, int | str]:
        return {
            "name": self.name,
            "num_seen": self.num_seen,
            "num_unseen": self.num_entities - self.num_seen,
            "num_relations": self.num_relations,
            "num_train": len(self.train.train),
            "num_aux": len(self.aux),
            "num_dev": len(self.dev),
            "num_test": len(self.test),
            "num_test_unseen": int(self.unseen(self.test.triples).sum()),
        }

    def __repr__(self) -> str:
        stats = ", ".join(f"{k}={v}" for k, v in self.statistics().items() if k != "name")
        return f"OOKBSplit({self.name!r}, {stats})"


def load_ookb(
    name: str = "wn11",
    setting: str = "head",
    size: int = 1000,
    root: str | os.PathLike[str] | None = None,
) -> OOKBSplit:
    """Load an OOKB split (``load_ookb("wn11", setting="head", size=1000)``).

    **Where.** The folder ``wn11-hamaguchi/<setting>-<size>/`` under ``root``, or under
    ``<root>/ookb/``; ``root`` defaults to the environment variable ``CIRCUITKG_DATA``. Files are
    ``train``, ``aux``, ``dev`` and ``test``, plain or gzip (``.gz``, or the suffixes
    :func:`circuitkg.data.load_folder` takes). Names come from ``wn11-hamaguchi/vocab/`` when present
    (else the ids, as text).

    **Errors.** A malformed line (wrong field count, a non-integer id, a label other than 0/1 or
    ±1, an id absent from the vocabulary) raises :class:`DataFormatError` naming file and line; a
    dev/test relation absent from train raises too. Cost: linear in the file sizes.
    """
    key = name.lower()
    if key not in OOKB_DATASETS:
        raise DataArgumentError(f"unknown OOKB dataset {name!r}; known: {sorted(OOKB_DATASETS)}")
    if setting not in OOKB_SETTINGS:
        raise DataArgumentError(f"unknown OOKB setting {setting!r}; choose one of {OOKB_SETTINGS}")
    if size not in OOKB_SIZES:
        raise DataArgumentError(f"unknown OOKB size {size!r}; choose one of {OOKB_SIZES}")
    base = _dataset_root(OOKB_DATASETS[key], root)
    folder = base / f"{setting}-{size}"
    if not folder.is_dir():
        raise DatasetNotFoundError(f"OOKB split {setting}-{size} not found: no folder {folder}")
    files = {s: _file(folder, s) for s in ("train", "aux", "dev", "test")}
    train = _read_ints(files["train"], 3)
    aux = _read_ints(files["aux"], 3)
    dev, test = _read_ints(files["dev"], 4), _read_ints(files["test"], 4)
    entity_vocab = _read_vocab(base / "vocab", "entity")
    relation_vocab = _read_vocab(base / "vocab", "relation")

    seen = np.unique(train.values[:, [0, 2]])
    everything = np.concatenate([aux.values[:, [0, 2]].ravel()] + [f.values[:, [0, 2]].ravel()
                                                                  for f in (dev, test)])  # fmt: skip
    unseen = np.setdiff1d(np.unique(everything), seen)
    order = np.concatenate([seen, unseen])
    if entity_vocab is not None:
        for file in (train, aux, dev, test):
            file.check_ids(entity_vocab, (0, 2), "entity")
    entity_names = tuple(
        entity_vocab[int(i)] if entity_vocab is not None else str(int(i)) for i in order
    )
    if relation_vocab is not None:
        if sorted(relation_vocab) != list(range(len(relation_vocab))):
            raise DataFormatError(
                f"{base / 'vocab'}: relation ids are not 0..{len(relation_vocab) - 1}"
            )
        relations = [relation_vocab[i] for i in range(len(relation_vocab))]
        for file in (train, aux, dev, test):
            file.check_ids(relation_vocab, (1,), "relation")
    else:
        relations = [str(i) for i in range(int(train.values[:, 1].max()) + 1)]
    known = set(np.unique(train.values[:, 1]).tolist())
    for file in (aux, dev, test):
        file.check_known_relations(known)
    local = {int(e): i for i, e in enumerate(order)}
    remap = np.vectorize(local.__getitem__, otypes=[np.int64])

    def encode(values: np.ndarray) -> Tensor:
        if len(values) == 0:
            return torch.zeros(0, 3, dtype=torch.long)
        out = values[:, :3].copy()
        out[:, [0, 2]] = remap(values[:, [0, 2]])
        return torch.from_numpy(out)

    def labelled(file: _IntFile) -> LabelledTriples:
        return LabelledTriples(encode(file.values), torch.from_numpy(file.values[:, 3] > 0))

    dev_l, test_l = labelled(dev), labelled(test)
    num_seen = len(seen)
    seen_only = ~((dev_l.triples[:, [0, 2]] >= num_seen).any(1))
    seen_names = list(entity_names[:num_seen])
    train_kg = KnowledgeGraph.from_vocabularies(
        f"{key}-{setting}-{size}",
        seen_names,
        relations,
        {
            "train": encode(train.values),
            "valid": dev_l.triples[seen_only & dev_l.labels],
            "test": torch.zeros(0, 3, dtype=torch.long),
        },
    )
    return OOKBSplit(
        name=f"{key}-{setting}-{size}", setting=setting, size=size, train=train_kg,
        aux=encode(aux.values), dev=dev_l, test=test_l, entity_names=entity_names,
    )  # fmt: skip


def load_ookb_named(name: str, root: str | os.PathLike[str] | None = None) -> OOKBSplit:
    """The split named ``<dataset>-<setting>-<size>`` (:data:`OOKB_NAMES`, case-insensitive)."""
    key = name.lower()
    if key not in OOKB_NAMES:
        raise DataArgumentError(f"unknown OOKB split {name!r}; known: {', '.join(OOKB_NAMES)}")
    dataset, setting, size = key.rsplit("-", 2)
    return load_ookb(dataset, setting, int(size), root)


def _dataset_root(folder: str, root: str | os.PathLike[str] | None) -> Path:
    data_root = _data_root(root)
    if data_root is None:
        raise DatasetNotFoundError(
            f"OOKB data is not shipped with circuitkg: pass root=<folder containing {folder}/> or "
            f"set the environment variable {DATA_ENV_VAR}"
        )
    for candidate in (data_root / folder, data_root / "ookb" / folder):
        if candidate.is_dir():
            return candidate
    source = "root" if root is not None else f"${DATA_ENV_VAR}"
    raise DatasetNotFoundError(
        f"OOKB data not found: no folder {data_root / folder} or {data_root / 'ookb' / folder} "
        f"(from {source})"
    )


def _file(folder: Path, split: str) -> Path:
    present = [folder / (split + s) for s in _SUFFIXES if (folder / (split + s)).is_file()]
    if not present:
        raise DatasetNotFoundError(f"{folder}: no file for {split!r} (looked for {split}[.gz])")
    if len(present) > 1:
        raise DataFormatError(f"{folder}: several files for {split!r}: {present}")
    return present[0]


class _IntFile:
    """The non-blank lines of a tab-separated file of ``fields`` integers (the last one a 0/1 or
    ±1 label when ``fields == 4``), as an ``(n, fields)`` int64 array with line numbers."""

    def __init__(self, path: Path, fields: int) -> None:
        self.path = path
        self.lines = read_text(path).replace("\r\n", "\n").split("\n")
        rows, self.numbers = [], []
        for i, line in enumerate(self.lines):
            if not line or line.isspace():
                continue
            parts = line.split("\t")
            if len(parts) != fields:
                self.fail(i + 1, f"expected {fields} tab-separated fields, got {len(parts)}")
            try:
                row = [int(p) for p in parts]
            except ValueError:
                self.fail(i + 1, "expected integer fields")
            if fields == 4 and row[3] not in (0, 1, -1):
                self.fail(i + 1, f"a label must be 1 or 0 (or -1), got {parts[3]!r}")
            if any(v < 0 for v in row[:3]):
                self.fail(i + 1, "ids must be non-negative")
            rows.append(row)
            self.numbers.append(i + 1)
        self.values = np.array(rows, dtype=np.int64).reshape(-1, fields)

    def fail(self, lineno: int, why: str):
        raise DataFormatError(f"{self.path}:{lineno}: {why}: {_shown(self.lines[lineno - 1])}")

    def check_ids(self, vocab: dict[int, str], columns: tuple[int, ...], kind: str) -> None:
        for column in columns:
            bad = ~np.isin(self.values[:, column], np.fromiter(vocab, dtype=np.int64))
            if bad.any():
                row = int(bad.nonzero()[0][0])
                self.fail(
                    self.numbers[row], f"{kind} id {self.values[row, column]} is not in vocab"
                )

    def check_known_relations(self, known: set[int]) -> None:
        bad = ~np.isin(self.values[:, 1], np.array(sorted(known), dtype=np.int64))
        if bad.any():
            row = int(bad.nonzero()[0][0])
            self.fail(self.numbers[row], f"relation {self.values[row, 1]} does not occur in train")


def _read_ints(path: Path, fields: int) -> _IntFile:
    return _IntFile(path, fields)


def _read_vocab(folder: Path, kind: str) -> dict[int, str] | None:
    """``id -> name`` from ``vocab/<kind>[.gz]`` (``name<TAB>id`` lines), or None when absent."""
    present = [folder / (kind + s) for s in ("", ".gz") if (folder / (kind + s)).is_file()]
    if not present:
        return None
    path = present[0]
    lines = read_text(path).replace("\r\n", "\n").split("\n")
    vocab: dict[int, str] = {}
    for i, line in enumerate(lines):
        if not line or line.isspace():
            continue
        name, sep, index = line.rpartition("\t")
        if not sep or not name or not index.strip().lstrip("-").isdigit():
            raise DataFormatError(f"{path}:{i + 1}: expected name<TAB>integer id: {_shown(line)}")
        if int(index) in vocab:
            raise DataFormatError(f"{path}:{i + 1}: id {index} given twice: {_shown(line)}")
        vocab[int(index)] = name
    return vocab
