"""Reliability (issue 14): crash-safe checkpoints, validated checkpoint contents, vocabulary checks,
resume that never loses work silently, and library errors (naming the culprit) on bad input."""

import json
import os
import random
import shutil
import signal
import time
import warnings

import pytest
import torch
from safetensors.torch import load_file, save_file

from circuitkg.cli import main
from circuitkg.data import load
from circuitkg.errors import CircuitKGError
from circuitkg.train import (
    CheckpointError,
    CheckpointRecoveredWarning,
    TrainConfig,
    Trainer,
    load_checkpoint,
    save_checkpoint,
    train,
)
from circuitkg.train.checkpoint import TrainState

pytestmark = pytest.mark.usefixtures("one_thread")


@pytest.fixture(scope="module")
def nations():
    return load("nations")


def quiet(**changes):
    base = dict(dataset="nations", model="cp", form="squared", rank=4, epochs=2, eval_every=1)
    return TrainConfig(**(base | changes))


def fit(config, kg, **kwargs):
    return train(config, kg, progress=False, log=lambda line: None, **kwargs)


@pytest.fixture(scope="module")
def run(nations, tmp_path_factory):
    """A two-epoch nations run folder (best/ and last/); copy it before damaging it."""
    out = tmp_path_factory.mktemp("run")
    fit(quiet(), nations, out=out)
    return out


def copy_run(run, tmp_path):
    return shutil.copytree(run, tmp_path / "run")


# --- crash-safe writes -------------------------------------------------------------------------------
def test_checkpoint_files_share_the_umask_mode(run):
    expected = 0o666 & ~_umask()
    for file in (run / "last").iterdir():
        assert file.stat().st_mode & 0o777 == expected, file.name


def _umask():
    mask = os.umask(0)
    os.umask(mask)
    return mask


def test_interrupted_swap_is_recovered_from_the_complete_tmp(run, tmp_path):
    folder = copy_run(run, tmp_path)
    last, tmp, old = folder / "last", folder / "last.tmp", folder / "last.old"
    # crash between "rename old aside" and "rename tmp in": only .old and a complete .tmp remain
    shutil.copytree(last, tmp)
    os.replace(last, old)
    with pytest.warns(CheckpointRecoveredWarning, match=r"restored it from last\.tmp"):
        ckpt = load_checkpoint(last)
    assert ckpt.state.epoch == 2 and not tmp.exists() and not old.exists()


def test_incomplete_tmp_falls_back_to_old_and_says_so(run, tmp_path):
    folder = copy_run(run, tmp_path)
    last, tmp, old = folder / "last", folder / "last.tmp", folder / "last.old"
    tmp.mkdir()
    (tmp / "model.safetensors").write_bytes(b"\x00" * 10)  # no config.json: never completed
    os.replace(last, old)
    with pytest.warns(CheckpointRecoveredWarning, match=r"from last\.old"):
        assert load_checkpoint(last).state.epoch == 2
    assert not old.exists()


def test_intact_tmp_is_never_deleted_when_last_is_missing(nations, run, tmp_path):
    """The old code's state after a kill: last/ removed, last.tmp complete. Resuming used to fall
    back to best/ silently and the next save deleted last.tmp."""
    folder = copy_run(run, tmp_path)
    os.replace(folder / "last", folder / "last.tmp")
    with pytest.warns(CheckpointRecoveredWarning):
        trainer = Trainer.resume(folder, nations, epochs=3, progress=False, log=lambda _: None)
    assert trainer.state.epoch == 2
    trainer.fit()
    assert load_checkpoint(folder / "last").state.epoch == 3
    assert not (folder / "last.tmp").exists()


def test_resume_without_last_is_an_error_naming_best(run, nations, tmp_path):
    folder = copy_run(run, tmp_path)
    shutil.rmtree(folder / "last")
    with pytest.raises(CheckpointError, match=r"no last/ checkpoint.*best/ is from epoch \d"):
        Trainer.resume(folder, nations, progress=False, log=lambda _: None)
    assert main(["train", "--resume", str(folder), "--quiet"]) == 2


def test_sigkill_during_checkpoint_writes_never_loses_the_checkpoint(nations, tmp_path):
    """25 SIGKILLs at random moments of a loop of checkpoint writes (forked children): after each,
    a load finds an intact checkpoint (recovering an interrupted swap)."""
    trainer = Trainer(quiet(), nations, progress=False, log=lambda _: None)
    path = tmp_path / "ckpt"
    save_checkpoint(
        path, trainer.model, trainer.config, TrainState(), trainer.optimizer, kg=nations
    )
    rng = random.Random(0)
    for kill in range(25):
        pid = os.fork()
        if pid == 0:  # the child writes checkpoints until it is killed
            try:
                for epoch in range(10**6):
                    state = TrainState(epoch=epoch)
                    save_checkpoint(path, trainer.model, trainer.config, state, kg=nations)
            finally:
                os._exit(0)
        time.sleep(rng.uniform(0.0, 0.05))
        os.kill(pid, signal.SIGKILL)
        os.waitpid(pid, 0)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", CheckpointRecoveredWarning)
            ckpt = load_checkpoint(path)
        assert ckpt.vocabulary["entities"] == nations.id_to_entity, kill


# --- validated contents -------------------------------------------------------------------------------
def test_nan_in_a_stored_checkpoint_is_refused_on_load(run, tmp_path):
    folder = copy_run(run, tmp_path)
    file = folder / "best" / "model.safetensors"
    tensors = load_file(file)
    tensors["relation.weight"][0, 0] = float("nan")
    save_file(tensors, file)
    with pytest.raises(CheckpointError, match=r"model\.safetensors.*'relation\.weight'.*NaN"):
        load_checkpoint(folder / "best")


def test_truncated_safetensors_names_the_file(run, tmp_path):
    folder = copy_run(run, tmp_path)
    file = folder / "best" / "model.safetensors"
    file.write_bytes(file.read_bytes()[:-20])
    with pytest.raises(CheckpointError, match=r"model\.safetensors: not a readable safetensors"):
        load_checkpoint(folder / "best")


@pytest.mark.parametrize(
    ("edit", "pattern"),
    [
        (lambda m: m.pop("model"), r"config\.json: the key 'model' is missing"),
        (lambda m: m["model"].pop("rank"), r"config\.json: key 'model' is malformed.*rank"),
        (lambda m: m["model"].update(rank="16"), r"config\.json: key 'model'.*'rank'.*'16'"),
        (lambda m: m["model"].update(name="transh"), r"config\.json: key 'model'.*transh"),
        (lambda m: m["train"].update(rank="16"), r"config\.json: key 'train' is malformed"),
        (lambda m: m["state"].update(epoch="2"), r"config\.json: key 'state'.*epoch"),
        (lambda m: m["state"].update(bogus=1), r"config\.json: key 'state'.*bogus"),
        (lambda m: m["optimizer"].pop("param_groups"), r"key 'optimizer'.*param_groups"),
    ],
)
def test_malformed_config_names_file_and_key(run, tmp_path, edit, pattern):
    folder = copy_run(run, tmp_path)
    file = folder / "last" / "config.json"
    meta = json.loads(file.read_text())
    edit(meta)
    file.write_text(json.dumps(meta))
    with pytest.raises(CheckpointError, match=pattern):
        load_checkpoint(folder / "last")
    assert main(["evaluate", "--checkpoint", str(folder / "last")]) == 2


def test_config_that_is_not_utf8_json(run, tmp_path):
    folder = copy_run(run, tmp_path)
    (folder / "best" / "config.json").write_bytes(b"\xff\xfe{")
    with pytest.raises(CheckpointError, match="config.json: not valid JSON"):
        load_checkpoint(folder / "best")


# --- vocabularies ---------------------------------------------------------------------------------
def test_checkpoint_records_and_checks_the_vocabulary(run, nations):
    ckpt = load_checkpoint(run / "best", nations)
    assert ckpt.vocabulary == {
        "dataset": "nations",
        "entities": nations.id_to_entity,
        "relations": nations.id_to_relation,
    }


def _external_copy(root, rename=None):
    """nations as the external dataset ``codex-s`` under ``root``, optionally with one entity
    renamed (same sizes, different vocabulary)."""
    folder = root / "codex-s"
    shutil.copytree(load.__globals__["_PACKAGE_DATASETS"] / "nations", folder)
    if rename is not None:
        old, new = rename
        for file in folder.glob("*.txt"):
            file.write_text(file.read_text().replace(old, new))
    return root


def test_predict_with_another_datasets_checkpoint_names_the_mismatch(tmp_path, capsys):
    trained_on = _external_copy(tmp_path / "a")
    other = _external_copy(tmp_path / "b", rename=("brazil", "zzz_brasil"))
    out = tmp_path / "run"
    args = ["train", "--dataset", "codex-s", "--data-root", str(trained_on), "--model", "cp",
            "--rank", "3", "--epochs", "1", "--eval-every", "0", "--out", str(out), "--quiet"]  # fmt: skip
    assert main(args) == 0
    capsys.readouterr()
    predict = ["predict", "--checkpoint", str(out), "--s", "usa", "--r", "embassy"]
    assert main([*predict, "--data-root", str(trained_on)]) == 0
    assert main([*predict, "--data-root", str(other)]) == 2
    err = capsys.readouterr().err
    assert "entity vocabulary differs" in err and "'brazil'" in err, err
    kg = load("codex-s", other)
    with pytest.raises(CheckpointError, match="'brazil' in the checkpoint"):
        Trainer.resume(out, kg, progress=False, log=lambda _: None)


# --- --resume with options ----------------------------------------------------------------------------
def test_resume_refuses_options_that_differ(run, tmp_path, capsys):
    folder = copy_run(run, tmp_path)
    base = ["train", "--resume", str(folder), "--quiet", "--epochs", "3"]
    assert main([*base, "--lr", "0.5", "--model", "complex", "--dataset", "umls"]) == 2
    err = capsys.readouterr().err
    assert "--lr 0.5" in err and "--model complex" in err and "--dataset umls" in err, err
    assert main([*base, "--lr", "0.01", "--model", "cp"]) == 0  # the checkpoint's own values


def test_errors_are_library_errors():
    assert issubclass(CheckpointError, CircuitKGError)
    assert torch.isfinite(torch.tensor(1.0))  # keep torch imported for the fork test's children


# --- bad input ---------------------------------------------------------------------------------------
from circuitkg.data import (  # noqa: E402
    DataFormatError,
    DuplicateTriplesWarning,
    HeaderLineWarning,
    load_folder,
)


def _folder(root, train, valid="a\tr\tb\n", test="a\tr\tb\n", suffix=".txt"):
    root.mkdir(parents=True, exist_ok=True)
    for split, text in (("train", train), ("valid", valid), ("test", test)):
        data = text if isinstance(text, bytes) else text.encode()
        (root / f"train{suffix}" if split == "train" else root / f"{split}.txt").write_bytes(data)
    return root


TOY = "a\tr\tb\nb\tr\tc\nc\ts\ta\n"


def test_truncated_or_fake_gzip_names_the_file(tmp_path):
    import gzip

    data = gzip.compress(TOY.encode())
    folder = _folder(tmp_path / "trunc", data[:-8], suffix=".txt.gz")
    with pytest.raises(DataFormatError, match=r"train\.txt\.gz: not a complete gzip file"):
        load_folder(folder)
    folder = _folder(tmp_path / "fake", TOY, suffix=".txt.gz")
    with pytest.raises(DataFormatError, match=r"train\.txt\.gz: not a complete gzip file"):
        load_folder(folder)


def test_non_utf8_is_reported_by_line(tmp_path):
    folder = _folder(tmp_path / "f", b"a\tr\tb\nb\tr\tc\nc\ts\t\xff\n")
    with pytest.raises(DataFormatError, match=r"train\.txt:3: not UTF-8 text \(byte 0xff"):
        load_folder(folder)


def test_empty_train_is_an_error_before_any_model(tmp_path):
    with pytest.raises(DataFormatError, match=r"train\.txt: the train split holds no triples"):
        load_folder(_folder(tmp_path / "f", "\n"))


def test_header_line_is_skipped_with_a_warning(tmp_path):
    folder = _folder(
        tmp_path / "f", "head\trelation\ttail\n" + TOY, test="head\trelation\ttail\na\tr\tc\n"
    )
    with pytest.warns(HeaderLineWarning, match=r"train\.txt:1: skipped"):
        kg = load_folder(folder)
    assert "head" not in kg.entity_to_id and len(kg.train) == 3 and len(kg.test) == 1
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        kept = load_folder(folder, header=False)
    assert "head" in kept.entity_to_id and len(kept.train) == 4


def test_duplicate_triples_are_counted(tmp_path):
    folder = _folder(tmp_path / "f", TOY + "a\tr\tb\na\tr\tb\n")
    with pytest.warns(DuplicateTriplesWarning, match=r"train: 2 of 5"):
        kg = load_folder(folder)
    assert len(kg.train) == 5


def test_test_split_with_nothing_to_rank_fails_before_training(tmp_path, capsys):
    root = tmp_path / "root"
    _folder(root / "codex-s", TOY * 3, test="x\tr\ty\n")
    args = ["train", "--dataset", "codex-s", "--data-root", str(root), "--model", "cp",
            "--rank", "2", "--epochs", "1", "--out", str(tmp_path / "out"), "--quiet"]  # fmt: skip
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        assert main(args) == 2
    assert "no triple to rank" in capsys.readouterr().err
    assert not (tmp_path / "out").exists()  # before training: no checkpoint written


@pytest.fixture(scope="module")
def compiled():
    import circuitkg as ckg

    torch.manual_seed(0)
    return ckg.compile(ckg.models.CP(6, 3, 2, form="squared"))


def test_bad_query_arguments_are_library_errors(compiled):
    from circuitkg.compilers import create_model

    from circuitkg.errors import EvidenceError, ModelSpecError

    with pytest.raises(EvidenceError, match="row 1 is all zero"):
        compiled.log_conditional(
            "o", s=torch.tensor([0, 1]), r=torch.tensor([[1.0, 0, 0], [0, 0, 0]])
        )
    with pytest.raises(EvidenceError, match=r"1-D tensor.*shape \(2, 1\)"):
        compiled.log_conditional("o", s=torch.tensor([[0], [1]]), r=torch.tensor([0, 1]))
    with pytest.raises(EvidenceError, match="num_samples must be a whole number, got 2.5"):
        compiled.sample(2.5)
    with pytest.raises(EvidenceError, match="names need a vocabulary.*vocabulary=kg"):
        compiled.sample(3, given={"s": "alice"})
    with pytest.raises(ModelSpecError, match="unknown model 'transh'"):
        create_model("transh", 5, 2, 3)
    for rank in (0, 2.5):
        with pytest.raises(ModelSpecError, match=f"rank must be a positive integer, got {rank}"):
            create_model("cp", 5, 2, rank)
    assert main(["info", "--dataset", "nations", "--model", "cp", "--rank", "0"]) == 2


def test_constrained_topk_and_sample_take_names():
    from circuitkg.constraints import biomedical_kg, constrain

    import circuitkg as ckg
    from circuitkg.errors import EvidenceError

    kg, schema = biomedical_kg(num_triples=200, seed=1)
    torch.manual_seed(0)
    model = ckg.models.CP(kg.num_entities, kg.num_relations, 2, form="squared")
    circuit = constrain(ckg.compile(model), schema.bind(kg))
    s, r = (kg.id_to_entity[int(kg.train[0, 0])], kg.id_to_relation[int(kg.train[0, 1])])
    with pytest.raises(EvidenceError, match="k must be a positive integer, got -1"):
        circuit.topk("o", k=-1, s=s, r=r)
    draws = circuit.sample(5, given={"s": s}, generator=torch.Generator().manual_seed(0))
    assert (draws[:, 0] == kg.entity_to_id[s]).all()


def test_truncated_schema_json_gz_names_the_file(tmp_path):
    import gzip

    from circuitkg.constraints import DomainSchema, SchemaFormatError

    file = tmp_path / "schema.json.gz"
    file.write_bytes(gzip.compress(b'{"entity_types": {}}')[:-6])
    with pytest.raises(SchemaFormatError, match=r"schema\.json\.gz: not a complete gzip file"):
        DomainSchema.from_json(file)
    file.write_bytes(b"not gzip at all")
    with pytest.raises(SchemaFormatError, match=r"schema\.json\.gz: not a complete gzip file"):
        DomainSchema.from_json(file)


def test_data_loading_failures_are_circuitkg_errors(tmp_path):
    """A missing folder, an unknown name or option: CircuitKGError subclasses that still match the
    builtin exception a caller may catch (FileNotFoundError, ValueError)."""
    from circuitkg.data import (
        DataArgumentError,
        DatasetNotFoundError,
        load,
        load_folder,
        load_inductive,
        load_ookb,
    )
    from circuitkg.errors import CircuitKGError

    cases = [
        (lambda: load_folder(tmp_path / "absent"), DatasetNotFoundError, FileNotFoundError),
        (lambda: load("no-such-dataset"), DataArgumentError, ValueError),
        (lambda: load_ookb("wn11", setting="sideways"), DataArgumentError, ValueError),
        (lambda: load_ookb("wn11", root=tmp_path), DatasetNotFoundError, FileNotFoundError),
        (
            lambda: load_inductive("fb237_v1", root=tmp_path),
            DatasetNotFoundError,
            FileNotFoundError,
        ),
    ]
    for call, ours, builtin in cases:
        with pytest.raises(ours) as info:
            call()
        assert isinstance(info.value, CircuitKGError) and isinstance(info.value, builtin)
