"""Data-parallel training: every process trains on its part of each global batch.

Every process holds the whole model (replicated tables) and draws the same batch order (the
trainer's generator is seeded by ``config.seed``, so all ranks draw the same permutation). Of each
global batch of ``B`` triples, rank ``i`` takes the ``i``-th of ``N`` contiguous parts,
``B_i ∈ {⌊B/N⌋, ⌈B/N⌉}`` triples, and computes its loss ``L_i`` (a mean over its part) with the
Grams computed locally over the replicated tables. Each objective of the trainer is a mean over the
batch of per-triple terms plus batch-independent ones (``log Z``), so the single-process loss is

    L = Σ_i (B_i / B) L_i   and   ∇L = Σ_i (B_i / B) ∇L_i,

which is what one all-reduce of the gradients scaled by ``B_i / B`` gives, on every rank. Every
rank then takes the same optimiser step from the same gradient: the parameters stay equal across
ranks and equal to a single-process run with the same global batch and seed, up to the rounding of
the sum (a test). A part with no triple (``B < N`` on the last batch of an epoch) computes the loss
of one triple with weight 0, so every rank backpropagates through the same parameters. The margin
objective draws its corruptions per process, so it is equal in distribution only.

This is DDP's contract, done as one explicit all-reduce per step rather than through
``DistributedDataParallel``: the trainer's gathers give sparse row gradients that a hook turns
dense once per step (:mod:`circuitkg.params.gather`), after DDP's per-parameter hooks would have
fired on the sparse ones; one flat buffer of all gradients is reduced after ``backward`` instead.

**Cost per step.** Compute: the ``O((n + m) K²)`` Grams on every rank (not divided), the
batch terms divided by ``N``. Communication: one all-reduce of ``4 P + 4 T`` bytes (float32; ``P``
parameters, ``T`` tensors: a has-gradient flag each) plus one of the loss (4 bytes); a ring moves
``2 (N - 1) / N`` times that in and out of each process. Memory: the single-process model,
optimiser state and gradients on every rank, plus the ``4 P``-byte buffer.

Checkpoints are written by rank 0 only, in the single-process format (the trainer's ``_save``);
validation runs on every rank (replicated), so early stopping decides the same everywhere.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path

import torch
from torch import Tensor

from circuitkg.compilers import KGEModel
from circuitkg.data import KnowledgeGraph, load
from circuitkg.distributed.world import World
from circuitkg.train import TrainConfig, Trainer
from circuitkg.train.preparation import prepare_model
from circuitkg.train.trainer import TrainResult


class DataParallel:
    """The trainer's ``parallel`` hook for ``world`` (module docstring)."""

    def __init__(self, world: World) -> None:
        self.world = world

    @property
    def writes_checkpoints(self) -> bool:
        return self.world.is_main

    def local(self, batch: Tensor) -> tuple[Tensor, float]:
        """This rank's part of a global ``batch`` and its weight ``B_i / B``; an empty part is
        one triple of weight 0."""
        part = torch.tensor_split(batch, self.world.size)[self.world.rank]
        if len(part) == 0:
            return batch[:1], 0.0
        return part, len(part) / len(batch)

    def loss(self, local: Tensor, weight: float) -> tuple[Tensor, Tensor]:
        """``(weight · local, Σ_ranks weight · local)``: the term this rank backpropagates and the
        global loss (detached), equal on every rank."""
        scaled = local * weight
        total = scaled.detach().clone().reshape(1)
        self.world.all_reduce(total)
        return scaled, total[0]

    def reduce_gradients(self, params: list[Tensor]) -> None:
        """Sum every gradient over the ranks in one all-reduce; a parameter gets a gradient when
        some rank has one (as a single process would)."""
        reference = params[0]
        flags = torch.tensor(
            [float(p.grad is not None) for p in params], dtype=reference.dtype,
            device=reference.device,
        )  # fmt: skip
        parts = [
            p.grad.reshape(-1) if p.grad is not None else p.new_zeros(p.numel()) for p in params
        ]
        flat = torch.cat([*parts, flags])
        self.world.all_reduce(flat)
        grads = flat[: -len(params)].split([p.numel() for p in params])
        for p, grad, flag in zip(params, grads, flat[-len(params) :].tolist(), strict=True):
            p.grad = grad.view_as(p) if flag else None


def train_distributed(
    config: TrainConfig,
    world: World,
    kg: KnowledgeGraph | None = None,
    *,
    model: KGEModel | None = None,
    out: str | os.PathLike[str] | None = None,
    init_from: str | os.PathLike[str] | None = None,
    resume: str | os.PathLike[str] | None = None,
    log: Callable[[str], None] | None = None,
) -> TrainResult:
    """:func:`circuitkg.train.train` in the process group ``world``: every rank calls it with the
    same arguments; rank 0 logs and writes ``out``. With ``resume`` (a run folder or checkpoint),
    the run continues from it on every rank (``config`` only sets ``epochs`` then)."""
    kg = kg if kg is not None else load(config.dataset, config.data_root)
    quiet: Callable[[str], None] = lambda _: None  # noqa: E731
    options = {
        "progress": world.is_main,
        "log": log if world.is_main else quiet,
        "device": world.device,
        "parallel": DataParallel(world),
    }
    if resume is not None:
        trainer = Trainer.resume(Path(resume), kg, epochs=config.epochs, out=out, **options)
    else:
        model = prepare_model(config, kg, model, init_from)
        trainer = Trainer(config, kg, model, out=out, **options)
    result = trainer.fit()
    world.barrier("the end of training")
    return result
