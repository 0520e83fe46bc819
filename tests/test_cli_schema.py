"""``circuitkg train/evaluate/predict/sample`` with a domain schema, on a synthetic typed KG.

The synthetic biomedical KG of :mod:`circuitkg.constraints.synthetic` is written as a dataset folder
named ``codex-s`` under a temporary data root (the CLI loads named datasets only), with its schema
as ``schema.json`` beside it.
"""

import json
import math
import shutil

import pytest
from circuitkg.constraints import biomedical_kg

from circuitkg.cli import main
from circuitkg.data import load

RUN = ["--dataset", "codex-s", "--model", "complex", "--form", "squared", "--rank", "4",
       "--epochs", "1", "--eval-every", "1", "--quiet", "--threads", "1"]  # fmt: skip


pytestmark = pytest.mark.usefixtures("one_thread")


def write_dataset(root, noise=0.0):
    """The synthetic KG as ``root/codex-s/{train,valid,test}.txt`` and ``root/schema.json``;
    returns ``(root, schema)``."""
    kg, schema = biomedical_kg(num_triples=600, noise=noise, seed=0)
    folder = root / "codex-s"
    folder.mkdir(parents=True)
    for split in ("train", "valid", "test"):
        lines = [
            f"{kg.id_to_entity[s]}\t{kg.id_to_relation[r]}\t{kg.id_to_entity[o]}\n"
            for s, r, o in kg.split(split).tolist()
        ]
        (folder / f"{split}.txt").write_text("".join(lines))
    schema.to_json(root / "schema.json")
    return root, schema


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    return write_dataset(tmp_path_factory.mktemp("data"))


@pytest.fixture(scope="module")
def constrained_run(data, tmp_path_factory):
    """A one-epoch run trained under the schema (D-ComplEx²)."""
    root, _ = data
    out = tmp_path_factory.mktemp("constrained")
    args = ["train", *RUN, "--data-root", str(root), "--schema", str(root / "schema.json")]
    assert main([*args, "--out", str(out)]) == 0
    return out


@pytest.fixture(scope="module")
def plain_run(data, tmp_path_factory):
    """The same run without the schema."""
    root, _ = data
    out = tmp_path_factory.mktemp("plain")
    assert main(["train", *RUN, "--data-root", str(root), "--out", str(out)]) == 0
    return out


def sampled(capsys, args):
    assert main(["sample", *args]) == 0
    captured = capsys.readouterr()
    return [line.split("\t") for line in captured.out.splitlines()], captured.err


def listed(out):
    """``(probability, name)`` of each answer line of ``predict``'s top-k output."""
    rows = []
    for line in out.strip().splitlines()[1:]:
        fields = line.split()
        rows.append((float(fields[1]), fields[-1]))
    return rows


# --- training under a schema -------------------------------------------------------------------------
def test_a_constrained_run_records_the_schema_and_evaluate_reapplies_it(
    constrained_run, data, capsys
):
    root, _ = data
    config = json.loads((constrained_run / "best" / "config.json").read_text())["train"]
    assert config["schema"] == str((root / "schema.json").resolve())
    assert config["schema_violations"] == "error"
    assert main(["evaluate", "--checkpoint", str(constrained_run), "--no-calibration"]) == 0
    out = capsys.readouterr().out
    assert f"under the schema {config['schema']}" in out
    # the test split follows the schema, so its constrained log-likelihood is finite
    log_likelihood = float(out.split("mean log-likelihood")[1].split()[0])
    assert math.isfinite(log_likelihood)


def test_sampling_a_constrained_run_never_breaks_the_schema(
    constrained_run, plain_run, data, capsys
):
    _, schema = data
    rows, err = sampled(capsys, ["--checkpoint", str(constrained_run), "-n", "1000"])
    assert len(rows) == 1000 and "under the schema" in err
    assert all(schema.consistent(*row) for row in rows)
    # the test can fail: the same model family trained without the schema breaks it
    rows, _ = sampled(capsys, ["--checkpoint", str(plain_run), "-n", "1000"])
    assert not all(schema.consistent(*row) for row in rows)
    # ... unless the schema is applied at query time
    args = ["--checkpoint", str(plain_run), "-n", "1000", "--schema", str(data[0] / "schema.json")]
    rows, _ = sampled(capsys, args)
    assert all(schema.consistent(*row) for row in rows)


def test_a_missing_recorded_schema_is_named(data, tmp_path, capsys):
    root, schema = data
    moved = tmp_path / "schema.json"
    shutil.copy(root / "schema.json", moved)
    out = tmp_path / "run"
    args = ["train", *RUN, "--data-root", str(root), "--schema", str(moved), "--out", str(out)]
    assert main(args) == 0
    capsys.readouterr()
    moved.unlink()
    assert main(["sample", "--checkpoint", str(out), "-n", "5"]) == 2
    err = capsys.readouterr().err
    assert str(moved.resolve()) in err and "--schema" in err and len(err.splitlines()) == 1
    args = ["--checkpoint", str(out), "-n", "50", "--schema", str(root / "schema.json")]
    rows, _ = sampled(capsys, args)
    assert len(rows) == 50 and all(schema.consistent(*row) for row in rows)


def test_violating_training_triples_stop_the_run_or_are_dropped(tmp_path, capsys):
    root, schema = write_dataset(tmp_path / "noisy", noise=0.05)
    train_rows = [
        line.split("\t") for line in (root / "codex-s" / "train.txt").read_text().splitlines()
    ]
    violating = sum(not schema.consistent(*row) for row in train_rows)
    assert violating > 0
    args = ["train", *RUN, "--data-root", str(root), "--schema", str(root / "schema.json")]
    assert main(args) == 2
    err = capsys.readouterr().err
    assert f"{violating} of {len(train_rows)} training triples violate the schema" in err
    assert "e.g. (" in err and "--schema-violations drop" in err and len(err.splitlines()) == 1

    out_dir = tmp_path / "run"
    assert main([*args, "--schema-violations", "drop", "--out", str(out_dir)]) == 0
    out = capsys.readouterr().out
    assert f"dropped {violating} of {len(train_rows)} training triples" in out
    assert f"train={len(train_rows) - violating}," in out
    # test triples outside the support have p = 0: log-likelihood -inf, written as null (strict JSON)
    test_rows = [
        line.split("\t") for line in (root / "codex-s" / "test.txt").read_text().splitlines()
    ]
    metrics = json.loads(
        (out_dir / "metrics.json").read_text(),
        parse_constant=lambda name: pytest.fail(f"metrics.json holds {name}"),
    )
    if any(not schema.consistent(*row) for row in test_rows):
        assert metrics["test"]["log_likelihood"] is None
    else:
        assert math.isfinite(metrics["test"]["log_likelihood"])


def test_schema_violations_needs_a_schema(capsys):
    assert main(["train", "--dataset", "nations", "--schema-violations", "drop"]) == 2
    assert "applies only with a schema" in capsys.readouterr().err
    assert main(["train", "--dataset", "nations", "--schema", "/nonexistent/schema.json"]) == 2
    assert "schema file /nonexistent/schema.json does not exist" in capsys.readouterr().err


# --- predict --schema ---------------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("query", "target", "anchor"),
    [(["--s", "loxoprofen", "--r", "inhibits"], "o", "loxoprofen"),
     (["--r", "treats", "--o", "arthritis"], "s", "arthritis")],
)  # fmt: skip
def test_predict_with_a_schema_lists_only_allowed_answers(
    plain_run, data, query, target, anchor, capsys
):
    root, schema = data
    relation = query[query.index("--r") + 1]
    kg = load("codex-s", root)
    allowed = {
        e for e in kg.id_to_entity
        if (schema.consistent(anchor, relation, e) if target == "o" else schema.consistent(e, relation, anchor))
    }  # fmt: skip
    args = ["predict", "--checkpoint", str(plain_run), *query, "-k", str(kg.num_entities)]
    assert main([*args, "--schema", str(root / "schema.json")]) == 0
    rows = listed(capsys.readouterr().out)
    assert {name for _, name in rows} == allowed  # every allowed answer, nothing else
    probs = [p for p, _ in rows]
    assert all(0 < p <= 1 for p in probs) and sum(probs) <= 1 + 5e-5 * len(
        probs
    )  # 4-decimal rounding
    assert probs == sorted(probs, reverse=True)
    # without the schema the same query lists forbidden answers too
    assert main(args) == 0
    assert {name for _, name in listed(capsys.readouterr().out)} > allowed


def test_predict_lists_fewer_than_k_when_the_schema_allows_fewer(plain_run, data, capsys):
    root, _ = data
    args = ["predict", "--checkpoint", str(plain_run), "--s", "loxoprofen", "--r", "inhibits"]
    assert main([*args, "-k", "1000", "--schema", str(root / "schema.json")]) == 0
    out = capsys.readouterr().out
    shown = len(out.strip().splitlines()) - 1
    assert f"top {shown} for (loxoprofen, inhibits, ?)" in out and f"(only {shown} allowed)" in out


def test_predict_a_triple_with_a_schema_renormalises_over_allowed_values(plain_run, data, capsys):
    root, _ = data
    args = ["predict", "--checkpoint", str(plain_run), "--s", "loxoprofen", "--r", "inhibits",
            "--o", "COX2"]  # fmt: skip

    def probabilities(extra):
        assert main([*args, *extra]) == 0
        lines = capsys.readouterr().out.splitlines()
        return {line.split("=")[0].strip(): float(line.split("=")[1]) for line in lines[1:]}

    plain = probabilities([])
    constrained = probabilities(["--schema", str(root / "schema.json")])
    # p_c(o | s, r) = φ² / Σ_{allowed o'} φ²  >  φ² / Σ_{all o'} φ²  (the schema allows fewer o')
    assert constrained["p(o | s, r)"] > plain["p(o | s, r)"]
    assert constrained["p(s | r, o)"] > plain["p(s | r, o)"]
    assert 0 < constrained["p(o | s, r)"] <= 1 and 0 < constrained["P(true)"] <= 1


@pytest.mark.parametrize(
    ("query", "message"),
    [
        (["--s", "COX2", "--r", "inhibits"], "'COX2' (types: enzyme, protein) is not an allowed subject"),
        (["--r", "inhibits", "--o", "arthritis"], "'arthritis' (types: disease) is not an allowed object"),
        (["--s", "loxoprofen", "--r", "inhibits", "--o", "AMPK"], "'AMPK' (types: protein) is not an allowed object"),
    ],
)  # fmt: skip
def test_predict_a_query_the_schema_forbids_exits_2(constrained_run, query, message, capsys):
    assert main(["predict", "--checkpoint", str(constrained_run), *query]) == 2
    err = capsys.readouterr().err
    assert err.startswith("circuitkg: error: the schema forbids") and message in err
    assert len(err.splitlines()) == 1


def test_sample_given_a_forbidden_entity_exits_2(constrained_run, capsys):
    args = ["sample", "--checkpoint", str(constrained_run), "-n", "5", "--given", "r=inhibits",
            "--given", "o=arthritis"]  # fmt: skip
    assert main(args) == 2
    err = capsys.readouterr().err
    assert "impossible under the schema" in err and len(err.splitlines()) == 1


def test_an_unreadable_schema_exits_2(plain_run, tmp_path, capsys):
    bad = tmp_path / "schema.json"
    bad.write_text('{"entities": {}, "relations": {"inhibits": {"subject": ["drug"]}}}')
    args = ["predict", "--checkpoint", str(plain_run), "--s", "loxoprofen", "--r", "inhibits"]
    assert main([*args, "--schema", str(bad)]) == 2
    err = capsys.readouterr().err
    assert str(bad) in err and "Traceback" not in err
    # a schema that types only some entities of the dataset
    bad.write_text(json.dumps({"entities": {"loxoprofen": ["drug"]}, "relations": {}}))
    assert main([*args, "--schema", str(bad)]) == 2
    assert "have no entry in the schema" in capsys.readouterr().err
