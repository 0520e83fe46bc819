"""OOKB splits (WN11, Hamaguchi et al. 2017): the loader, its error paths, triple classification's
thresholds against brute force, and the user flow from load to accuracy."""

import gzip
from pathlib import Path

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

import circuitkg as ckg
from circuitkg.data import DataFormatError, LabelledTriples, load_ookb
from circuitkg.eval import best_threshold, choose_thresholds, triple_classification

SHARED_OOKB = Path(__file__).resolve().parents[2] / "shared" / "data" / "ookb"
needs_shared = pytest.mark.skipif(
    not (SHARED_OOKB / "wn11-hamaguchi").is_dir(), reason=f"{SHARED_OOKB} not present"
)


# --- thresholds against brute force --------------------------------------------------------------
def accuracy_at(t, values, labels):
    return sum((v >= t) == y for v, y in zip(values, labels, strict=True))


def brute_force_best(values, labels):
    """Every threshold between, below and above the values, tried one by one."""
    points = sorted(set(values))
    trials = (
        [points[0] - 1] + points + [(a + b) / 2 for a, b in zip(points, points[1:], strict=False)]
    )
    trials.append(points[-1] + 1)
    return max(accuracy_at(t, values, labels) for t in trials)


@settings(max_examples=200)
@given(st.lists(st.tuples(st.integers(-4, 4), st.booleans()), min_size=1, max_size=12))
def test_best_threshold_matches_brute_force(rows):
    values = [v / 2 for v, _ in rows]  # ties are frequent
    labels = [y for _, y in rows]
    t, correct = best_threshold(torch.tensor(values), torch.tensor(labels))
    assert correct == brute_force_best(values, labels)
    assert correct == accuracy_at(t, values, labels)
    # the smallest threshold among the best candidates (distinct values and +inf)
    candidates = sorted(set(values)) + [float("inf")]
    first = next(c for c in candidates if accuracy_at(c, values, labels) == correct)
    assert t == first


@settings(max_examples=60)
@given(
    st.lists(
        st.tuples(st.integers(-3, 3), st.booleans(), st.integers(0, 2)), min_size=1, max_size=15
    )
)
def test_per_relation_thresholds_match_brute_force(rows):
    values = torch.tensor([v for v, _, _ in rows], dtype=torch.float64)
    labels = torch.tensor([y for _, y, _ in rows])
    relations = torch.tensor([r for _, _, r in rows])
    thresholds, overall = choose_thresholds(values, labels, relations, 4)
    assert thresholds[3] == overall  # relation 3 never occurs: the global threshold
    for r in range(3):
        mask = relations == r
        if mask.any():
            got = ((values[mask] >= thresholds[r]) == labels[mask]).sum()
            assert got == brute_force_best(values[mask].tolist(), labels[mask].tolist())
        else:
            assert thresholds[r] == overall


def test_triple_classification_on_a_model_with_known_scores():
    """DistMult with one-hot embeddings scores 1 on its training triples and 0 elsewhere."""
    kg_graph = ckg.encoders.Graph.from_triples(torch.tensor([[0, 0, 1], [1, 0, 2]]), 3, 1)
    model = ckg.models.create("distmult", kg_graph, rank=3, form="score").double()
    with torch.no_grad():
        model.entity.weight.copy_(torch.eye(3))
        model.relation.weight.fill_(1.0)
    triples = torch.tensor([[0, 0, 0], [1, 0, 1], [0, 0, 1], [2, 0, 0]])
    labels = torch.tensor([True, False, False, True])  # scores 1, 1, 0, 0
    data = LabelledTriples(triples, labels)
    result = triple_classification(model, dev=data, test=data)
    assert result.accuracy == result.dev_accuracy == 0.5
    with pytest.raises(ValueError, match="normalised form"):
        triple_classification(model, dev=data, test=data, criterion="conditional")


# --- the loader ----------------------------------------------------------------------------------
def write(path: Path, lines: list[str]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    with gzip.open(path, "wt") as f:
        f.write("\n".join(lines) + "\n")


def tiny_ookb(root: Path, **override: list[str]) -> Path:
    """Entities 10, 11, 12 seen; 20 and 21 unseen (21 only joined to 20)."""
    base = root / "wn11-hamaguchi"
    files = {
        "train": ["10\t0\t11", "11\t1\t12", "12\t0\t10"],
        "aux": ["20\t0\t10", "21\t1\t20"],
        "dev": ["10\t0\t11\t1", "10\t0\t12\t0", "20\t1\t11\t0"],
        "test": ["20\t0\t11\t1", "21\t1\t12\t0"],
    }
    files.update(override)
    for name, lines in files.items():
        write(base / "head-1000" / f"{name}.gz", lines)
    write(base / "vocab" / "entity.gz", [f"e{i}\t{i}" for i in (10, 11, 12, 20, 21, 30)])
    (base / "vocab" / "relation").write_text("r0\t0\nr1\t1")
    return root


def test_a_tiny_split_renumbers_seen_entities_first(tmp_path):
    split = load_ookb("wn11", "head", 1000, root=tiny_ookb(tmp_path))
    assert split.num_seen == 3 and split.num_entities == 5
    assert split.entity_names == ("e10", "e11", "e12", "e20", "e21")
    assert split.train.id_to_relation == ["r0", "r1"]
    assert split.train.train.tolist() == [[0, 0, 1], [1, 1, 2], [2, 0, 0]]
    assert split.aux.tolist() == [[3, 0, 0], [4, 1, 3]]
    assert split.dev.labels.tolist() == [True, False, False]
    assert split.train.valid.tolist() == [[0, 0, 1]]  # true dev triples among seen entities
    assert split.test.triples.tolist() == [[3, 0, 1], [4, 1, 2]]
    assert split.unseen(split.test.triples).all()
    graph = split.graph_with_aux()
    assert graph.num_nodes == 5 and graph.num_edges == 5 and graph.node_names[3] == "e20"


def test_the_user_flow_on_a_tiny_split(tmp_path):
    split = load_ookb("wn11", "head", 1000, root=tiny_ookb(tmp_path))
    model = ckg.models.create("complex", split.train, rank=2, form="squared", encoder="attention",
                              heads=2).double()  # fmt: skip
    bound = model.on(split.graph_with_aux())
    for criterion in ("score", "conditional"):
        result = triple_classification(bound, split, criterion=criterion)
        assert 0 <= result.accuracy <= 1 and result.num_test == 2
    ckg.testing.assert_normalised(ckg.compile(bound))


@pytest.mark.parametrize(
    ("override", "match"),
    [
        ({"train": ["10\t0\t11", "11\t1"]}, r"train\.gz:2: expected 3 tab-separated fields"),
        ({"aux": ["20\t0\tx"]}, r"aux\.gz:1: expected integer fields"),
        ({"dev": ["10\t0\t11\t1", "", "10\t0\t12\t7"]}, r"dev\.gz:3: a label must be 1 or 0"),
        ({"test": ["20\t0\t11"]}, r"test\.gz:1: expected 4 tab-separated fields"),
        ({"test": ["20\t0\t99\t1"]}, r"test\.gz:1: entity id 99 is not in vocab"),
        ({"dev": ["10\t5\t11\t1"]}, r"dev\.gz:1: relation id 5 is not in vocab"),
        ({"test": ["20\t-1\t11\t1"]}, r"test\.gz:1: ids must be non-negative"),
    ],
)
def test_malformed_lines_name_file_and_line(tmp_path, override, match):
    with pytest.raises(DataFormatError, match=match):
        load_ookb("wn11", "head", 1000, root=tiny_ookb(tmp_path, **override))


def test_missing_data_and_bad_names(tmp_path, monkeypatch):
    monkeypatch.delenv("CIRCUITKG_DATA", raising=False)
    with pytest.raises(FileNotFoundError, match="CIRCUITKG_DATA"):
        load_ookb("wn11")
    with pytest.raises(FileNotFoundError, match="OOKB data not found"):
        load_ookb("wn11", root=tmp_path)
    tiny_ookb(tmp_path / "ookb")  # found under <root>/ookb/ too
    assert load_ookb("wn11", root=tmp_path).num_seen == 3
    monkeypatch.setenv("CIRCUITKG_DATA", str(tmp_path))
    assert load_ookb("wn11").num_seen == 3
    with pytest.raises(FileNotFoundError, match="tail-1000"):
        load_ookb("wn11", "tail", 1000)
    (tmp_path / "ookb" / "wn11-hamaguchi" / "head-1000" / "aux.gz").unlink()
    with pytest.raises(FileNotFoundError, match="'aux'"):
        load_ookb("wn11")
    for bad, match in [({"name": "fb15k"}, "unknown OOKB dataset"), ({"setting": "left"}, "setting"),
                       ({"size": 7}, "size")]:  # fmt: skip
        with pytest.raises(ValueError, match=match):
            load_ookb(**bad)


@needs_shared
def test_the_released_wn11_split():
    split = load_ookb("wn11", setting="head", size=1000, root=SHARED_OOKB)
    stats = split.statistics()
    assert stats["num_relations"] == 11 and stats["num_unseen"] > 0
    assert stats["num_test_unseen"] == stats["num_test"]  # every test triple has an unseen entity
    graph = split.graph_with_aux()
    assert graph.num_nodes == split.num_entities and graph.relation_names[0] == "_type_of"
    assert not (split.train.train >= split.num_seen).any()
    assert split.unseen(split.aux).all()


# --- the margin objective --------------------------------------------------------------------------
def test_margin_loss_against_its_definition():
    from circuitkg.train.objectives import corrupt, make_objective, margin_loss

    graph = ckg.encoders.Graph.from_triples(torch.tensor([[0, 0, 1], [1, 1, 2], [2, 0, 0]]), 4, 2)
    model = ckg.models.create("transe", graph, rank=3, form="score", encoder="mean").double()
    compiled = ckg.compile(model)
    triples = graph.edges
    negatives = corrupt(triples, 4, torch.Generator().manual_seed(3), negatives=2)
    changed = (negatives != triples.repeat(2, 1)).sum(1)
    assert bool((changed <= 1).all()) and bool(
        (negatives[:, 1] == triples.repeat(2, 1)[:, 1]).all()
    )
    table = model.encoded_table.full()
    g = model.relation.full()

    def score(x):
        return -((table[x[:, 0]] + g[x[:, 1]] - table[x[:, 2]]) ** 2).sum(1)

    expected = torch.relu(0.5 - score(triples).repeat(2) + score(negatives)).mean()
    got = margin_loss(compiled, triples, 0.5, torch.Generator().manual_seed(3), negatives=2)
    assert torch.allclose(got, expected)
    objective = make_objective("margin", seed=1)
    first, second = objective(compiled, triples), objective(compiled, triples)
    again = make_objective("margin", seed=1)
    assert torch.equal(first, again(compiled, triples)) and torch.equal(
        second, again(compiled, triples)
    )
    squared = ckg.compile(ckg.models.create("distmult", graph, rank=2, form="squared"))
    with pytest.raises(ValueError, match="score form"):
        margin_loss(squared, triples)
