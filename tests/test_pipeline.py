"""``circuitkg.pipeline`` and ``circuitkg.load``: own triples in, metrics, names, save and load."""

import math

import pytest
import torch

import circuitkg as ckg
from circuitkg.cli import main
from circuitkg.data import DataFormatError, KnowledgeGraph

pytestmark = pytest.mark.usefixtures("one_thread")

PEOPLE = ["ann", "bob", "cat", "dan", "eve", "fay", "gus", "hal"]


def _triples() -> list[tuple[str, str, str]]:
    """A tiny graph with structure: ``next`` is a cycle, ``prev`` its inverse."""
    n = len(PEOPLE)
    cycle = [(PEOPLE[i], "next", PEOPLE[(i + 1) % n]) for i in range(n)]
    return cycle + [(t, "prev", h) for h, _, t in cycle]


@pytest.fixture(scope="module")
def kg() -> KnowledgeGraph:
    rows = _triples()
    return KnowledgeGraph.from_triples({"train": rows, "valid": rows[:2], "test": rows[2:5]})


@pytest.fixture(scope="module")
def result(kg):
    return ckg.pipeline(
        dataset=kg, model="cp", form="squared", rank=4, epochs=6, eval_every=2, device="cpu",
        progress=False, log=lambda line: None,
    )  # fmt: skip


def test_the_result_holds_model_compiled_losses_and_test_metrics(result, kg):
    assert result.model.form == "squared" and result.model.num_entities == len(PEOPLE)
    assert len(result.losses) == 6 and all(math.isfinite(x) for x in result.losses)
    for key in ("mrr", "hits@1", "hits@10", "log_likelihood", "ece"):
        assert key in result.metrics
    assert 0 < result.metrics["mrr"] <= 1
    # a normalised model: the probabilities of all |E|² |R| triples sum to one
    s, r, o = torch.meshgrid(
        torch.arange(kg.num_entities), torch.arange(kg.num_relations),
        torch.arange(kg.num_entities), indexing="ij",
    )  # fmt: skip
    triples = torch.stack([s.flatten(), r.flatten(), o.flatten()], dim=1)
    with torch.no_grad():
        total = result.compiled.log_prob(triples).exp().sum()
    assert float(total) == pytest.approx(1.0, abs=1e-4)


def test_topk_by_name(result, kg):
    top = result.topk("o", s="ann", r="next", k=3)
    assert len(top) == 3 and all(p.name in PEOPLE for p in top)
    probabilities = [p.probability for p in top]
    assert probabilities == sorted(probabilities, reverse=True)
    with torch.no_grad():
        row = result.compiled.log_conditional(
            "o", s=torch.tensor([kg.entity_id("ann")]), r=torch.tensor([kg.relation_id("next")])
        )[0].exp()
    assert probabilities[0] == pytest.approx(float(row.max()), rel=1e-6)
    with pytest.raises(ckg.CircuitKGError, match="unknown entity"):
        result.topk("o", s="zed", r="next")


def test_samples_by_name(result):
    samples = result.sample(50, given={"s": "ann"}, generator=torch.Generator().manual_seed(0))
    assert len(samples) == 50 and all(s == "ann" for s, _, _ in samples)
    assert {r for _, r, _ in samples} <= {"next", "prev"} and {o for *_, o in samples} <= set(
        PEOPLE
    )


def test_save_and_load_restore_model_data_and_metrics(result, kg, tmp_path, capsys):
    folder = result.save(tmp_path / "run")
    again = ckg.load(folder)
    assert again.kg.id_to_entity == kg.id_to_entity
    assert torch.equal(again.kg.test, kg.test)
    assert again.metrics == pytest.approx({k: v for k, v in result.metrics.items()})
    assert again.losses == pytest.approx(result.losses)
    triples = kg.test
    with torch.no_grad():
        assert torch.allclose(again.compiled.log_prob(triples), result.compiled.log_prob(triples))
    # the folder is a run folder the command line reads
    assert (
        main(["predict", "--checkpoint", str(folder), "--s", "ann", "--r", "next", "-k", "2"]) == 0
    )
    assert capsys.readouterr().out.startswith("top 2 for (ann, next, ?)")


def test_plots(result):
    pytest.importorskip("matplotlib")
    losses = result.plot_losses()
    assert len(losses.axes[0].lines[0].get_xdata()) == len(result.losses)
    calibration = result.plot_calibration()
    assert calibration.axes and "test" in calibration.axes[0].get_title()


def test_a_dataset_by_name_or_folder(tmp_path):
    named = ckg.pipeline(
        dataset="nations", model="distmult", rank=2, epochs=1, eval_every=0, progress=False,
        log=lambda line: None,
    )  # fmt: skip
    assert named.kg.num_entities == 14 and named.dataset == "nations"
    with pytest.raises(DataFormatError, match="has no valid, test file"):
        (tmp_path / "train.txt").write_text("a\tr\tb\n")
        ckg.pipeline(dataset=tmp_path, epochs=1)


def test_a_given_model_keeps_its_parameters_until_trained(kg):
    model = ckg.models.CP(kg.num_entities, kg.num_relations, 3, form="squared")
    before = {n: p.detach().clone() for n, p in model.named_parameters()}
    result = ckg.pipeline(dataset=kg, model=model, epochs=0, progress=False, log=lambda x: None)
    assert result.model is model and result.config.init == "model"
    assert all(torch.equal(before[n], p) for n, p in model.named_parameters())
    with pytest.raises(ckg.CircuitKGError, match="monotone"):
        ckg.pipeline(dataset=kg, model=model, form="monotone", epochs=0)


def test_pipeline_and_load_are_functions_even_after_the_module_is_imported():
    import circuitkg.workflow  # noqa: F401  (importing a submodule sets a package attribute)

    assert callable(ckg.pipeline) and callable(ckg.load) and callable(ckg.compile)
