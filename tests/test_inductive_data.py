"""GraIL inductive splits (loading, unseen relations, isolated nodes), the sampled ranking
protocol against brute force, and the tiny inductive split strategy."""

from __future__ import annotations

import gzip
import math
from pathlib import Path

import pytest
import torch
from hypothesis import find, given, settings

from circuitkg.data import (
    INDUCTIVE_DATASETS,
    DataFormatError,
    InductiveSplit,
    load_inductive,
)
from circuitkg.errors import CircuitKGError
from circuitkg.eval import (
    FilterIndex,
    evaluate_sampled_ranking,
    sample_negatives,
    uniform_log_likelihood,
)
from circuitkg.testing import tiny_inductive_splits

PACKAGE_GRAIL = Path(__file__).resolve().parents[1] / "circuitkg" / "data" / "datasets" / "grail"
SHARED_GRAIL = Path(__file__).resolve().parents[2] / "shared" / "data" / "inductive" / "grail"
needs_shared = pytest.mark.skipif(not SHARED_GRAIL.is_dir(), reason=f"{SHARED_GRAIL} not present")
SPLITS = ("train", "valid", "test")


def line_count(path: Path) -> int:
    with gzip.open(path, "rt", encoding="utf-8") as f:
        return sum(1 for line in f if line.strip())


def raw_names(path: Path) -> set[str]:
    with gzip.open(path, "rt", encoding="utf-8") as f:
        rows = [line.rstrip("\n").split("\t") for line in f if line.strip()]
    return {name for h, _, t in rows for name in (h, t)}


def check_against_files(split: InductiveSplit, folder: Path) -> None:
    for kg, sub in ((split.train, split.name), (split.inference, split.name + "_ind")):
        for s in SPLITS:
            assert len(kg.split(s)) == line_count(folder / sub / f"{s}.txt.gz"), (sub, s)
    assert split.inference.id_to_relation == split.train.id_to_relation
    assert split.inference.relation_to_id == split.train.relation_to_id
    assert set(split.dropped.values()) == {0}


def test_fb237_v1_ships_and_matches_its_files():
    split = load_inductive("fb237_v1")
    check_against_files(split, PACKAGE_GRAIL)
    assert split.name == "fb237_v1" and split.inference.name == "fb237_v1_ind"
    assert not set(split.train.id_to_entity) & set(split.inference.id_to_entity)
    # the inference triples decode to the raw lines, relations through the training ids
    inf, tr = split.inference, split.train
    with gzip.open(PACKAGE_GRAIL / "fb237_v1_ind" / "test.txt.gz", "rt") as f:
        raw = [tuple(line.rstrip("\n").split("\t")) for line in f if line.strip()]
    decoded = [
        (inf.id_to_entity[h], tr.id_to_relation[r], inf.id_to_entity[t])
        for h, r, t in inf.test.tolist()
    ]
    assert decoded == raw
    assert split.isolated_entities() == []
    stats = split.statistics()
    assert (stats["train_num_entities"], stats["inference_num_entities"]) == (1594, 1093)
    assert (stats["num_relations"], stats["inference_num_test"]) == (180, 205)
    assert len(INDUCTIVE_DATASETS) == 12 == len(InductiveSplit.inductive_datasets())


def test_names_are_case_insensitive_and_unknown_names_fail():
    assert load_inductive("FB237_V1").name == "fb237_v1"
    with pytest.raises(ValueError, match="unknown inductive dataset"):
        load_inductive("fb237_v9")
    with pytest.raises(ValueError, match="unseen_relations"):
        load_inductive("fb237_v1", unseen_relations="raise")


def test_missing_external_pair_says_where_it_looked(tmp_path, monkeypatch):
    monkeypatch.delenv("CIRCUITKG_DATA", raising=False)
    with pytest.raises(FileNotFoundError, match="CIRCUITKG_DATA"):
        load_inductive("nell_v2")
    with pytest.raises(FileNotFoundError, match="nell_v2_ind"):
        load_inductive("NELL_v2", root=tmp_path)


@needs_shared
@pytest.mark.parametrize("name", INDUCTIVE_DATASETS)
def test_all_grail_pairs_load(name, monkeypatch):
    monkeypatch.setenv("CIRCUITKG_DATA", str(SHARED_GRAIL))
    split = load_inductive(name.lower())
    check_against_files(split, SHARED_GRAIL)
    # no valid/test entity outside its graph's train file in the released data
    ind = SHARED_GRAIL / f"{name}_ind"
    assert split.inference.num_entities == len(raw_names(ind / "train.txt.gz"))
    assert split.isolated_entities() == []


def write_pair(root: Path, name: str, files: dict[str, dict[str, str]]) -> Path:
    for sub, splits in files.items():
        folder = root / (name if sub == "train" else name + "_ind")
        folder.mkdir(parents=True, exist_ok=True)
        for s, text in splits.items():
            (folder / f"{s}.txt").write_text(text)
    return root


TRAIN_GRAPH = {"train": "a\tp\tb\nb\tq\tc\n", "valid": "a\tq\tc\n", "test": "c\tp\ta\n"}


def test_unseen_relations_raise_naming_them_or_are_dropped_and_counted(tmp_path):
    inference = {
        "train": "x\tp\ty\ny\tnew1\tz\nz\tq\tx\n",
        "valid": "x\tq\tz\n",
        "test": "x\tnew2\ty\ny\tp\tz\nz\tnew1\ty\n",
    }
    root = write_pair(tmp_path, "nell_v1", {"train": TRAIN_GRAPH, "ind": inference})
    with pytest.raises(DataFormatError, match="'new1', 'new2'") as err:
        load_inductive("nell_v1", root=root)
    assert isinstance(err.value, CircuitKGError)
    split = load_inductive("nell_v1", root=root, unseen_relations="drop")
    assert split.dropped["inference/train"] == 1
    assert split.dropped["inference/valid"] == 0
    assert split.dropped["inference/test"] == 2
    assert split.statistics()["dropped_inference_test"] == 2
    assert split.inference.id_to_relation == ["p", "q"] == split.train.id_to_relation
    assert len(split.inference.train) == 2 and len(split.inference.test) == 1


def test_test_entities_outside_the_inference_graph_are_isolated_nodes(tmp_path):
    inference = {"train": "x\tp\ty\n", "valid": "y\tq\tw\n", "test": "v\tp\tx\n"}
    root = write_pair(tmp_path, "nell_v1", {"train": TRAIN_GRAPH, "ind": inference})
    split = load_inductive("nell_v1", root=root)
    assert split.inference.id_to_entity == ["x", "y", "v", "w"]  # graph entities first
    assert split.isolated_entities() == ["v", "w"]
    assert split.statistics()["inference_num_isolated"] == 2


def test_malformed_line_names_file_and_line(tmp_path):
    inference = {"train": "x\tp\ty\nx\tp\n", "valid": "", "test": "x\tp\ty\n"}
    root = write_pair(tmp_path, "nell_v1", {"train": TRAIN_GRAPH, "ind": inference})
    with pytest.raises(DataFormatError, match=r"nell_v1_ind.train\.txt:2: expected 3"):
        load_inductive("nell_v1", root=root)


# --- the sampled ranking protocol -------------------------------------------------------------


def table_scorer(table: torch.Tensor):
    """score_all over a dense (n, m, n) score table."""

    def score_all(target, anchor, relation):
        if target == "o":
            return table[anchor, relation, :]
        return table[:, relation, anchor].T

    return score_all


def random_case(seed: int, n: int = 7, m: int = 2, num_known: int = 30, num_test: int = 12):
    gen = torch.Generator().manual_seed(seed)
    known = torch.stack(
        [
            torch.randint(n, (num_known,), generator=gen),
            torch.randint(m, (num_known,), generator=gen),
            torch.randint(n, (num_known,), generator=gen),
        ],
        dim=1,
    )
    test = known[:num_test]
    table = torch.randint(0, 3, (n, m, n), generator=gen).double()  # small range: many ties
    return n, known, test, table


def brute_force_rank(table, triple, negatives, side, tie) -> float:
    h, r, t = triple
    true = float(table[h, r, t])
    others = [float(table[h, r, e]) if side == "o" else float(table[e, r, t]) for e in negatives]
    greater = sum(1 for x in others if x > true)
    equal = sum(1 for x in others if x == true)
    return {"optimistic": 1 + greater, "pessimistic": 1 + greater + equal}.get(
        tie, 1 + greater + equal / 2
    )


@pytest.mark.parametrize("seed", range(4))
@pytest.mark.parametrize("tie", ["realistic", "optimistic", "pessimistic"])
def test_sampled_ranking_matches_brute_force(seed, tie):
    n, known, test, table = random_case(seed)
    known_set = {tuple(t) for t in known.tolist()}
    result = evaluate_sampled_ranking(
        table_scorer(table),
        test,
        known_triples=known,
        num_entities=n,
        num_negatives=9,
        seed=seed,
        batch_size=5,
        tie=tie,
    )
    all_ranks = []
    for side in ("o", "s"):
        negs = result.negatives[side]
        assert negs.shape == (len(test), 9)
        for i, (h, r, t) in enumerate(test.tolist()):
            valid = [
                e for e in range(n) if ((h, r, e) if side == "o" else (e, r, t)) not in known_set
            ]
            row = negs[i].tolist()
            if not valid:
                assert row == [-1] * 9
                row = []
            assert set(row) <= set(valid)
            rank = brute_force_rank(table, (h, r, t), row, side, tie)
            assert result.ranking.ranks[side][i].item() == rank
            all_ranks.append(rank)
    m = result.metrics
    assert m["num_queries"] == 2 * len(test)
    assert m["mrr"] == pytest.approx(sum(1 / x for x in all_ranks) / len(all_ranks))
    for k in (1, 3, 10):
        assert m[f"hits@{k}"] == pytest.approx(sum(x <= k for x in all_ranks) / len(all_ranks))


def test_negatives_are_seeded_and_independent_of_batch_size():
    n, known, test, table = random_case(0, n=30, num_known=60)
    run = lambda seed, bs: evaluate_sampled_ranking(  # noqa: E731
        table_scorer(table), test, known_triples=known, num_entities=n, seed=seed, batch_size=bs
    )
    a, b, c = run(0, 3), run(0, 100), run(1, 3)
    for side in ("o", "s"):
        assert torch.equal(a.negatives[side], b.negatives[side])
        assert torch.equal(a.ranking.ranks[side], b.ranking.ranks[side])
        assert not torch.equal(a.negatives[side], c.negatives[side])
    assert a.negatives["o"].shape == (len(test), 49)


def test_negatives_are_uniform_over_the_unfiltered_entities():
    # query (0, 0, ?) with answers {0, 2, 5} known among 8 entities: 5 valid corruptions
    n = 8
    known = torch.tensor([[0, 0, 0], [0, 0, 2], [0, 0, 5], [1, 0, 3]])
    triples = known[:1].repeat(400, 1)
    gen = torch.Generator().manual_seed(0)
    negs = sample_negatives(triples, known, n, "o", 49, gen)
    counts = torch.bincount(negs.flatten(), minlength=n)
    assert counts[[0, 2, 5]].tolist() == [0, 0, 0]
    expected = negs.numel() / 5
    chi2 = float(((counts[[1, 3, 4, 6, 7]] - expected) ** 2 / expected).sum())
    assert chi2 < 20.5  # 4 degrees of freedom, p ~ 4e-4
    # heads of (?, 0, 3): only entity 1 is known
    negs = sample_negatives(known[3:], known, n, "s", 200, gen)
    assert 1 not in negs.tolist()[0] and set(negs.tolist()[0]) == {0, 2, 3, 4, 5, 6, 7}


def test_rare_candidates_and_queries_without_any():
    # (0, 0, ?): every entity but 3 is a known answer, so rejection sampling keeps missing;
    # (1, 0, ?): every entity is a known answer, so there is no corruption at all
    n = 40
    known = torch.tensor(
        [[0, 0, e] for e in range(n) if e != 3] + [[1, 0, e] for e in range(n)], dtype=torch.long
    )
    triples = torch.tensor([[0, 0, 0], [1, 0, 1]])
    negs = sample_negatives(triples, known, n, "o", 49, torch.Generator().manual_seed(0))
    assert negs[0].tolist() == [3] * 49 and negs[1].tolist() == [-1] * 49
    table = torch.zeros(n, 1, n, dtype=torch.float64)
    table[:, :, 3] = 1.0  # the only corruption of (0, 0, ?) outscores the answer
    result = evaluate_sampled_ranking(
        table_scorer(table), triples, known_triples=known, num_entities=n
    )
    assert result.ranking.ranks["o"].tolist() == [50.0, 1.0]


def test_perfect_constant_and_reversed_scorers_on_fb237_v1():
    graph = load_inductive("fb237_v1").inference
    n, known = graph.num_entities, graph.known_triples()
    indices = {d: FilterIndex(known, d, n) for d in ("o", "s")}

    def truth(target, anchor, relation):
        rows, cols = indices[target].lookup(anchor, relation)
        scores = torch.zeros(len(anchor), n)
        scores[rows, cols] = 1.0
        return scores

    test = graph.test
    perfect = evaluate_sampled_ranking(truth, test, known_triples=known, num_entities=n)
    assert perfect.metrics["hits@10"] == 1.0 and perfect.metrics["mrr"] == 1.0
    assert perfect.metrics["num_queries"] == 2 * len(test)
    worst = evaluate_sampled_ranking(
        lambda *q: -truth(*q), test, known_triples=known, num_entities=n
    )
    assert worst.ranking.ranks_of().unique().tolist() == [50.0]
    assert worst.metrics["hits@10"] == 0.0
    constant = evaluate_sampled_ranking(
        lambda t, a, r: torch.zeros(len(a), n), test, known_triples=known, num_entities=n
    )
    assert constant.metrics["mean_rank"] == 25.5  # realistic ties: 1 + 49 / 2
    assert "49 negatives per side" in str(constant)


def test_uniform_log_likelihood():
    assert uniform_log_likelihood(10, 3) == pytest.approx(-math.log(300))
    graph = load_inductive("fb237_v1").inference
    value = uniform_log_likelihood(graph.num_entities, graph.num_relations)
    assert value == pytest.approx(-(2 * math.log(1093) + math.log(180)))


# --- the strategy ---------------------------------------------------------------------------


@given(tiny_inductive_splits())
def test_tiny_inductive_splits_are_valid(split):
    assert isinstance(split, InductiveSplit)
    assert split.inference.id_to_relation == split.train.id_to_relation
    assert not set(split.train.id_to_entity) & set(split.inference.id_to_entity)
    for kg in (split.train, split.inference):
        assert 1 <= kg.num_entities <= 5 and 1 <= kg.num_relations <= 3
        assert len(kg.test) >= 1
        known = kg.known_triples().tolist()
        assert len(known) == len({tuple(t) for t in known})  # splits are disjoint
    isolated = split.isolated_entities()
    assert set(isolated) <= set(split.inference.id_to_entity)


@pytest.mark.parametrize("feature", ["isolated", "self-loop", "repeated relation"])
def test_tiny_inductive_splits_reach_the_awkward_graphs(feature):
    def has(split: InductiveSplit) -> bool:
        graph = split.inference.train
        if feature == "isolated":
            return len(split.isolated_entities()) > 0
        if feature == "self-loop":
            return bool((graph[:, 0] == graph[:, 2]).any())
        pairs = graph[:, :2].tolist()  # one entity using one relation twice
        return len(pairs) > len({tuple(p) for p in pairs})

    find(tiny_inductive_splits(), has, settings=settings(database=None, max_examples=500))
