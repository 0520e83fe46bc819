"""The ``circuitkg`` command, run in-process through ``main([...])``."""

import json

import pytest

from circuitkg.cli import main
from circuitkg.data import load

pytestmark = pytest.mark.usefixtures("one_thread")


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    """A one-epoch nations run folder, shared by the tests that read a checkpoint."""
    out = tmp_path_factory.mktemp("run")
    code = main(
        ["train", "--dataset", "nations", "--model", "complex", "--form", "squared", "--rank", "4",
         "--epochs", "1", "--eval-every", "1", "--out", str(out), "--quiet", "--threads", "1"]
    )  # fmt: skip
    assert code == 0
    return out


def test_train_prints_test_metrics_and_writes_checkpoints(run):
    metrics = json.loads((run / "metrics.json").read_text())
    assert set(metrics["test"]) >= {"mrr", "hits@1", "hits@3", "hits@10", "log_likelihood", "ece"}
    assert (run / "best" / "model.safetensors").is_file()
    assert (run / "last" / "training.safetensors").is_file()


def test_train_output(capsys):
    args = ["train", "--dataset", "nations", "--model", "cp", "--form", "score", "--objective", "ce",
            "--rank", "4", "--epochs", "1", "--reg", "n3", "0.01", "--quiet"]  # fmt: skip
    assert main(args) == 0
    out = capsys.readouterr().out
    assert "test: MRR" in out and "Hits@10" in out and "log-likelihood" not in out


def test_resume_continues_a_run(run, tmp_path, capsys):
    out = tmp_path / "resumed"
    assert main(["train", "--resume", str(run), "--epochs", "2", "--out", str(out), "--quiet"]) == 0
    assert "resuming" in capsys.readouterr().out
    assert json.loads((out / "last" / "config.json").read_text())["state"]["epoch"] == 2
    assert (out / "best" / "config.json").is_file()


def test_evaluate_a_checkpoint(run, capsys):
    assert main(["evaluate", "--checkpoint", str(run), "--split", "valid"]) == 0
    out = capsys.readouterr().out
    assert "valid: MRR" in out and "mean log-likelihood" in out and "ECE" in out


def test_predict_top_k_by_name(run, capsys):
    assert (
        main(["predict", "--checkpoint", str(run), "--s", "usa", "--r", "embassy", "-k", "3"]) == 0
    )
    lines = capsys.readouterr().out.strip().splitlines()
    assert lines[0].startswith("top 3 for (usa, embassy, ?)") and len(lines) == 4
    probs = [float(line.split()[1]) for line in lines[1:]]
    assert probs == sorted(probs, reverse=True) and all(0 < p <= 1 for p in probs)
    assert main(["predict", "--checkpoint", str(run), "--r", "embassy", "--o", "uk"]) == 0
    assert "(?, embassy, uk)" in capsys.readouterr().out
    assert (
        main(["predict", "--checkpoint", str(run), "--s", "usa", "--r", "embassy", "--o", "uk"])
        == 0
    )
    out = capsys.readouterr().out
    assert "p(o | s, r)" in out and "log p(s, r, o)" in out


@pytest.fixture(scope="module")
def score_run(tmp_path_factory):
    """A one-epoch score-form run: unnormalised, so it cannot be sampled."""
    out = tmp_path_factory.mktemp("score")
    code = main(
        ["train", "--dataset", "nations", "--model", "cp", "--form", "score", "--objective", "ce",
         "--rank", "4", "--epochs", "1", "--eval-every", "0", "--out", str(out), "--quiet"]
    )  # fmt: skip
    assert code == 0
    return out


def sample_lines(capsys, args):
    assert main(["sample", *args]) == 0
    captured = capsys.readouterr()
    return captured.out.splitlines(), captured.err


def test_sample_writes_n_named_triples(run, capsys):
    lines, err = sample_lines(capsys, ["--checkpoint", str(run), "-n", "300"])
    assert len(lines) == 300
    kg = load("nations")
    for line in lines:
        s, r, o = line.split("\t")
        assert s in kg.entity_to_id and r in kg.relation_to_id and o in kg.entity_to_id
    assert err.startswith("sampled 300 triples in ") and "samples/s" in err
    assert len(err.splitlines()) == 1


def test_sample_respects_given_variables(run, capsys):
    args = ["--checkpoint", str(run), "-n", "200", "--given", "s=usa", "--given", "r=embassy"]
    lines, _ = sample_lines(capsys, args)
    rows = [line.split("\t") for line in lines]
    assert len(rows) == 200 and all(row[:2] == ["usa", "embassy"] for row in rows)
    assert len({row[2] for row in rows}) > 1  # the object is drawn
    lines, _ = sample_lines(capsys, ["--checkpoint", str(run), "-n", "200", "--given", "o=uk"])
    assert all(line.endswith("\tuk") for line in lines)


def test_sample_seed_reproduces_and_out_writes_a_file(run, tmp_path, capsys):
    args = ["--checkpoint", str(run), "-n", "200"]
    first, _ = sample_lines(capsys, [*args, "--seed", "3"])
    again, _ = sample_lines(capsys, [*args, "--seed", "3", "--out", "-"])
    other, _ = sample_lines(capsys, [*args, "--seed", "4"])
    assert first == again and first != other
    out = tmp_path / "samples.tsv"
    lines, err = sample_lines(capsys, [*args, "--seed", "3", "--out", str(out)])
    assert lines == [] and str(out) in err
    assert out.read_text().splitlines() == first


@pytest.mark.parametrize(
    ("given", "message"),
    [
        (["--given", "s"], "--given takes VAR=NAME"),
        (["--given", "x=usa"], "--given takes VAR=NAME"),
        (["--given", "s="], "--given takes VAR=NAME"),
        (["--given", "s=usa", "--given", "s=uk"], "--given sets 's' twice"),
        (["--given", "s=usaa"], "unknown entity 'usaa'; did you mean 'usa'?"),
        (["--given", "r=embasy"], "unknown relation 'embasy'"),
        (["-n", "-1"], "-n must be non-negative"),
    ],
)
def test_sample_bad_options_exit_2(run, given, message, capsys):
    assert main(["sample", "--checkpoint", str(run), "-n", "5", *given]) == 2
    captured = capsys.readouterr()
    assert captured.out == "" and message in captured.err and len(captured.err.splitlines()) == 1


def test_sample_a_score_checkpoint_exits_2(score_run, capsys):
    assert main(["sample", "--checkpoint", str(score_run), "-n", "5"]) == 2
    err = capsys.readouterr().err
    assert "score-form model" in err and "cannot be sampled" in err and "Traceback" not in err


def test_info(capsys):
    assert main(["info", "--dataset", "nations", "--model", "complex", "--rank", "10"]) == 0
    out = capsys.readouterr().out
    assert "num_entities: 14" in out and "complex (squared, rank 10): 1,380 parameters" in out


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (
            ["train", "--dataset", "nation", "--model", "cp"],
            "unknown dataset 'nation'; did you mean 'nations'?",
        ),
        (
            ["train", "--dataset", "nations", "--model", "compex"],
            "unknown model 'compex'; did you mean 'complex'?",
        ),
        (
            ["train", "--dataset", "nations", "--model", "cp", "--form", "squard"],
            "unknown form 'squard'",
        ),
        (
            ["train", "--dataset", "nations", "--model", "transe", "--form", "squared"],
            "TransE has no 'squared' form",
        ),
        (["info", "--dataset", "fb15k-237", "--data-root", "/nonexistent"], "not found"),
        (["evaluate", "--checkpoint", "/nonexistent"], "no checkpoint"),
    ],
)
def test_unknown_names_exit_2_with_a_message(args, message, capsys):
    assert main(args) == 2
    err = capsys.readouterr().err
    assert message in err and "Traceback" not in err


def test_unknown_entity_or_relation(run, capsys):
    assert main(["predict", "--checkpoint", str(run), "--s", "usaa", "--r", "embassy"]) == 2
    assert "unknown entity 'usaa'; did you mean 'usa'?" in capsys.readouterr().err
    assert main(["predict", "--checkpoint", str(run), "--s", "usa", "--r", "embasy"]) == 2
    assert "unknown relation 'embasy'" in capsys.readouterr().err
