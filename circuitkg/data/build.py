"""Knowledge graphs from in-memory labelled triples, and a seeded coverage-preserving split.

``from_triples(triples)`` builds a :class:`KnowledgeGraph` from a list of ``(head, relation, tail)``
strings, an ``(N, 3)`` numpy array of strings or a pandas DataFrame (columns ``head``,
``relation``, ``tail``, else its first three), either as one set (the train split, or split by
``splits=(0.8, 0.1, 0.1)``) or as named splits ``{"train": ..., "valid": ..., "test": ...}``.
``split(kg_or_triples)`` splits triples so that every entity and relation of valid and test occurs
in train, as PyKEEN's coverage split does.
"""

from __future__ import annotations

import difflib
import math
import sys
import warnings
from collections.abc import Mapping, Sequence
from typing import Any, Literal

import numpy as np
import torch

from circuitkg.data.kg import DataArgumentError, KnowledgeGraph, UnknownNameError

__all__ = ["from_triples", "split", "split_names", "to_labelled"]

#: the split names :func:`split` gives, by the number of ratios
_SPLIT_NAMES = {2: ("train", "test"), 3: ("train", "valid", "test")}
_SHOWN_NAMES = 5  # unseen names an error message lists
_DATAFRAME_COLUMNS = ("head", "relation", "tail")


def split_names(num_ratios: int) -> tuple[str, ...]:
    """The split names :func:`split` gives for ``num_ratios`` ratios (2 or 3)."""
    try:
        return _SPLIT_NAMES[num_ratios]
    except KeyError:
        raise DataArgumentError(
            f"ratios must have 2 (train, test) or 3 (train, valid, test) entries, got {num_ratios}"
        ) from None


def to_labelled(triples: Any, what: str = "triples") -> np.ndarray:
    """``triples`` (a sequence of ``(h, r, t)``, an ``(N, 3)`` array or a pandas DataFrame) as an
    ``(N, 3)`` numpy array of Python strings; :class:`ValueError` naming ``what`` otherwise."""
    if _is_dataframe(triples):
        columns = list(triples.columns)
        if all(c in columns for c in _DATAFRAME_COLUMNS):
            frame = triples[list(_DATAFRAME_COLUMNS)]
        elif len(columns) >= 3:
            frame = triples.iloc[:, :3]
        else:
            raise DataArgumentError(f"{what}: a DataFrame needs 3 columns, got {columns}")
        array = frame.to_numpy(dtype=object)
    elif isinstance(triples, torch.Tensor):
        raise TypeError(
            f"{what}: expected labelled triples (strings), got a tensor; integer triples go "
            "straight into KnowledgeGraph(splits=...)"
        )
    else:
        array = np.asarray(triples, dtype=object)
        if array.size == 0:
            array = array.reshape(0, 3)
    if array.ndim != 2 or array.shape[1] != 3:
        raise DataArgumentError(
            f"{what}: expected (head, relation, tail) triples, got shape {tuple(array.shape)}"
        )
    out = np.empty(array.shape, dtype=object)
    for index, value in np.ndenumerate(array):
        if isinstance(value, np.str_):
            value = str(value)
        if not isinstance(value, str) or not value or value.isspace():
            row = index[0]
            raise DataArgumentError(
                f"{what}: row {row} {tuple(array[row])!r}: every name must be a non-empty string"
            )
        out[index] = value
    return out


def from_triples(
    triples: Any,
    name: str = "custom",
    splits: Sequence[float] | None = None,
    *,
    seed: int = 0,
    unseen: Literal["raise", "drop"] = "raise",
    entity_to_id: Mapping[str, int] | None = None,
    relation_to_id: Mapping[str, int] | None = None,
) -> KnowledgeGraph:
    """A :class:`KnowledgeGraph` from labelled triples.

    ``triples`` is either one set of triples (a list of ``(head, relation, tail)`` strings, an
    ``(N, 3)`` numpy array or a pandas DataFrame) or a mapping from split names to such sets, which
    must include ``"train"``. One set becomes the train split, or, with ``splits`` (ratios such as
    ``(0.8, 0.1, 0.1)``), is divided by :func:`split` with ``seed``.

    The vocabularies are the names in train, ids in sorted order (as :func:`load_folder`), unless
    ``entity_to_id`` and ``relation_to_id`` give them (ids ``0..n-1``; then every split may only use
    their names). A name of another split that is not in the vocabulary raises
    :class:`UnknownNameError` listing such names and close known names (``unseen="raise"``), or
    its triples are dropped with an :class:`UnseenTriplesWarning` (``unseen="drop"``).
    """
    if unseen not in ("raise", "drop"):
        raise DataArgumentError(f"unseen must be 'raise' or 'drop', got {unseen!r}")
    if isinstance(triples, Mapping):
        if splits is not None:
            raise DataArgumentError("splits= divides one set of triples; got named splits already")
        if "train" not in triples:
            raise DataArgumentError(f"named splits must include 'train'; got {list(triples)}")
        labelled = {str(s): to_labelled(t, f"split {s!r}") for s, t in triples.items()}
    else:
        labelled = {"train": to_labelled(triples)}
        if splits is not None:
            labelled = split(labelled["train"], splits, seed=seed)

    given = (entity_to_id is not None, relation_to_id is not None)
    if any(given) and not all(given):
        raise DataArgumentError("give both entity_to_id and relation_to_id, or neither")
    if all(given):
        entities = _vocabulary("entity", entity_to_id)
        relations = _vocabulary("relation", relation_to_id)
        check = labelled
    else:
        train = labelled["train"]
        entities = sorted(set(train[:, 0]).union(train[:, 2]))
        relations = sorted(set(train[:, 1]))
        check = {s: t for s, t in labelled.items() if s != "train"}
    e2id = {e: i for i, e in enumerate(entities)}
    r2id = {r: i for i, r in enumerate(relations)}

    encoded: dict[str, torch.Tensor] = {}
    dropped: dict[str, str] = {}
    for split_name, rows in labelled.items():
        ids = _encode(rows, e2id, r2id)
        seen = (ids >= 0).all(axis=1)
        if split_name in check and not seen.all():
            if unseen == "raise":
                _raise_unseen(split_name, rows, ids, e2id, r2id, vocab_given=all(given))
            dropped[split_name] = f"{int((~seen).sum())} of {len(rows)}"
            ids = ids[seen]
        encoded[split_name] = torch.from_numpy(ids)
    if dropped:
        from circuitkg.data.loaders import UnseenTriplesWarning

        counts = ", ".join(f"{s}: {c}" for s, c in dropped.items())
        warnings.warn(
            f"{name}: dropped triples with an entity or relation absent from the vocabulary "
            f"({counts})",
            UnseenTriplesWarning,
            stacklevel=2,
        )
    return KnowledgeGraph(
        name=name,
        entity_to_id=e2id,
        id_to_entity=list(entities),
        relation_to_id=r2id,
        id_to_relation=list(relations),
        splits=encoded,
    )


def split(
    kg_or_triples: Any,
    ratios: Sequence[float] = (0.8, 0.1, 0.1),
    seed: int = 0,
) -> Any:
    """Split triples at random (seeded) so that train covers every entity and relation.

    ``ratios`` has 2 (train, test) or 3 (train, valid, test) non-negative entries summing to 1.
    As PyKEEN's coverage split: for every entity and relation, the first triple containing it in a
    seeded shuffle goes to train; the rest of the shuffle fills train up to its size, then valid
    and test. Sizes are ``floor(ratio * N)`` for valid and test, and train takes the remainder;
    when the covering triples alone outnumber train's share, train grows and the other splits
    shrink in proportion (a warning says so).

    A :class:`KnowledgeGraph` gives a :class:`KnowledgeGraph` with the same vocabularies whose
    splits divide all its train, valid and test triples. Labelled triples (anything
    :func:`from_triples` takes as one set) give a dict of split name to ``(N, 3)`` string array,
    which :func:`from_triples` accepts as named splits.
    """
    ratios = _check_ratios(ratios)
    names = split_names(len(ratios))
    if isinstance(kg_or_triples, KnowledgeGraph):
        kg = kg_or_triples
        ids = kg.known_triples().numpy()
        parts = _coverage_split(ids, ratios, seed)
        return KnowledgeGraph(
            name=kg.name,
            entity_to_id=dict(kg.entity_to_id),
            id_to_entity=list(kg.id_to_entity),
            relation_to_id=dict(kg.relation_to_id),
            id_to_relation=list(kg.id_to_relation),
            splits={s: torch.from_numpy(ids[p]) for s, p in zip(names, parts, strict=True)},
        )
    rows = to_labelled(kg_or_triples)
    _, entity_ids = np.unique(rows[:, [0, 2]].astype(str), return_inverse=True)
    _, relation_ids = np.unique(rows[:, 1].astype(str), return_inverse=True)
    entity_ids = entity_ids.reshape(-1, 2)
    ids = np.stack([entity_ids[:, 0], relation_ids.reshape(-1), entity_ids[:, 1]], axis=1)
    parts = _coverage_split(ids, ratios, seed)
    return {s: rows[p] for s, p in zip(names, parts, strict=True)}


def _coverage_split(ids: np.ndarray, ratios: tuple[float, ...], seed: int) -> list[np.ndarray]:
    """Row indices of ``ids`` (``(N, 3)`` int) per split, train first, covering train."""
    n = len(ids)
    rng = np.random.default_rng(seed)
    order = rng.permutation(n)
    shuffled = ids[order]
    # the first position (in the shuffle) of each entity and relation: the covering triples
    first = np.full(n, False)
    if n:
        for columns in ((0, 2), (1,)):
            # row-major, so the first occurrence of a value is in the earliest triple
            _, index = np.unique(shuffled[:, columns].reshape(-1), return_index=True)
            first[index // len(columns)] = True
    sizes = [math.floor(r * n) for r in ratios[1:]]
    sizes.insert(0, n - sum(sizes))
    num_cover = int(first.sum())
    if num_cover > sizes[0]:
        rest, others = n - num_cover, sum(sizes[1:])
        scaled = [math.floor(s * rest / others) if others else 0 for s in sizes[1:]]
        warnings.warn(
            f"split: {num_cover} triples are needed to cover every entity and relation in train, "
            f"more than its share {sizes[0]} of {n}; the other splits shrink to {scaled}",
            UserWarning,
            stacklevel=3,
        )
        sizes = [n - sum(scaled), *scaled]
    train = np.concatenate([order[first], order[~first][: sizes[0] - num_cover]])
    remaining = order[~first][sizes[0] - num_cover :]
    parts = [np.sort(train)]
    start = 0
    for size in sizes[1:]:
        parts.append(np.sort(remaining[start : start + size]))
        start += size
    return parts


def _check_ratios(ratios: Sequence[float]) -> tuple[float, ...]:
    try:
        values = tuple(float(r) for r in ratios)
    except TypeError:
        raise TypeError(f"ratios must be a sequence of 2 or 3 numbers, got {ratios!r}") from None
    split_names(len(values))
    if any(not math.isfinite(r) or r < 0 for r in values) or not math.isclose(
        sum(values), 1.0, abs_tol=1e-6
    ):
        raise DataArgumentError(f"ratios must be non-negative and sum to 1, got {ratios!r}")
    return values


def _vocabulary(kind: str, to_id: Mapping[str, int]) -> list[str]:
    names = sorted(to_id, key=to_id.__getitem__)
    if [to_id[n] for n in names] != list(range(len(names))):
        raise DataArgumentError(f"{kind}_to_id must map its names to the ids 0..{len(names) - 1}")
    return names


def _encode(rows: np.ndarray, e2id: dict[str, int], r2id: dict[str, int]) -> np.ndarray:
    """``(N, 3)`` int64 ids, ``-1`` where a name is not in the vocabulary."""
    columns = [
        np.fromiter((to_id.get(v, -1) for v in rows[:, c]), dtype=np.int64, count=len(rows))
        for c, to_id in ((0, e2id), (1, r2id), (2, e2id))
    ]
    return np.stack(columns, axis=1) if len(rows) else np.empty((0, 3), dtype=np.int64)


def _raise_unseen(
    split_name: str,
    rows: np.ndarray,
    ids: np.ndarray,
    e2id: dict[str, int],
    r2id: dict[str, int],
    vocab_given: bool,
) -> None:
    source = "the given vocabulary" if vocab_given else "train"
    parts = []
    for kind, columns, to_id in (("entity", (0, 2), e2id), ("relation", (1,), r2id)):
        missing: list[str] = []
        for c in columns:
            for value in rows[ids[:, c] < 0, c]:
                if value not in missing:
                    missing.append(value)
        if not missing:
            continue
        shown = []
        for value in missing[:_SHOWN_NAMES]:
            close = difflib.get_close_matches(value, to_id, n=3)
            hint = f" (did you mean {', '.join(map(repr, close))}?)" if close else ""
            shown.append(f"{value!r}{hint}")
        more = f" and {len(missing) - _SHOWN_NAMES} more" if len(missing) > _SHOWN_NAMES else ""
        plural = {"entity": "entities", "relation": "relations"}[kind] if len(missing) > 1 else kind
        parts.append(f"{len(missing)} {plural}: {', '.join(shown)}{more}")
    raise UnknownNameError(
        f"split {split_name!r} uses names absent from {source}: {'; '.join(parts)} "
        "(pass unseen='drop' to drop those triples)"
    )


def _is_dataframe(value: Any) -> bool:
    """Whether ``value`` is a pandas DataFrame, without importing pandas when it is not loaded."""
    pandas = sys.modules.get("pandas")
    return pandas is not None and isinstance(value, pandas.DataFrame)
