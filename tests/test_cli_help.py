"""The ``circuitkg`` command's surface: fast help, described options, ``models``, folders as
datasets, ``--device``, progress output in logs, ``plot``."""

import argparse
import dataclasses
import json
import subprocess
import sys

import pytest
import torch
from circuitkg.compilers import MODELS

import circuitkg as ckg
from circuitkg.cli import main
from circuitkg.cli.defaults import config_choices, dataset_names, init_schemes, train_defaults
from circuitkg.cli.parser import build_parser
from circuitkg.data import EXTERNAL_DATASETS, SHIPPED_DATASETS
from circuitkg.train import TrainConfig
from circuitkg.train import config as config_module
from circuitkg.train.initialisation import INITS

pytestmark = pytest.mark.usefixtures("one_thread")


@pytest.mark.parametrize("argv", [["--help"], ["train", "--help"], ["sample", "--help"]])
def test_help_does_not_import_torch(argv):
    code = (
        "import sys\nfrom circuitkg.cli import main\ntry:\n"
        f"    main({argv!r})\nexcept SystemExit:\n    pass\n"
        "assert 'torch' not in sys.modules, 'torch was imported'\n"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    assert "usage: circuitkg" in done.stdout


def test_help_defaults_are_those_of_the_config():
    """The values read from the sources without importing torch equal the imported ones."""
    config = TrainConfig()
    defaults = train_defaults()
    literal = {f.name for f in dataclasses.fields(TrainConfig)} - {"model_kwargs"}
    assert set(defaults) == literal
    for name, value in defaults.items():
        theirs = getattr(config, name)
        assert (tuple(value) if isinstance(value, tuple) else value) == theirs, name
    for name in ("OBJECTIVES", "OPTIMIZERS", "LOSSES", "SCHEMA_VIOLATIONS"):
        assert config_choices(name) == tuple(getattr(config_module, name))
    assert dataset_names() == SHIPPED_DATASETS + EXTERNAL_DATASETS
    assert init_schemes() == tuple(INITS)


def _actions(parser: argparse.ArgumentParser):
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for name, sub in action.choices.items():
                yield from ((name, a) for a in sub._actions)


def test_every_option_is_described():
    undescribed = [
        f"{command} {a.option_strings or a.dest}"
        for command, a in _actions(build_parser())
        if not isinstance(a, argparse._HelpAction) and not (a.help or "").strip()
    ]
    assert undescribed == []


def test_models_lists_every_model_with_its_forms(capsys):
    assert main(["models"]) == 0
    lines = capsys.readouterr().out.splitlines()
    rows = {line.split()[0]: line for line in lines[1:]}
    assert set(rows) == set(MODELS)
    # TransE's negative distance has only the score form; ComplEx has all three (paper 004)
    assert "score" in rows["transe"] and "squared" not in rows["transe"]
    assert all(form in rows["complex"] for form in ("score", "monotone", "squared"))


@pytest.fixture
def folder(tmp_path):
    """A dataset folder of a 6-entity graph, with names that are no benchmark's."""
    data = tmp_path / "mykg"
    data.mkdir()
    people = ["ann", "bob", "cat", "dan", "eve", "fay"]
    train = [(a, "knows", b) for a in people for b in people if a < b]
    train += [(b, "likes", a) for a, _, b in train[:8]]
    files = {"train": train, "valid": [("ann", "likes", "cat")], "test": [("bob", "likes", "eve")]}
    for split, rows in files.items():
        (data / f"{split}.txt").write_text("".join("\t".join(r) + "\n" for r in rows))
    return data


def test_train_on_a_folder_then_predict_by_name(folder, tmp_path, capsys):
    out = tmp_path / "run"
    args = ["train", "--dataset", str(folder), "--model", "cp", "--rank", "4", "--epochs", "2",
            "--eval-every", "0", "--out", str(out), "--quiet", "--device", "cpu"]  # fmt: skip
    assert main(args) == 0
    recorded = json.loads((out / "best" / "config.json").read_text())["train"]["dataset"]
    assert recorded == str(folder.resolve())  # found again from anywhere
    again = ckg.load(out)  # a CLI run folder loads as a pipeline result
    assert again.kg.name == "mykg" and len(again.losses) == 2 and "mrr" in again.metrics
    capsys.readouterr()
    assert main(["predict", "--checkpoint", str(out), "--s", "ann", "--r", "knows", "-k", "3"]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert lines[0].startswith("top 3 for (ann, knows, ?)") and len(lines) == 4


def test_a_folder_without_a_split_names_the_folder(folder, capsys):
    (folder / "valid.txt").unlink()
    assert main(["train", "--dataset", str(folder), "--epochs", "1"]) == 2
    err = capsys.readouterr().err
    assert str(folder.resolve()) in err and "valid" in err and "Traceback" not in err


@pytest.mark.skipif(torch.cuda.is_available(), reason="checks the message on a CPU-only torch")
def test_device_cuda_without_a_gpu_is_a_usage_error(capsys):
    assert main(["train", "--dataset", "nations", "--epochs", "1", "--device", "cuda"]) == 2
    assert "--device cuda" in capsys.readouterr().err


def test_progress_in_a_pipe_is_one_line_per_epoch(folder):
    """Without a terminal, no tqdm bar: the output holds no carriage return."""
    code = (
        "from circuitkg.cli import main\n"
        f"main(['train', '--dataset', {str(folder)!r}, '--model', 'cp', '--rank', '2', "
        "'--epochs', '3', '--eval-every', '0', '--batch-size', '4', '--threads', '1'])\n"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    assert "\r" not in done.stdout + done.stderr
    epochs = [line for line in (done.stdout + done.stderr).splitlines() if "loss" in line]
    assert [line.split(":")[0] for line in epochs] == ["epoch 1/3", "epoch 2/3", "epoch 3/3"]


def test_plot_writes_two_pngs(folder, tmp_path, capsys):
    pytest.importorskip("matplotlib")
    out = tmp_path / "run"
    args = ["train", "--dataset", str(folder), "--model", "cp", "--rank", "2", "--epochs", "2",
            "--eval-every", "1", "--out", str(out), "--quiet"]  # fmt: skip
    assert main(args) == 0
    assert main(["plot", str(out)]) == 0
    for name in ("loss.png", "reliability.png"):
        assert (out / name).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
