"""The ranking protocol for test entities unseen in train: TrainConfig.unseen and ``--unseen``."""

import json

import pytest

import circuitkg as ckg
from circuitkg.cli import main
from circuitkg.data import DataFormatError, load_folder
from circuitkg.train import TrainConfig, evaluate, load_checkpoint, train
from circuitkg.train.config import ConfigError

pytestmark = pytest.mark.usefixtures("one_thread")

TRAIN = [("a", "r", "b"), ("b", "r", "c"), ("c", "s", "a"), ("a", "s", "d"), ("d", "r", "e"),
         ("e", "s", "b"), ("b", "s", "e"), ("c", "r", "d")]  # fmt: skip
VALID = [("a", "r", "c"), ("d", "s", "b")]
TEST = [("e", "r", "a"), ("b", "r", "d"), ("z", "r", "a")]  # z: never in train


def _write_splits(folder):
    folder.mkdir(parents=True, exist_ok=True)
    for split, triples in (("train", TRAIN), ("valid", VALID), ("test", TEST)):
        lines = "".join("\t".join(t) + "\n" for t in triples)
        (folder / f"{split}.txt").write_text(lines)
    return folder


def _train_args(folder, out, protocol: str) -> list[str]:
    return ["train", "--dataset", str(folder), "--model", "cp", "--form", "squared", "--rank", "4",
            "--epochs", "1", "--eval-every", "0", "--unseen", protocol, "--out", str(out),
            "--quiet", "--threads", "1"]  # fmt: skip


@pytest.fixture
def folder(tmp_path):
    return _write_splits(tmp_path)


def test_keep_ranks_the_unseen_entity_and_drop_drops_it(folder):
    kept, dropped = load_folder(folder, unseen="keep"), load_folder(folder, unseen="drop")
    assert (kept.num_entities, len(kept.test)) == (6, 3)
    assert (dropped.num_entities, len(dropped.test)) == (5, 2)
    for protocol, kg in (("keep", kept), ("drop", dropped)):
        config = TrainConfig(dataset=str(folder), model="cp", form="squared", rank=4, epochs=1,
                             eval_every=0, unseen=protocol)  # fmt: skip
        result = train(config, kg, progress=False)
        report = evaluate(result.compiled, kg, "test")
        assert len(report.ranking.ranks_of("o")) == len(kg.test)  # every kept triple is ranked
        assert result.model.num_entities == kg.num_entities


def test_raise_names_the_unseen_entity(folder):
    with pytest.raises(DataFormatError, match="z"):
        load_folder(folder, unseen="raise")


def test_config_field_validated_and_defaults_to_drop():
    assert TrainConfig().unseen == "drop"
    assert TrainConfig.from_dict({"dataset": "umls"}).unseen == "drop"  # configs before the field
    with pytest.raises(ConfigError, match="did you mean 'keep'"):
        TrainConfig(unseen="kep")


@pytest.mark.parametrize(("protocol", "entities", "ranked"), [("keep", 6, 3), ("drop", 5, 2)])
def test_cli_passes_unseen_to_the_loader(folder, tmp_path, protocol, entities, ranked, capsys):
    out = tmp_path / f"run-{protocol}"
    assert main(_train_args(folder, out, protocol)) == 0
    checkpoint = load_checkpoint(out / "last")
    assert checkpoint.config.unseen == protocol
    assert checkpoint.spec.num_entities == entities
    assert json.loads((out / "metrics.json").read_text())["test"]["mrr"] > 0
    capsys.readouterr()
    # evaluate reloads the data with the run's protocol: the vocabularies match the checkpoint's
    assert main(["evaluate", "--checkpoint", str(out), "--split", "test"]) == 0
    assert "test: MRR" in capsys.readouterr().out
    assert len(load_folder(folder, unseen=protocol).test) == ranked  # the split the run ranked


def test_cli_rejects_an_unknown_protocol(folder, capsys):
    with pytest.raises(SystemExit):
        main(["train", "--dataset", str(folder), "--unseen", "maybe"])
    assert "invalid choice" in capsys.readouterr().err


def test_pipeline_and_load_use_the_runs_protocol(folder, tmp_path):
    result = ckg.pipeline(str(folder), "cp", rank=4, epochs=1, eval_every=0, unseen="keep",
                          progress=False)  # fmt: skip
    assert (result.kg.num_entities, len(result.kg.test)) == (6, 3)
    assert result.model.num_entities == 6
    out = tmp_path / "keep-run"
    assert main(_train_args(folder, out, "keep")) == 0
    reloaded = ckg.load(out)  # re-reads the data folder under the checkpoint's protocol
    assert (reloaded.kg.num_entities, len(reloaded.kg.test)) == (6, 3)
    assert reloaded.config.unseen == "keep"


def test_train_without_a_graph_loads_the_named_dataset_under_the_protocol(tmp_path):
    root = tmp_path / "root"
    _write_splits(root / "wn18rr")  # an external dataset's name, read from data_root
    for protocol, entities in (("keep", 6), ("drop", 5)):
        config = TrainConfig(dataset="wn18rr", data_root=str(root), model="cp", form="squared",
                             rank=2, epochs=0, eval_every=0, unseen=protocol)  # fmt: skip
        assert train(config, progress=False).model.num_entities == entities
