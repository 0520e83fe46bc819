"""Loading triple files and the shipped and external benchmark datasets."""

from __future__ import annotations

import gzip
import time
import warnings
from pathlib import Path

import pytest
import torch

from circuitkg.data import (
    DataFormatError,
    KnowledgeGraph,
    UnknownNameError,
    UnseenTriplesWarning,
    available_datasets,
    load,
    load_folder,
)

SHARED_KG = Path(__file__).resolve().parents[2] / "shared" / "data" / "kg"
needs_shared = pytest.mark.skipif(not SHARED_KG.is_dir(), reason=f"{SHARED_KG} not present")

TRAIN = "a\tlikes\tb\nb\tlikes\tc\nc\thates\ta\n"
VALID = "a\thates\tc\n"
TEST = "b\tlikes\ta\n"


def write_folder(folder: Path, train=TRAIN, valid=VALID, test=TEST, suffix=".txt") -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    for split, text in (("train", train), ("valid", valid), ("test", test)):
        data = text.encode()
        path = folder / f"{split}{suffix}"
        path.write_bytes(gzip.compress(data) if suffix.endswith(".gz") else data)
    return folder


def names(kg: KnowledgeGraph, split: str) -> list[tuple[str, str, str]]:
    return [
        (kg.id_to_entity[h], kg.id_to_relation[r], kg.id_to_entity[t])
        for h, r, t in kg.split(split).tolist()
    ]


@pytest.mark.parametrize("suffix", [".txt", ".txt.gz", ".tsv", ".tsv.gz"])
def test_load_folder_round_trips_names(tmp_path, suffix):
    kg = load_folder(write_folder(tmp_path / "toy", suffix=suffix))
    assert kg.name == "toy"
    assert kg.id_to_entity == ["a", "b", "c"]  # sorted ids
    assert kg.id_to_relation == ["hates", "likes"]
    assert names(kg, "train") == [("a", "likes", "b"), ("b", "likes", "c"), ("c", "hates", "a")]
    assert names(kg, "valid") == [("a", "hates", "c")]
    assert names(kg, "test") == [("b", "likes", "a")]
    assert kg.train.dtype == torch.long and kg.train.shape == (3, 3)
    assert (kg.num_entities, kg.num_relations) == (3, 2)
    assert kg.known_triples().shape == (5, 3)


def test_ids_are_sorted_independent_of_triple_order(tmp_path):
    """The toy triples above come sorted already; reversed, the ids must not change."""
    shuffled = "".join(reversed(TRAIN.splitlines(keepends=True)))
    assert shuffled.startswith("c\thates\ta")
    kg = load_folder(write_folder(tmp_path / "toy", train=shuffled))
    assert kg.id_to_entity == ["a", "b", "c"] and kg.id_to_relation == ["hates", "likes"]
    assert names(kg, "train") == [("c", "hates", "a"), ("b", "likes", "c"), ("a", "likes", "b")]


def test_crlf_and_blank_lines_are_tolerated(tmp_path):
    train = "\r\n" + TRAIN.replace("\n", "\r\n") + "\n   \n\t\n"
    kg = load_folder(write_folder(tmp_path / "toy", train=train))
    assert names(kg, "train") == [("a", "likes", "b"), ("b", "likes", "c"), ("c", "hates", "a")]


def test_empty_split_file_gives_empty_tensor(tmp_path):
    kg = load_folder(write_folder(tmp_path / "toy", valid=""))
    assert kg.valid.shape == (0, 3) and kg.valid.dtype == torch.long


@pytest.mark.parametrize(
    "bad_line",
    ["a\tlikes", "a\tlikes\tb\tc", "a\t\tb", "a\tlikes\t ", "a likes b"],
)
def test_malformed_line_names_file_line_and_content(tmp_path, bad_line):
    folder = write_folder(tmp_path / "toy", train=TRAIN + "\n" + bad_line + "\n")
    with pytest.raises(DataFormatError) as info:
        load_folder(folder)
    message = str(info.value)
    assert f"{folder / 'train.txt'}:5:" in message  # line 4 is blank
    assert repr(bad_line) in message
    assert isinstance(info.value, ValueError)


def test_long_malformed_line_is_truncated(tmp_path):
    bad_line = "x" * 1000
    folder = write_folder(tmp_path / "toy", test=bad_line)
    with pytest.raises(DataFormatError, match=r"test\.txt:1: .*'x{80}\.\.\.'$"):
        load_folder(folder)


def test_unseen_triples_are_dropped_with_one_warning(tmp_path):
    valid = VALID + "a\tloves\tb\nz\tlikes\ta\n"
    test = TEST + "a\tlikes\tq\n"
    folder = write_folder(tmp_path / "toy", valid=valid, test=test)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        kg = load_folder(folder)
    assert len(caught) == 1
    assert issubclass(caught[0].category, UnseenTriplesWarning)
    assert "valid: 2 of 3" in str(caught[0].message)
    assert "test: 1 of 2" in str(caught[0].message)
    assert names(kg, "valid") == [("a", "hates", "c")]
    assert names(kg, "test") == [("b", "likes", "a")]


def test_unseen_keep_builds_the_vocabularies_over_all_splits(tmp_path):
    """The published protocol: nothing dropped, no warning; an entity or relation seen only in
    valid/test gets an id of its own (sorted order over all splits) and its triples stay."""
    valid = VALID + "a\tloves\tb\nz\tlikes\ta\n"
    test = TEST + "a\tlikes\tq\n"
    folder = write_folder(tmp_path / "toy", valid=valid, test=test)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        kg = load_folder(folder, unseen="keep")
    dropped = load_folder_quietly(folder)
    assert set(kg.id_to_entity) == set(dropped.id_to_entity) | {"z", "q"}
    assert kg.id_to_entity == sorted(kg.id_to_entity)
    assert "loves" in kg.relation_to_id
    assert ("z", "likes", "a") in names(kg, "valid") and ("a", "loves", "b") in names(kg, "valid")
    assert ("a", "likes", "q") in names(kg, "test")
    assert names(kg, "train") == names(dropped, "train")
    assert len(kg.split("valid")) == len(dropped.split("valid")) + 2


def load_folder_quietly(folder):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return load_folder(folder)


def test_no_warning_when_nothing_is_unseen(tmp_path):
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        load_folder(write_folder(tmp_path / "toy"))


@pytest.mark.parametrize(
    ("test", "name", "line"),
    [("b\tlikes\ta\n\nz\tlikes\ta\n", "entity 'z'", 3), ("a\tloves\tb\n", "relation 'loves'", 1)],
)
def test_unseen_raise_names_first_offender_and_line(tmp_path, test, name, line):
    folder = write_folder(tmp_path / "toy", test=test)
    with pytest.raises(DataFormatError, match=rf"test\.txt:{line}: .*{name} does not occur"):
        load_folder(folder, unseen="raise")


def test_missing_split_and_bad_policy(tmp_path):
    folder = write_folder(tmp_path / "toy")
    (folder / "valid.txt").unlink()
    with pytest.raises(FileNotFoundError, match="valid.txt.gz"):
        load_folder(folder)
    with pytest.raises(ValueError, match="unseen"):
        load_folder(folder, unseen="ignore")
    with pytest.raises(FileNotFoundError):
        load_folder(tmp_path / "nowhere")


def test_ambiguous_split_files_raise(tmp_path):
    folder = write_folder(tmp_path / "toy")
    (folder / "train.tsv").write_text(TRAIN)
    with pytest.raises(DataFormatError, match="several files"):
        load_folder(folder)


def test_negatives_are_extra_splits_under_the_same_policy(tmp_path):
    folder = write_folder(tmp_path / "toy")
    (folder / "valid_negatives.txt").write_text("a\tlikes\tc\nz\tlikes\ta\n")
    with pytest.warns(UnseenTriplesWarning, match="valid_negatives: 1 of 2"):
        kg = load_folder(folder)
    assert names(kg, "valid_negatives") == [("a", "likes", "c")]
    assert kg.known_triples().shape == (5, 3)  # negatives are not known true triples


def test_lookups_and_unknown_names(tmp_path):
    kg = load_folder(write_folder(tmp_path / "toy"))
    assert kg.entity_id("c") == 2 and kg.relation_id("likes") == 1
    with pytest.raises(UnknownNameError, match="unknown relation 'like'; did you mean 'likes'"):
        kg.relation_id("like")
    with pytest.raises(KeyError, match="unknown entity 'nobody'"):
        kg.entity_id("nobody")
    with pytest.raises(UnknownNameError, match="no split 'dev'"):
        kg.split("dev")


def test_knowledge_graph_validates_ids():
    with pytest.raises(ValueError, match="out of range"):
        KnowledgeGraph(
            "bad", {"a": 0}, ["a"], {"r": 0}, ["r"], {"train": torch.tensor([[0, 0, 1]])}
        )
    with pytest.raises(ValueError, match="inverse"):
        KnowledgeGraph("bad", {"a": 1}, ["a"], {"r": 0}, ["r"], {})


@pytest.mark.parametrize(
    ("name", "entities", "relations", "sizes"),
    [
        ("umls", 135, 46, (5216, 652, 661)),
        ("kinship", 104, 25, (8544, 1068, 1074)),
        ("nations", 14, 55, (1592, 199, 201)),
    ],
)
def test_shipped_datasets(name, entities, relations, sizes):
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # nothing unseen in these
        kg = load(name.upper())
    assert kg.name == name
    assert (kg.num_entities, kg.num_relations) == (entities, relations)
    assert (len(kg.train), len(kg.valid), len(kg.test)) == sizes


def test_umls_statistics_and_repr():
    kg = load("umls")
    assert kg.statistics() == {
        "name": "umls",
        "num_entities": 135,
        "num_relations": 46,
        "num_train": 5216,
        "num_valid": 652,
        "num_test": 661,
    }
    assert repr(kg) == (
        "KnowledgeGraph('umls', entities=135, relations=46, train=5216, valid=652, test=661)"
    )
    assert kg.relation_id("isa") == kg.id_to_relation.index("isa")


def test_unknown_dataset_and_missing_root(tmp_path, monkeypatch):
    monkeypatch.delenv("CIRCUITKG_DATA", raising=False)
    with pytest.raises(ValueError, match="umls, kinship, nations, fb15k-237"):
        load("freebase")
    with pytest.raises(FileNotFoundError, match="CIRCUITKG_DATA"):
        load("wn18rr")
    with pytest.raises(FileNotFoundError, match=str(tmp_path / "wn18rr")):
        load("wn18rr", root=tmp_path)
    assert available_datasets() == ["umls", "kinship", "nations"]


def test_root_from_environment(tmp_path, monkeypatch):
    write_folder(tmp_path / "codex-s")
    monkeypatch.setenv("CIRCUITKG_DATA", str(tmp_path))
    assert load("codex-s").name == "codex-s"
    assert available_datasets() == ["umls", "kinship", "nations", "codex-s"]


@needs_shared
def test_fb15k_237_loads_fast():
    start = time.perf_counter()
    with pytest.warns(UnseenTriplesWarning, match=r"valid: 9 of 17535, test: 28 of 20466"):
        kg = load("fb15k-237", root=SHARED_KG)
    elapsed = time.perf_counter() - start
    assert (kg.num_entities, kg.num_relations) == (14505, 237)
    assert (len(kg.train), len(kg.valid), len(kg.test)) == (272115, 17526, 20438)
    assert elapsed < 5.0, f"loading FB15k-237 took {elapsed:.2f} s"


@needs_shared
def test_codex_s_has_negative_splits():
    kg = load("codex-s", root=SHARED_KG)
    assert set(kg.splits) == {"train", "valid", "test", "valid_negatives", "test_negatives"}
    assert len(kg.split("valid_negatives")) == 1827
