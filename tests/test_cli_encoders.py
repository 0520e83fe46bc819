"""The ``circuitkg`` command with graph encoders: --encoder flags, inductive datasets, --graph."""

import json
import time

import numpy as np
import pytest

import circuitkg as ckg
from circuitkg.cli import main
from circuitkg.data import load

pytestmark = pytest.mark.usefixtures("one_thread")


@pytest.fixture(scope="module")
def encoded_run(tmp_path_factory):
    """A one-epoch UMLS run of a squared ComplEx whose entity table ReFactor computes."""
    out = tmp_path_factory.mktemp("encoded")
    code = main(
        ["train", "--dataset", "umls", "--form", "squared", "--rank", "4", "--epochs", "1",
         "--batch-size", "512", "--eval-every", "0", "--encoder", "refactor", "--layers", "2",
         "--layer-n3", "0.01", "--out", str(out), "--quiet", "--threads", "1"]
    )  # fmt: skip
    assert code == 0
    return out


@pytest.fixture(scope="module")
def lookup_run(tmp_path_factory):
    out = tmp_path_factory.mktemp("lookup")
    code = main(
        ["train", "--dataset", "nations", "--rank", "4", "--epochs", "1", "--eval-every", "0",
         "--out", str(out), "--quiet", "--threads", "1"]
    )  # fmt: skip
    assert code == 0
    return out


@pytest.fixture(scope="module")
def graph_file(tmp_path_factory):
    """A small new graph over UMLS relations, with new entity names."""
    path = tmp_path_factory.mktemp("graph") / "new.txt"
    rows = [("aa", "isa", "bb"), ("bb", "isa", "cc"), ("cc", "interacts_with", "aa"),
            ("dd", "location_of", "aa"), ("aa", "affects", "dd")]  # fmt: skip
    path.write_text("".join("\t".join(row) + "\n" for row in rows))
    return path


def _error(capsys) -> str:
    err = capsys.readouterr().err.strip()
    assert err.startswith("circuitkg: error:") and len(err.splitlines()) == 1, err
    return err


def test_encoder_flags_reach_the_checkpoint(encoded_run):
    config = json.loads((encoded_run / "best" / "config.json").read_text())
    kwargs = config["train"]["model_kwargs"]
    assert kwargs == {"encoder": "refactor", "encoder_options": {"layers": 2, "layer_n3": 0.01}}
    assert (encoded_run / "best" / "graph.safetensors").is_file()
    assert ckg.load(encoded_run / "best").model.encoded_table.encoder.layer_n3 == 0.01


def test_evaluate_predict_sample_an_encoded_checkpoint(encoded_run, capsys):
    assert main(["evaluate", "--checkpoint", str(encoded_run), "--no-calibration"]) == 0
    assert "test: MRR" in capsys.readouterr().out
    args = [
        "predict",
        "--checkpoint",
        str(encoded_run),
        "--s",
        "bacterium",
        "--r",
        "isa",
        "-k",
        "2",
    ]
    assert main(args) == 0
    assert capsys.readouterr().out.startswith("top 2 for (bacterium, isa, ?)")
    assert main(["sample", "--checkpoint", str(encoded_run), "-n", "3"]) == 0
    lines = capsys.readouterr().out.strip().splitlines()
    kg = load("umls")
    assert len(lines) == 3 and all(line.split("\t")[1] in kg.relation_to_id for line in lines)


def test_graph_file_binds_the_model_to_a_new_graph(encoded_run, graph_file, tmp_path, capsys):
    assert main(["evaluate", "--checkpoint", str(encoded_run), "--graph", str(graph_file)]) == 0
    out = capsys.readouterr().out
    assert f"on the graph {graph_file} (4 entities)" in out and "mean log-likelihood" in out
    test = tmp_path / "test.txt"
    test.write_text("aa\tisa\tcc\n")
    args = ["evaluate", "--checkpoint", str(encoded_run), "--graph", str(graph_file),
            "--graph-test", str(test), "--no-calibration"]  # fmt: skip
    assert main(args) == 0
    assert "test: MRR" in capsys.readouterr().out
    args = ["predict", "--checkpoint", str(encoded_run), "--graph", str(graph_file),
            "--s", "aa", "--r", "isa", "-k", "10"]  # fmt: skip
    assert main(args) == 0
    lines = capsys.readouterr().out.strip().splitlines()
    assert lines[0].startswith("top 4 for (aa, isa, ?)")  # the new graph's 4 entities
    assert {line.split()[-1] for line in lines[1:]} == {"aa", "bb", "cc", "dd"}
    args = ["sample", "--checkpoint", str(encoded_run), "--graph", str(graph_file), "-n", "4"]
    assert main(args) == 0
    rows = [line.split("\t") for line in capsys.readouterr().out.strip().splitlines()]
    assert len(rows) == 4 and all(r[0] in ["aa", "bb", "cc", "dd"] for r in rows)


def test_inductive_dataset_reports_on_the_inference_graph(tmp_path, capsys):
    start = time.perf_counter()
    args = ["train", "--dataset", "FB237_v1", "--encoder", "refactor", "--layers", "2",
            "--rank", "8", "--epochs", "1", "--form", "score", "--objective", "ce",
            "--batch-size", "1024", "--eval-every", "0", "--out", str(tmp_path), "--quiet"]  # fmt: skip
    assert main(args) == 0
    assert time.perf_counter() - start < 30
    out = capsys.readouterr().out
    assert "inductive test on the inference graph fb237_v1_ind" in out
    assert "GraIL protocol (49 negatives per side, seed 0): Hits@10" in out
    metrics = json.loads((tmp_path / "metrics.json").read_text())
    assert {"test", "inductive_test", "grail_protocol"} <= set(metrics)
    assert 0 < metrics["grail_protocol"]["mrr"] <= 1 and "hits@10" in metrics["inductive_test"]
    assert metrics["grail_protocol"]["num_negatives"] == 49


def test_features_file(tmp_path, capsys):
    features = tmp_path / "features.npy"
    np.save(features, np.random.default_rng(0).normal(size=(14, 8)))  # nations: 14 entities
    base = ["train", "--dataset", "nations", "--encoder", "refactor", "--rank", "4", "--epochs",
            "1", "--form", "score", "--objective", "ce", "--eval-every", "0", "--quiet"]  # fmt: skip
    assert main([*base, "--features", str(features)]) == 0
    capsys.readouterr()
    np.save(features, np.zeros((13, 8)))
    assert main([*base, "--features", str(features)]) == 2
    assert str(features) in _error(capsys)


@pytest.mark.parametrize(
    "args, message",
    [
        (["train", "--dataset", "umls", "--layers", "3"], "--layers: encoder options without"),
        (["train", "--dataset", "umls", "--no-global-term"], "add --encoder"),
        (["train", "--dataset", "fb237_v1", "--epochs", "1"], "inductive dataset"),
        (["train", "--dataset", "umls", "--encoder", "refactor", "--layers", "0"], "--layers"),
        (["train", "--dataset", "umls", "--encoder", "refactor", "--layer-n3", "-1"], "--layer-n3"),
        (["train", "--dataset", "fb237_v1", "--encoder", "refactor", "--features", "lookup"],
         "inference graph"),
    ],
)  # fmt: skip
def test_usage_errors(args, message, capsys):
    assert main(args) == 2
    assert message in _error(capsys)


def test_unknown_relation_in_graph_file(encoded_run, tmp_path, capsys):
    bad = tmp_path / "bad.txt"
    bad.write_text("aa\tisa\tbb\naa\tisaa\tbb\n")
    assert main(["evaluate", "--checkpoint", str(encoded_run), "--graph", str(bad)]) == 2
    err = _error(capsys)
    assert f"{bad}:2:" in err and "'isaa'" in err and "did you mean 'isa'" in err


def test_malformed_graph_file(encoded_run, tmp_path, capsys):
    bad = tmp_path / "bad.txt"
    bad.write_text("aa\tisa\tbb\naa\tisa\n")
    assert main(["predict", "--checkpoint", str(encoded_run), "--graph", str(bad),
                 "--s", "aa", "--r", "isa"]) == 2  # fmt: skip
    assert f"{bad}:2:" in _error(capsys)


def test_graph_with_a_lookup_checkpoint(lookup_run, graph_file, capsys):
    args = ["predict", "--checkpoint", str(lookup_run), "--graph", str(graph_file),
            "--s", "aa", "--r", "isa"]  # fmt: skip
    assert main(args) == 2
    assert "lookup entity table" in _error(capsys)


def test_graph_test_needs_graph(encoded_run, graph_file, capsys):
    args = ["evaluate", "--checkpoint", str(encoded_run), "--graph-test", str(graph_file)]
    assert main(args) == 2
    assert "--graph-test goes with --graph" in _error(capsys)


def test_info_lists_encoders(capsys):
    assert main(["info"]) == 0
    encoders = [line for line in capsys.readouterr().out.splitlines() if "encoders:" in line]
    assert encoders and {"attention", "mean", "refactor"} <= set(
        encoders[0].split(":", 1)[1].replace(",", " ").split()
    )
    assert main(["info", "--dataset", "fb237_v1"]) == 0
    out = capsys.readouterr().out
    assert "inference_num_entities" in out and "refactor" in out


def test_ookb_split_reports_triple_classification_on_the_aux_graph(tmp_path, capsys):
    """``--dataset wn11-head-1000``: trained on the split's training graph, reported on the graph
    with aux edges (triple classification; conditional accuracy and log-likelihoods if normalised)."""
    from test_ookb import tiny_ookb

    root = tiny_ookb(tmp_path / "data")
    base = ["train", "--dataset", "wn11-head-1000", "--data-root", str(root), "--rank", "4",
            "--epochs", "1", "--eval-every", "0", "--quiet"]  # fmt: skip
    assert (
        main([*base, "--form", "squared", "--encoder", "attention", "--out", str(tmp_path / "sq")])
        == 0
    )
    out = capsys.readouterr().out
    assert "OOKB test on wn11-head-1000 with aux edges (5 entities, 2 unseen" in out
    metrics = json.loads((tmp_path / "sq" / "metrics.json").read_text())["ookb_test"]
    assert metrics["num_test"] == 2 and 0 <= metrics["accuracy"] <= 1
    assert metrics["test_log_likelihood"] < 0 and "conditional_accuracy" in metrics
    args = [*base, "--model", "transe", "--form", "score", "--objective", "margin",
            "--encoder", "mean", "--out", str(tmp_path / "score")]  # fmt: skip
    assert main(args) == 0
    metrics = json.loads((tmp_path / "score" / "metrics.json").read_text())["ookb_test"]
    assert "conditional_accuracy" not in metrics and 0 <= metrics["accuracy"] <= 1
    assert main(base) == 2  # a lookup entity table cannot embed the unseen entities
    assert "add --encoder" in capsys.readouterr().err
