"""Training: objectives against brute force, reproducibility, checkpoints, resume, NaN guard."""

import json
import math

import pytest
import torch
from circuitkg.constraints import ConstrainedCircuit, SchemaError, biomedical_kg

import circuitkg as ckg
from circuitkg.data import load
from circuitkg.eval.runner import corrupt, evaluate
from circuitkg.testing import joint_table
from circuitkg.train import (
    CheckpointError,
    ConfigError,
    TrainConfig,
    Trainer,
    TrainingDivergedError,
    init_from_checkpoint,
    load_checkpoint,
    mle_loss,
    n3,
    one_vs_all_loss,
    pll_loss,
    save_checkpoint,
    train,
)
from circuitkg.train.checkpoint import TrainState
from circuitkg.train.initialisation import positive_init
from circuitkg.train.preparation import build_model

pytestmark = pytest.mark.usefixtures("one_thread")


@pytest.fixture(scope="module")
def nations():
    return load("nations")


def quiet(**changes):
    base = dict(dataset="nations", model="cp", form="squared", rank=4, epochs=2, eval_every=1)
    return TrainConfig(**(base | changes))


def fit(config, kg, **kwargs):
    return train(config, kg, progress=False, log=lambda line: None, **kwargs)


def parameters(model):
    return {n: p.detach().clone() for n, p in model.named_parameters()}


def assert_same_parameters(a, b):
    assert a.keys() == b.keys()
    for name in a:
        assert torch.equal(a[name], b[name]), name


def tiny_model(name="cp", form="squared", rank=3):
    torch.manual_seed(0)
    model = ckg.models.create_model(name, 4, 2, rank, form).double()
    return model, ckg.compile(model)


TINY = torch.tensor([[0, 0, 1], [1, 1, 2], [3, 0, 0], [2, 1, 3], [1, 0, 1]])


# --- objectives against enumeration ------------------------------------------------------------------
@pytest.mark.parametrize("plan", ["auto", "gram", "values"])
@pytest.mark.parametrize("name", ["cp", "complex"])
def test_pll_equals_brute_force_sum_of_log_conditionals(name, plan):
    model, compiled = tiny_model(name)
    compiled.summation_plan = plan
    log_joint = joint_table(compiled).log()  # axes (s, r, o)
    s, r, o = TINY.T
    log_p = log_joint[s, r, o]
    cond_s = log_p - torch.logsumexp(log_joint[:, r, o], dim=0)
    cond_r = log_p - torch.logsumexp(log_joint[s, :, o], dim=1)
    cond_o = log_p - torch.logsumexp(log_joint[s, r, :], dim=1)
    weights = (0.5, 2.0, 1.0)
    expected = -(weights[0] * cond_s + weights[1] * cond_r + weights[2] * cond_o).mean()
    assert pll_loss(compiled, TINY, weights).item() == pytest.approx(expected.item(), rel=1e-9)


def test_mle_equals_brute_force_log_likelihood():
    _, compiled = tiny_model("complex")
    log_joint = joint_table(compiled).log()
    expected = -log_joint[TINY[:, 0], TINY[:, 1], TINY[:, 2]].mean()
    assert mle_loss(compiled, TINY).item() == pytest.approx(expected.item(), rel=1e-9)


def test_one_vs_all_is_cross_entropy_over_scores_in_both_directions():
    model, compiled = tiny_model("cp", form="score")
    s, r, o = TINY.T
    scores = torch.einsum(
        "bk,bk,nk->bn", model.subject.weight[s], model.relation.weight[r], model.object.weight
    )
    scores_s = torch.einsum(
        "nk,bk,bk->bn", model.subject.weight, model.relation.weight[r], model.object.weight[o]
    )
    expected = torch.nn.functional.cross_entropy(scores, o) + torch.nn.functional.cross_entropy(
        scores_s, s
    )
    assert one_vs_all_loss(compiled, TINY).item() == pytest.approx(expected.item(), rel=1e-9)


def test_label_losses_are_wired():
    relaxation = pytest.importorskip("circuitkg.train.label_relaxation")
    _, compiled = tiny_model("cp", form="score")
    logits = compiled.log_conditional("o", s=TINY[:, 0], r=TINY[:, 1])
    logits_s = compiled.log_conditional("s", r=TINY[:, 1], o=TINY[:, 2])
    for loss, fn in [
        ("label_smoothing", relaxation.label_smoothing_cross_entropy),
        ("label_relaxation", relaxation.label_relaxation_loss),
    ]:
        expected = fn(logits, TINY[:, 2], 0.1) + fn(logits_s, TINY[:, 0], 0.1)
        got = one_vs_all_loss(compiled, TINY, loss=loss, alpha=0.1)
        assert got.item() == pytest.approx(expected.item(), rel=1e-6)


def test_n3_is_the_mean_cubed_modulus_of_the_batch_embeddings():
    model, _ = tiny_model("cp")
    s, r, o = TINY.T
    rows = [model.subject.weight[s], model.relation.weight[r], model.object.weight[o]]
    expected = sum(x.abs().pow(3).sum() for x in rows) / len(TINY)
    assert n3(model, TINY).item() == pytest.approx(expected.item(), rel=1e-9)
    model, _ = tiny_model("complex", rank=2)
    e, w = model.entity.weight, model.relation.weight

    def modulus(x):
        return (x[:, :2] ** 2 + x[:, 2:] ** 2).sqrt()

    rows = [modulus(e[s]), modulus(w[r]), modulus(e[o])]
    expected = sum(x.pow(3).sum() for x in rows) / len(TINY)
    assert n3(model, TINY).item() == pytest.approx(expected.item(), rel=1e-6)


# --- the loop ----------------------------------------------------------------------------------------
@pytest.mark.parametrize(
    "changes",
    [
        dict(objective="pll"),
        dict(objective="mle", optimizer="adagrad", lr=0.1),
        dict(form="score", objective="ce", lr=0.05),
        dict(form="monotone", model="complex", objective="pll", lr=0.05),
    ],
)
def test_training_reduces_the_loss(nations, changes):
    result = fit(quiet(epochs=4, eval_every=0, **changes), nations)
    losses = [r["loss"] for r in result.state.history]
    assert losses[-1] < losses[0]


def test_a_seed_reproduces_parameters(nations):
    a = parameters(fit(quiet(seed=3), nations).model)
    b = parameters(fit(quiet(seed=3), nations).model)
    c = parameters(fit(quiet(seed=4), nations).model)
    assert_same_parameters(a, b)
    assert not torch.equal(a["subject.weight"], c["subject.weight"])


def test_positive_init_makes_every_score_positive():
    model = ckg.models.create_model("complex", 30, 5, 8, "squared")
    positive_init(model)
    triples = torch.stack(
        [torch.randint(30, (50,)), torch.randint(5, (50,)), torch.randint(30, (50,))], 1
    )
    assert bool((ckg.compile(model).score(triples) > 0).all())


def test_early_stopping_keeps_the_best_validation_parameters(nations, tmp_path):
    config = quiet(epochs=30, lr=0.2, patience=1)
    result = fit(config, nations, out=tmp_path)
    state = result.state
    assert state.epoch < 30 and state.evals_since_best == 1
    best = load_checkpoint(tmp_path / "best")
    assert best.state.epoch == state.best_epoch
    assert_same_parameters(parameters(result.model), parameters(best.model))


# --- checkpoints -------------------------------------------------------------------------------------
def test_checkpoint_round_trip_gives_identical_predictions(nations, tmp_path):
    result = fit(quiet(model="complex"), nations, out=tmp_path)
    loaded = load_checkpoint(tmp_path)
    assert loaded.path == tmp_path / "best"
    ours, theirs = result.compiled, ckg.compile(loaded.model)
    queries = nations.test[:20]
    with torch.no_grad():
        for target, given in [
            ("o", dict(s=queries[:, 0], r=queries[:, 1])),
            ("s", dict(r=queries[:, 1], o=queries[:, 2])),
        ]:
            assert torch.equal(ours.score_all(target, **given), theirs.score_all(target, **given))
        assert torch.equal(ours.log_prob(queries), theirs.log_prob(queries))
    meta = json.loads((tmp_path / "best" / "config.json").read_text())
    assert meta["model"] | {"kwargs": None} == {
        "name": "complex", "form": "squared", "num_entities": 14, "num_relations": 55, "rank": 4,
        "kwargs": None,
    }  # fmt: skip
    assert not list(tmp_path.rglob("*.pt")) and not list(tmp_path.rglob("*.pkl"))


def test_resume_continues_epochs_and_optimizer_state(nations, tmp_path):
    straight = fit(quiet(epochs=4), nations)
    fit(quiet(epochs=2), nations, out=tmp_path)
    trainer = Trainer.resume(tmp_path, nations, epochs=4, progress=False, log=lambda line: None)
    assert trainer.state.epoch == 2
    assert trainer.state.step == 2 * math.ceil(len(nations.train) / 256)
    adam = trainer.optimizer.state_dict()["state"]
    assert adam and all(float(s["step"]) == trainer.state.step for s in adam.values())
    resumed = trainer.fit()
    assert resumed.state.epoch == 4 and len(resumed.state.history) == 4
    assert_same_parameters(parameters(straight.model), parameters(resumed.model))
    assert load_checkpoint(tmp_path / "last").state.epoch == 4


def test_init_from_a_score_model(nations, tmp_path):
    score = fit(quiet(model="complex", form="score", objective="ce"), nations, out=tmp_path)
    squared = build_model(quiet(model="complex"), nations)
    copied = init_from_checkpoint(squared, tmp_path)
    assert copied == ["entity.weight", "relation.weight"]
    assert_same_parameters(parameters(score.model), parameters(squared))
    with pytest.raises(CheckpointError, match="rank"):
        init_from_checkpoint(build_model(quiet(model="complex", rank=5), nations), tmp_path)
    with pytest.raises(CheckpointError, match="holds complex"):
        init_from_checkpoint(build_model(quiet(model="cp"), nations), tmp_path)


# --- the NaN guard -----------------------------------------------------------------------------------
def test_nan_loss_stops_training_and_writes_no_checkpoint_of_it(nations, tmp_path):
    trainer = Trainer(quiet(epochs=3), nations, out=tmp_path, progress=False, log=lambda line: None)
    objective, calls = trainer.objective, []

    def poisoned(compiled, triples):
        calls.append(1)
        loss = objective(compiled, triples)
        return loss * float("nan") if len(calls) == 10 else loss

    trainer.objective = poisoned
    with pytest.raises(TrainingDivergedError, match=r"epoch 2, step 10 .*loss is nan"):
        trainer.fit()
    assert load_checkpoint(tmp_path / "last").state.epoch == 1  # the finite state of epoch 1


def test_nan_parameter_names_the_parameter(nations, tmp_path):
    trainer = Trainer(quiet(epochs=2), nations, out=tmp_path, progress=False, log=lambda line: None)
    trainer.model.object.weight.register_hook(lambda grad: torch.full_like(grad, float("nan")))
    with pytest.raises(TrainingDivergedError, match=r"epoch 1, step 1 .*'object.weight'"):
        trainer.fit()
    assert not (tmp_path / "last").exists() and not (tmp_path / "best").exists()


def test_save_checkpoint_refuses_non_finite_tensors(tmp_path):
    model, _ = tiny_model("cp")
    with torch.no_grad():
        model.relation.weight[0, 0] = float("inf")
    with pytest.raises(CheckpointError, match="relation.weight"):
        save_checkpoint(tmp_path / "ckpt", model, quiet(), TrainState())
    assert not (tmp_path / "ckpt").exists()


# --- configuration and evaluation -----------------------------------------------------------------
def test_config_errors_name_the_option():
    with pytest.raises(ConfigError, match="did you mean 'complex'"):
        TrainConfig(model="complx")
    with pytest.raises(ConfigError, match="normalised form"):
        TrainConfig(form="score", objective="mle")
    with pytest.raises(ConfigError, match="rank"):
        TrainConfig(rank=0)
    assert TrainConfig.from_dict(quiet().to_dict()) == quiet()


def test_evaluate_reports_ranking_likelihood_and_calibration(nations):
    model = fit(quiet(), nations).model
    report = evaluate(model, nations, "test").as_dict()
    assert 0 < report["mrr"] <= 1 and report["hits@1"] <= report["hits@3"] <= report["hits@10"]
    assert report["log_likelihood"] < 0 and 0 <= report["ece"] <= 1
    score = fit(quiet(form="score", objective="ce"), nations).model
    assert evaluate(score, nations, "valid").log_likelihood is None


def test_corruptions_are_not_known_triples(nations):
    negatives = corrupt(nations.test, nations, seed=1)
    known = {tuple(t) for t in nations.known_triples().tolist()}
    assert not any(tuple(t) in known for t in negatives.tolist())
    changed = (negatives != nations.test).sum(dim=1)
    assert bool((changed == 1).all())


# --- training under a domain schema ------------------------------------------------------------------
@pytest.fixture(scope="module")
def typed(tmp_path_factory):
    """A small synthetic typed KG with 5% schema-violating triples, and its schema as JSON."""
    kg, schema = biomedical_kg(num_triples=400, noise=0.05, seed=1)
    path = tmp_path_factory.mktemp("schema") / "schema.json"
    schema.to_json(path)
    return kg, schema, path


def typed_config(path, **changes):
    base = dict(model="complex", form="squared", rank=4, epochs=1, eval_every=1, schema=str(path))
    return TrainConfig(**(base | changes))


def test_schema_config_is_validated_and_old_configs_load():
    with pytest.raises(ConfigError, match="did you mean 'drop'"):
        TrainConfig(schema="s.json", schema_violations="dropp")
    with pytest.raises(ConfigError, match="only with a schema"):
        TrainConfig(schema_violations="drop")
    config = TrainConfig(schema="s.json", schema_violations="drop")
    assert TrainConfig.from_dict(config.to_dict()) == config
    old = {k: v for k, v in quiet().to_dict().items() if not k.startswith("schema")}
    assert TrainConfig.from_dict(old) == quiet() and quiet().schema is None


def test_a_checkpoint_without_the_schema_fields_still_loads(nations, tmp_path):
    fit(quiet(epochs=1), nations, out=tmp_path)
    meta_path = tmp_path / "best" / "config.json"
    meta = json.loads(meta_path.read_text())
    assert meta["train"]["schema"] is None and meta["train"]["schema_violations"] == "error"
    for key in ("schema", "schema_violations"):
        del meta["train"][key]
    meta_path.write_text(json.dumps(meta))
    assert load_checkpoint(tmp_path).config.schema is None


def test_training_under_a_schema_uses_the_constrained_circuit(typed, tmp_path):
    kg, schema, path = typed
    result = fit(typed_config(path, schema_violations="drop"), kg, out=tmp_path)
    assert isinstance(result.compiled, ConstrainedCircuit)
    shared = {id(p) for p in result.compiled.parameters()}
    assert shared == {id(p) for p in result.model.parameters()}  # trains the model itself
    assert result.state.best_metric is not None  # validation MRR of the constrained circuit
    assert load_checkpoint(tmp_path).config.schema == str(path)
    # the returned circuit gives triples that break the schema probability 0, others > 0
    triples = kg.known_triples()
    consistent = torch.tensor(
        [schema.consistent(*(kg.id_to_entity[s], kg.id_to_relation[r], kg.id_to_entity[o]))
         for s, r, o in triples.tolist()]
    )  # fmt: skip
    assert 0 < int(consistent.sum()) < len(triples)
    with torch.no_grad():
        log_p = result.compiled.log_prob(triples)
    assert bool(torch.isneginf(log_p[~consistent]).all())
    assert bool(torch.isfinite(log_p[consistent]).all())


def test_the_objective_sees_the_schema(typed):
    kg, _, path = typed
    trainer = Trainer(
        typed_config(path, schema_violations="drop"), kg, progress=False, log=lambda line: None
    )
    plain = ckg.compile(trainer.model)
    batch = trainer.train_triples[:64]
    with torch.no_grad():
        constrained_loss = trainer.objective(trainer.compiled, batch)
        plain_loss = trainer.objective(plain, batch)
    # PLL under the schema normalises each conditional over the allowed values only
    assert constrained_loss < plain_loss


def test_schema_violations_error_or_drop(typed):
    kg, schema, path = typed
    names = [
        (kg.id_to_entity[s], kg.id_to_relation[r], kg.id_to_entity[o])
        for s, r, o in kg.train.tolist()
    ]
    violating = sum(not schema.consistent(*t) for t in names)
    assert violating > 0
    with pytest.raises(SchemaError, match=rf"{violating} of {len(names)} training triples violate"):
        Trainer(typed_config(path), kg, progress=False, log=lambda line: None)
    lines = []
    trainer = Trainer(
        typed_config(path, schema_violations="drop"), kg, progress=False, log=lines.append
    )
    assert len(trainer.train_triples) == len(names) - violating
    assert any(f"dropped {violating} of {len(names)}" in line for line in lines)
    assert bool(trainer.bound.consistent(trainer.train_triples).all())


def test_a_missing_schema_file_is_named(nations, tmp_path):
    missing = tmp_path / "gone.json"
    with pytest.raises(SchemaError, match=f"schema file {missing} does not exist"):
        Trainer(quiet(schema=str(missing)), nations, progress=False, log=lambda line: None)
