"""``from_triples`` and the coverage-preserving ``split`` (circuitkg.data.build)."""

import math
import warnings

import numpy as np
import pytest
import torch
from hypothesis import given
from hypothesis import strategies as st

from circuitkg.data import KnowledgeGraph, UnknownNameError, from_triples, split
from circuitkg.data.loaders import UnseenTriplesWarning

TRIPLES = [("alice", "knows", "bob"), ("bob", "knows", "carol"), ("carol", "likes", "alice")]

triple_lists = st.lists(
    st.tuples(
        st.sampled_from([f"e{i}" for i in range(12)]),
        st.sampled_from([f"r{i}" for i in range(4)]),
        st.sampled_from([f"e{i}" for i in range(12)]),
    ),
    min_size=1,
    max_size=120,
)
ratio_sets = st.sampled_from([(0.8, 0.1, 0.1), (0.5, 0.25, 0.25), (0.9, 0.1), (1.0, 0.0, 0.0)])


def labelled(kg: KnowledgeGraph, split_name: str) -> list[tuple[str, str, str]]:
    return [
        (kg.id_to_entity[h], kg.id_to_relation[r], kg.id_to_entity[t])
        for h, r, t in kg.split(split_name).tolist()
    ]


def names_of(rows) -> tuple[set, set]:
    rows = np.asarray(rows, dtype=object).reshape(-1, 3)
    return set(rows[:, 0]) | set(rows[:, 2]), set(rows[:, 1])


# --- from_triples -----------------------------------------------------------------------------------
def test_from_list_round_trips_names_and_sorts_vocabularies():
    kg = KnowledgeGraph.from_triples(TRIPLES, name="people")
    assert kg.name == "people"
    assert kg.id_to_entity == ["alice", "bob", "carol"]
    assert kg.id_to_relation == ["knows", "likes"]
    assert list(kg.splits) == ["train"]
    assert labelled(kg, "train") == TRIPLES
    assert kg.train.dtype == torch.long


@given(triple_lists)
def test_from_triples_round_trips_any_list(rows):
    kg = from_triples(rows)
    assert labelled(kg, "train") == rows
    entities, relations = names_of(rows)
    assert set(kg.id_to_entity) == entities and set(kg.id_to_relation) == relations


def test_numpy_and_dataframe_inputs_agree_with_lists():
    pd = pytest.importorskip("pandas")
    expected = labelled(from_triples(TRIPLES), "train")
    assert labelled(from_triples(np.array(TRIPLES)), "train") == expected
    named = pd.DataFrame(
        {"tail": [t for *_, t in TRIPLES], "head": [h for h, *_ in TRIPLES],
         "relation": [r for _, r, _ in TRIPLES], "extra": 1}
    )  # fmt: skip
    assert labelled(from_triples(named), "train") == expected
    unnamed = pd.DataFrame(TRIPLES, columns=["a", "b", "c"])
    assert labelled(from_triples(unnamed), "train") == expected


def test_named_splits_use_the_train_vocabulary():
    kg = from_triples({"train": TRIPLES, "valid": [TRIPLES[0]], "test": TRIPLES[1:]})
    assert list(kg.splits) == ["train", "valid", "test"]
    assert labelled(kg, "valid") == [TRIPLES[0]]
    assert labelled(kg, "test") == TRIPLES[1:]
    assert len(kg.known_triples()) == 6


def test_unseen_names_raise_with_close_names():
    with pytest.raises(UnknownNameError) as err:
        from_triples(
            {"train": TRIPLES, "test": [("alicia", "knows", "dave"), ("bob", "like", "carol")]}
        )
    message = str(err.value)
    assert "'test'" in message and "'alicia'" in message and "'dave'" in message
    assert "did you mean 'alice'" in message and "'like'" in message and "'likes'" in message


def test_unseen_drop_warns_and_drops():
    with pytest.warns(UnseenTriplesWarning, match="test: 1 of 2"):
        kg = from_triples(
            {"train": TRIPLES, "test": [("alice", "knows", "dave"), TRIPLES[2]]}, unseen="drop"
        )
    assert labelled(kg, "test") == [TRIPLES[2]]


def test_given_vocabularies_preserve_ids():
    e2id = {"carol": 0, "alice": 1, "bob": 2, "dave": 3}
    r2id = {"likes": 0, "knows": 1}
    kg = from_triples(TRIPLES, entity_to_id=e2id, relation_to_id=r2id)
    assert kg.entity_to_id == e2id and kg.relation_to_id == r2id
    assert kg.train[0].tolist() == [1, 1, 2]
    with pytest.raises(UnknownNameError, match="given vocabulary"):
        from_triples([("eve", "knows", "bob")], entity_to_id=e2id, relation_to_id=r2id)
    with pytest.raises(ValueError, match="ids 0.."):
        from_triples(TRIPLES, entity_to_id={"alice": 0, "bob": 2, "carol": 3}, relation_to_id=r2id)
    with pytest.raises(ValueError, match="both"):
        from_triples(TRIPLES, entity_to_id=e2id)


@pytest.mark.parametrize(
    ("bad", "match"),
    [
        ([("a", "r")], "shape"),
        ([("a", "r", "")], "non-empty string"),
        ([("a", "r", 3)], "non-empty string"),
        (torch.zeros(2, 3, dtype=torch.long), "tensor"),
    ],
)
def test_malformed_triples_raise(bad, match):
    with pytest.raises((ValueError, TypeError), match=match):
        from_triples(bad)


def test_named_splits_need_train_and_exclude_ratios():
    with pytest.raises(ValueError, match="include 'train'"):
        from_triples({"valid": TRIPLES})
    with pytest.raises(ValueError, match="one set"):
        from_triples({"train": TRIPLES}, splits=(0.8, 0.2))
    with pytest.raises(ValueError, match="unseen"):
        from_triples(TRIPLES, unseen="keep")


def test_from_triples_with_ratios_splits():
    rows = [(f"e{i % 20}", f"r{i % 3}", f"e{(i * 7) % 20}") for i in range(100)]
    kg = from_triples(rows, splits=(0.8, 0.1, 0.1), seed=3)
    assert [len(kg.split(s)) for s in ("train", "valid", "test")] == [80, 10, 10]
    again = from_triples(rows, splits=(0.8, 0.1, 0.1), seed=3)
    assert all(torch.equal(kg.split(s), again.split(s)) for s in kg.splits)


# --- split ------------------------------------------------------------------------------------------
@given(triple_lists, ratio_sets, st.integers(0, 2**16))
def test_split_covers_train_keeps_rows_and_sizes(rows, ratios, seed):
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        parts = split(rows, ratios, seed=seed)
    names = ("train", "valid", "test") if len(ratios) == 3 else ("train", "test")
    assert tuple(parts) == names
    # every row lands in exactly one split
    together = sorted(map(tuple, np.concatenate([parts[s] for s in names]).tolist()))
    assert together == sorted(rows)
    # train covers every name of the others
    entities, relations = names_of(parts["train"])
    for s in names[1:]:
        e, r = names_of(parts[s])
        assert e <= entities and r <= relations
    # sizes: floor(ratio * n) for the others unless the covering set forced train to grow
    n = len(rows)
    expected = [math.floor(r * n) for r in ratios[1:]]
    if not caught:
        assert [len(parts[s]) for s in names[1:]] == expected
    else:
        assert "cover" in str(caught[0].message)
        assert all(len(parts[s]) <= e for s, e in zip(names[1:], expected, strict=True))
    # seeded
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        again = split(rows, ratios, seed=seed)
    assert all(np.array_equal(parts[s], again[s]) for s in names)
    # the result is valid input to from_triples (no unseen names)
    kg = from_triples(parts)
    assert sum(len(t) for t in kg.splits.values()) == n


def test_split_differs_across_seeds_and_kg_input_keeps_vocabulary():
    rows = [(f"e{i % 10}", f"r{i % 3}", f"e{(i * 7) % 10}") for i in range(200)]
    kg = from_triples({"train": rows[:150], "test": rows[150:]})
    a, b = split(kg, seed=0), split(kg, seed=1)
    assert a.entity_to_id == kg.entity_to_id and a.relation_to_id == kg.relation_to_id
    assert [len(a.split(s)) for s in ("train", "valid", "test")] == [160, 20, 20]
    assert not torch.equal(a.train, b.train)
    assert torch.equal(a.train, split(kg, seed=0).train)
    covered = set(a.train[:, [0, 2]].flatten().tolist())
    assert set(a.known_triples()[:, [0, 2]].flatten().tolist()) <= covered
    assert set(a.valid[:, 1].tolist()) | set(a.test[:, 1].tolist()) <= set(a.train[:, 1].tolist())


def test_split_warns_when_the_cover_exceeds_train():
    rows = [(f"a{i}", "r", f"b{i}") for i in range(10)]  # every triple is needed for coverage
    with pytest.warns(UserWarning, match="cover"):
        parts = split(rows, (0.5, 0.25, 0.25))
    assert len(parts["train"]) == 10 and len(parts["valid"]) == len(parts["test"]) == 0


@pytest.mark.parametrize(
    ("ratios", "error"),
    [
        ((0.5, 0.5, 0.5), ValueError),
        ((1.0,), ValueError),
        ((0.8, -0.1, 0.3), ValueError),
        (3, TypeError),
    ],
)
def test_split_rejects_bad_ratios(ratios, error):
    with pytest.raises(error):
        split(TRIPLES, ratios)
