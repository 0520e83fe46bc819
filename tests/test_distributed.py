"""Multi-process tests on gloo (CPU): data-parallel and entity-sharded training against one
process, entity-sharded queries and samples against the unsharded model, a dying process, resume.

Each test starts its processes once with :func:`circuitkg.distributed.spawn` (process start-up and
imports dominate: a few seconds per spawn) and checks everything of its kind inside them; the
references are computed independently in the same processes by the ordinary single-process code
(an unsharded compiled model, a one-process ``Trainer``).
"""

from __future__ import annotations

import os
import time
from pathlib import Path

import pytest
import torch
from circuitkg.compilers import create_model

import circuitkg as ckg
from circuitkg.cli import main
from circuitkg.cli.train import without_nproc
from circuitkg.data import KnowledgeGraph
from circuitkg.distributed import (
    Partition,
    ProcessFailedError,
    ShardedCircuit,
    World,
    init_world,
    shard_model,
    spawn,
    torchrun_command,
    train_distributed,
    train_sharded,
)
from circuitkg.errors import DistributedError
from circuitkg.train import TrainConfig, Trainer, load_checkpoint
from circuitkg.train.preparation import build_model

MODELS = ("cp", "distmult", "complex", "rescal", "tucker")
COLUMN = {"s": 0, "r": 1, "o": 2}


def tiny_kg(num_entities: int = 13, num_relations: int = 3, size: int = 61) -> KnowledgeGraph:
    generator = torch.Generator().manual_seed(5)
    triples = torch.stack(
        [
            torch.randint(0, num_entities, (size,), generator=generator),
            torch.randint(0, num_relations, (size,), generator=generator),
            torch.randint(0, num_entities, (size,), generator=generator),
        ],
        dim=1,
    )
    entities = [f"e{i}" for i in range(num_entities)]
    relations = [f"r{i}" for i in range(num_relations)]
    splits = {"train": triples, "valid": triples[:8], "test": triples[8:16]}
    return KnowledgeGraph.from_vocabularies("tiny", entities, relations, splits)


def _sharded_queries(world: World) -> dict[str, object]:
    """Max differences between sharded and unsharded queries, per model; samples per model."""
    triples = torch.tensor([[0, 1, 5], [10, 2, 3], [4, 0, 4], [12, 1, 0]])
    out: dict[str, object] = {}
    for name in MODELS:
        torch.manual_seed(0)
        model = create_model(name, 13, 3, 3, "squared")
        full = ckg.compile(model).eval()
        sharded = ShardedCircuit(model, world)
        with torch.no_grad():
            pairs = [(sharded.log_partition(), full.log_partition())]
            pairs.append((sharded.log_prob(triples), full.log_prob(triples)))
            pairs.append((sharded.score(triples), full.score(triples)))
            for given in (("s", "r"), ("s",), ("o",)):
                evidence = {v: triples[:, COLUMN[v]] for v in given}
                pairs.append((sharded.log_marginal(**evidence), full.log_marginal(**evidence)))
            probabilities = []
            for target, given in (("s", ("r", "o")), ("r", ("s", "o")), ("o", ("s", "r")),
                                  ("o", ("s",)), ("s", ("r",))):  # fmt: skip
                evidence = {v: triples[:, COLUMN[v]] for v in given}
                value = triples[:, COLUMN[target]]
                pairs.append(
                    (
                        sharded.log_conditional_of(target, value, **evidence),
                        full.log_conditional_of(target, value, **evidence),
                    )
                )
                probabilities.append(
                    (
                        sharded.log_conditional(target, **evidence).exp(),
                        full.log_conditional(target, **evidence).exp(),
                    )
                )
            log_p, ids = sharded.topk("o", 5, s=triples[:, 0], r=triples[:, 1])
            ref_p, ref_ids = full.log_conditional("o", s=triples[:, 0], r=triples[:, 1]).topk(5)
        out[name] = {
            "log": max(float((a - b).abs().max()) for a, b in pairs),
            "p": max(float((a - b).abs().max()) for a, b in probabilities),
            "topk": (bool(torch.equal(ids, ref_ids)), float((log_p - ref_p).abs().max())),
            "samples": sharded.sample(2000, seed=world.size),
            "given": sharded.sample(1000, given={"r": 1}, seed=1),
        }
    torch.manual_seed(0)
    score = create_model("complex", 13, 3, 3, "score")
    full = ckg.compile(score).eval()
    sharded = ShardedCircuit(score, world)
    evidence = {"s": triples[:, 0], "r": triples[:, 1]}
    with torch.no_grad():
        diff = sharded.log_conditional("o", **evidence) - full.log_conditional("o", **evidence)
    out["complex-score"] = float(diff.abs().max())
    return out


def _check_sharded(results: list[dict[str, object]]) -> None:
    for name in MODELS:
        per_rank = [r[name] for r in results]
        first = per_rank[0]
        assert first["log"] < 1e-4, (name, first["log"])
        assert first["p"] < 1e-5, (name, first["p"])
        assert first["topk"][0] and first["topk"][1] < 1e-4, (name, first["topk"])
        for other in per_rank[1:]:  # every rank returns the same samples
            assert torch.equal(other["samples"], first["samples"])
        torch.manual_seed(0)
        full = ckg.compile(create_model(name, 13, 3, 3, "squared"))
        ckg.testing.assert_samples_follow(full, first["samples"], alpha=1e-4)
        ckg.testing.assert_samples_follow(full, first["given"], given={"r": 1}, alpha=1e-4)
    assert results[0]["complex-score"] < 1e-4


def _data_parallel(world: World, out: str) -> dict[str, object]:
    """Two epochs data-parallel (global batch 16, so the last batch of 61 triples is 13, split
    unevenly) with checkpoints; the same run on one process; then a resume to epoch 3 against
    an uninterrupted 3-epoch run."""
    kg = tiny_kg()
    config = TrainConfig(model="complex", rank=4, batch_size=16, epochs=2, eval_every=1,
                         patience=0, seed=3, lr=0.05)  # fmt: skip
    result = train_distributed(config, world, kg, out=out)
    single = Trainer(config, kg, build_model(config, kg), progress=False, log=lambda _: None)
    reference = single.fit()
    resumed = train_distributed(config.replace(epochs=3), world, kg, resume=out, out=out)
    straight = Trainer(
        config.replace(epochs=3), kg, build_model(config, kg), progress=False, log=lambda _: None
    ).fit()
    params = {n: p.detach().clone() for n, p in result.model.named_parameters()}
    return {
        "params": params,
        "reference": {n: p.detach().clone() for n, p in reference.model.named_parameters()},
        "losses": [h["loss"] for h in result.state.history],
        "reference_losses": [h["loss"] for h in reference.state.history],
        "resumed": {n: p.detach().clone() for n, p in resumed.model.named_parameters()},
        "straight": {n: p.detach().clone() for n, p in straight.model.named_parameters()},
        "resumed_losses": [h["loss"] for h in resumed.state.history],
        "straight_losses": [h["loss"] for h in straight.state.history],
        "files": sorted(p.name for p in Path(out).iterdir()),
    }


def _check_data_parallel(results: list[dict[str, object]], out: Path) -> None:
    first = results[0]
    for name, value in first["params"].items():
        assert torch.allclose(value, first["reference"][name], atol=1e-5), name
        for other in results[1:]:
            assert torch.equal(other["params"][name], value), name  # ranks stay identical
    assert first["losses"] == pytest.approx(first["reference_losses"], rel=1e-5)
    for name, value in first["resumed"].items():
        assert torch.allclose(value, first["straight"][name], atol=1e-5), name
    assert first["resumed_losses"] == pytest.approx(first["straight_losses"], rel=1e-5)
    assert {"best", "last"} <= set(first["files"])
    assert load_checkpoint(out / "last").state.epoch == 3  # the ordinary single-process format
    checkpoint = load_checkpoint(out / "best")  # what fit() restored at the end
    for name, value in checkpoint.model.named_parameters():
        assert torch.allclose(value, first["resumed"][name], atol=1e-6), name


def _sharded_training(world: World, folder: str) -> dict[str, dict[str, float]]:
    """Two epochs of each model with sharded entity tables against one process: the largest
    difference of each parameter (a rank's rows against the same rows of the whole table, and
    the checkpoint of the gathered model written to ``folder/NAME/best``)."""
    kg = tiny_kg()
    out = {}
    for name in ("cp", "distmult", "complex"):
        config = TrainConfig(model=name, rank=4, batch_size=16, epochs=2, eval_every=1,
                             patience=0, seed=3, lr=0.05)  # fmt: skip
        sharded = train_sharded(config, world, kg, out=f"{folder}/{name}").model
        single = Trainer(config, kg, build_model(config, kg), progress=False, log=lambda _: None)
        whole = dict(single.fit().model.named_parameters())
        saved = load_checkpoint(f"{folder}/{name}/best").model.named_parameters()
        out[f"{name} checkpoint"] = {k: float((v - whole[k]).abs().max()) for k, v in saved}
        diffs = {}
        for key, value in sharded.named_parameters():
            table, _, _ = key.rpartition(".local.weight")
            if table:
                part = sharded.get_submodule(table)
                reference = whole[f"{table}.weight"][part.start : part.stop]
            else:
                reference = whole[key]
            diffs[key] = float((value - reference).abs().max())
        out[name] = diffs
    return out


def _all(world: World, out: str) -> dict[str, object]:
    return {
        "sharded": _sharded_queries(world),
        "dp": _data_parallel(world, out),
        "training": _sharded_training(world, f"{out}-sharded"),
    }


@pytest.mark.parametrize("nproc", [2, 3])
def test_sharded_queries_and_training_and_data_parallel_match_one_process(
    nproc: int, tmp_path: Path
) -> None:
    results = spawn(_all, nproc, str(tmp_path / "run"), timeout=240)
    _check_sharded([r["sharded"] for r in results])
    _check_data_parallel([r["dp"] for r in results], tmp_path / "run")
    for result in results:
        for name, diffs in result["training"].items():
            assert max(diffs.values()) < 1e-5, (name, diffs)
            if "checkpoint" not in name:
                assert any(key.endswith(".local.weight") for key in diffs), name


def _dies(world: World, out: str) -> float:
    """Rank 1 exits (as a killed process would) in the middle of epoch 2; rank 0 must raise."""
    kg = tiny_kg()
    config = TrainConfig(model="cp", rank=4, batch_size=8, epochs=3, eval_every=0, seed=0)
    if world.rank == 1:
        original = Trainer._step

        def step(self, batch, epoch, index):
            if epoch == 2 and index == 2:
                os._exit(3)
            return original(self, batch, epoch, index)

        Trainer._step = step
    start = time.monotonic()
    try:
        train_distributed(config, world, kg, out=out)
    except DistributedError:
        raise DistributedError(f"stopped after {time.monotonic() - start:.1f} s") from None
    return time.monotonic() - start


def test_dying_process_stops_the_others_and_resume_continues(tmp_path: Path) -> None:
    out = tmp_path / "run"
    started = time.monotonic()
    with pytest.raises(ProcessFailedError) as caught:
        spawn(_dies, 2, str(out), collective_timeout=20, grace=25, timeout=120)
    failures = caught.value.failures
    assert failures[1] == "exited with code 3 without a result"
    assert failures[0].startswith("DistributedError: stopped after")
    assert time.monotonic() - started < 60
    last = load_checkpoint(out / "last")
    assert last.state.epoch == 1  # rank 0 wrote epoch 1 before rank 1 died
    resumed = Trainer.resume(out, progress=False, log=lambda _: None, kg=tiny_kg()).fit()
    assert resumed.state.epoch == 3
    config = last.config
    straight = Trainer(config, tiny_kg(), build_model(config, tiny_kg()), progress=False,
                       log=lambda _: None).fit()  # fmt: skip
    for (name, a), (_, b) in zip(
        resumed.model.named_parameters(), straight.model.named_parameters(), strict=True
    ):
        assert torch.allclose(a, b, atol=1e-5), name


def test_refusals_name_what_is_wrong(monkeypatch: pytest.MonkeyPatch) -> None:
    world = World(rank=0, size=1, device=torch.device("cpu"), timeout=1.0)
    with pytest.raises(DistributedError, match="monotone"):
        shard_model(create_model("cp", 5, 2, 2, "monotone"), world)
    with pytest.raises(DistributedError, match="cannot split 2 values over 3"):
        Partition(2, 3)
    monkeypatch.delenv("MASTER_ADDR", raising=False)
    monkeypatch.setenv("RANK", "0")
    monkeypatch.setenv("WORLD_SIZE", "2")
    with pytest.raises(DistributedError, match="MASTER_ADDR"):
        init_world()


def test_nproc_reruns_the_command_under_torchrun() -> None:
    argv = ["train", "--dataset", "umls", "--nproc", "2", "--epochs", "1", "--nproc=2"]
    assert without_nproc(argv) == ["train", "--dataset", "umls", "--epochs", "1"]
    command = torchrun_command(2, ["train", "--epochs", "1"])
    assert command[1:] == ["-m", "torch.distributed.run", "--standalone", "--nproc-per-node=2",
                           "-m", "circuitkg", "train", "--epochs", "1"]  # fmt: skip
    assert main(["train", "--nproc", "0"]) == 2  # a usage error, before anything starts
