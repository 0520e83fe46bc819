"""Training an entity-sharded model: each rank updates its own entity rows.

Every rank runs the whole global batch through the sharded model
(:func:`~circuitkg.distributed.shard_model`): the Grams are the all-reduced sums of the per-rank
Grams and the batch's entity rows are gathered, so every rank computes the same loss, and the
backward passes of those collectives need no communication
(:mod:`~circuitkg.distributed.sharded_table`). Each rank's gradient of its rows equals the
unsharded gradient's rows, the replicated relation tables and weights get the same gradient on
every rank, so the optimiser (whose state is per parameter) takes the unsharded step: the run
equals a single-process one up to rounding (a test).

**Cost per step** (``E`` entity tables of width ``W``, ``n`` entities over ``N`` ranks, batch
``B``): compute ``4 E n W² / N`` for the Grams and their backward, plus the replicated batch
terms; memory ``16 E n W / N`` bytes of rows, gradients and Adam's moments plus the replicated
relation parameters; communication one all-reduce of ``4 W²`` bytes per entity table and one of
``4 B W`` per gathered variable (``s``, ``o``; once per step, :func:`memoised_in_step
<circuitkg.executor.step.memoised_in_step>`), independent of ``n``.

With ``out``, the trained model (the best validation parameters, as :meth:`Trainer.fit
<circuitkg.train.Trainer.fit>` restores them) is gathered into an unsharded model
(:func:`gather_model`, ``≈ 8 n W`` bytes per entity table, once) and rank 0 writes it to
``out/best`` in the single-process format, for ``evaluate``, ``predict``, ``sample`` and
``--init-from``; per-epoch checkpoints with the optimiser state (and so ``--resume``) are not
written. Validation MRR ranks through the
executor's all-value plan, whose contraction all-gathers ``(B, n)`` scores.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path

import torch
from torch import Tensor

from circuitkg.compilers import KGEModel
from circuitkg.data import KnowledgeGraph, load
from circuitkg.distributed.sharded import shard_model
from circuitkg.distributed.world import World
from circuitkg.train import TrainConfig, Trainer
from circuitkg.train.checkpoint import save_checkpoint
from circuitkg.train.preparation import build_model
from circuitkg.train.trainer import TrainResult


class EntitySharded:
    """The trainer's ``parallel`` hook of a sharded model: every rank takes the whole batch, the
    loss is already the same on every rank, nothing is reduced, no checkpoint is written."""

    writes_checkpoints = False

    def local(self, batch: Tensor) -> tuple[Tensor, float]:
        return batch, 1.0

    def loss(self, local: Tensor, weight: float) -> tuple[Tensor, Tensor]:
        return local, local.detach()

    def reduce_gradients(self, params: list[Tensor]) -> None:
        """Nothing to reduce: each rank's gradients are already the unsharded ones."""


def gather_model(sharded: KGEModel, whole: KGEModel) -> KGEModel:
    """``whole`` (an unsharded model of the same kind and sizes) with ``sharded``'s parameters,
    the entity rows of every rank gathered (on every rank); returns ``whole``."""
    target = dict(whole.named_parameters())
    with torch.no_grad():
        for name, value in sharded.named_parameters():
            table, _, _ = name.rpartition(".local.weight")
            if table:
                target[f"{table}.weight"].copy_(sharded.get_submodule(table).full())
            else:
                target[name].copy_(value)
    return whole


def train_sharded(
    config: TrainConfig,
    world: World,
    kg: KnowledgeGraph | None = None,
    *,
    out: str | os.PathLike[str] | None = None,
    log: Callable[[str], None] | None = None,
) -> TrainResult:
    """Train the model ``config`` describes with its entity tables sharded over ``world``
    (module docstring); every rank calls it alike. The result's model is the rank's sharded
    model (its rows of each entity table, the replicated rest); ``out`` receives ``best/``."""
    kg = kg if kg is not None else load(config.dataset, config.data_root)
    model = shard_model(build_model(config, kg), world)  # initialised whole, then split
    trainer = Trainer(
        config, kg, model, progress=world.is_main, log=log if world.is_main else lambda _: None,
        device=world.device, parallel=EntitySharded(),
    )  # fmt: skip
    result = trainer.fit()
    if out is not None:
        whole = gather_model(result.model, build_model(config, kg).to(world.device))
        if world.is_main:
            save_checkpoint(Path(out) / "best", whole, config, result.state, kg=kg)
        world.barrier("writing the sharded run's checkpoint")
    return result
