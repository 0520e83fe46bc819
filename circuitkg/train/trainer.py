"""The training loop: mini-batches, optimiser, N3, early stopping, checkpoints, NaN guard.

One epoch visits the training triples once in an order drawn from a generator seeded by
``config.seed`` (its state is checkpointed, so a resumed run continues with the same batches as an
uninterrupted one). Every ``eval_every`` epochs the filtered validation MRR (both directions) is
computed; the best parameters are kept and restored at the end, and training stops after
``patience`` evaluations without improvement. With an output folder, ``<out>/last`` is written after
every epoch (for :meth:`Trainer.resume`) and ``<out>/best`` whenever validation MRR improves (and at
the end when there was no validation, or when a resumed run writes to a new folder).

With ``config.schema`` (a JSON domain schema) the schema is bound to the knowledge graph, training
triples that violate it raise :class:`~circuitkg.constraints.SchemaError` or are dropped
(``config.schema_violations``), and the model is trained through
:func:`~circuitkg.constraints.constrain` (paper 004's D-ComplEx²): the objective, the validation MRR
and :attr:`TrainResult.compiled` use the constrained circuit, which gives every triple that breaks
the schema probability exactly 0.

The NaN guard checks the loss before each backward pass and the parameters after each step; on a
non-finite value it raises :class:`TrainingDivergedError` naming the epoch, step and parameter, and no
checkpoint with that state is written (:func:`save_checkpoint` refuses non-finite tensors too).
"""

from __future__ import annotations

import os
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

import torch
from torch import Tensor
from tqdm.auto import tqdm

from circuitkg.compile import compile as compile_
from circuitkg.compilers import KGEModel
from circuitkg.constraints import (
    BoundSchema,
    ConstrainedCircuit,
    constrain,
)
from circuitkg.data import KnowledgeGraph
from circuitkg.errors import CircuitKGError
from circuitkg.eval.ranking import evaluate_ranking, keyword_scorer
from circuitkg.executor import CompiledCircuit, training_step
from circuitkg.train.checkpoint import (
    CheckpointError,
    TrainState,
    load_checkpoint,
    recover_checkpoint,
    save_checkpoint,
)
from circuitkg.train.config import TrainConfig
from circuitkg.train.objectives import make_objective
from circuitkg.train.preparation import (
    build_model,
    dataset_of,
    prepare_model,
    resume_path,
    schema_training_data,
)
from circuitkg.train.regularisers import n3
from circuitkg.train.tensor_state import load_parameters, model_tensors

__all__ = ["TrainResult", "Trainer", "TrainingDivergedError", "train"]


class TrainingDivergedError(CircuitKGError, FloatingPointError):
    """The loss or a parameter became NaN or infinite; the message says where."""


class Parallel(Protocol):
    """What a multi-process run changes in a step (:class:`circuitkg.distributed.DataParallel`):
    the rank's part of the global batch and its weight, the global loss, the gradient reduction,
    and whether this process writes checkpoints. ``None`` in :class:`Trainer`: one process."""

    writes_checkpoints: bool

    def local(self, batch: Tensor) -> tuple[Tensor, float]: ...

    def loss(self, local: Tensor, weight: float) -> tuple[Tensor, Tensor]: ...

    def reduce_gradients(self, params: list[Tensor]) -> None: ...


@dataclass
class TrainResult:
    """The trained model (best validation parameters restored), its compiled module (constrained
    when the run had a schema) and the run's state; ``out`` is the output folder, if any."""

    model: KGEModel
    compiled: CompiledCircuit | ConstrainedCircuit
    config: TrainConfig
    state: TrainState
    out: Path | None


class Trainer:
    """Trains ``model`` on ``kg`` as ``config`` says (see the module docstring).

    ``out`` is the run folder for checkpoints (``None``: none written); ``progress`` shows a tqdm
    bar with the running loss and triples/s when stderr is a terminal (elsewhere, in logs and
    pipes, the bar's ``\r`` updates would flood the output: there only the per-epoch lines
    appear); ``log`` receives one line per epoch. ``parallel`` makes the step data-parallel
    (:mod:`circuitkg.distributed.data_parallel`).
    """

    def __init__(
        self,
        config: TrainConfig,
        kg: KnowledgeGraph | None = None,
        model: KGEModel | None = None,
        *,
        out: str | os.PathLike[str] | None = None,
        progress: bool = True,
        log: Callable[[str], None] | None = None,
        device: str | torch.device = "cpu",
        parallel: Parallel | None = None,
    ) -> None:
        self.config = config
        self.parallel = parallel
        self.log = log if log is not None else tqdm.write
        self.kg = kg if kg is not None else dataset_of(config)
        self.bound: BoundSchema | None = None
        if config.schema is not None:
            self.bound, self.kg = schema_training_data(config, self.kg, self.log)
        self.device = torch.device(device)
        self.model = (model if model is not None else build_model(config, self.kg)).to(self.device)
        self.compiled: CompiledCircuit | ConstrainedCircuit = compile_(self.model)
        if self.bound is not None:
            self.compiled = constrain(self.compiled, self.bound).to(self.device)
        self.objective = make_objective(
            config.objective, pll_weights=config.pll_weights, loss=config.loss, alpha=config.alpha
        )
        self.params = [p for p in self.model.parameters() if p.requires_grad]
        self.param_names = [n for n, p in self.model.named_parameters() if p.requires_grad]
        self.optimizer = _optimizer(config, self.params)
        self.generator = torch.Generator().manual_seed(config.seed)
        self.state = TrainState()
        self.out = Path(out) if out is not None else None
        self.progress = progress
        self.best_params: dict[str, Tensor] | None = None
        self.train_triples = self.kg.train.to(self.device)

    @classmethod
    def resume(
        cls,
        path: str | os.PathLike[str],
        kg: KnowledgeGraph | None = None,
        *,
        epochs: int | None = None,
        out: str | os.PathLike[str] | None = None,
        **kwargs,
    ) -> Trainer:
        """A trainer that continues the run saved at ``path`` (a run folder, its ``last/``, or
        explicitly any checkpoint folder such as ``best/``).

        Parameters, optimizer state, batch order, epoch counter and early-stopping state are
        restored; ``epochs`` raises the total number of epochs. Checkpoints go to ``out``,
        by default the run folder ``path`` came from. A run folder without ``last/`` raises
        :class:`CheckpointError` saying what it holds (never a silent fall-back to ``best/``,
        which would lose the epochs after it); with ``kg``, a checkpoint trained on other
        vocabularies raises :class:`CheckpointError` (:func:`check_vocabulary`).
        """
        path = resume_path(path)
        ckpt = load_checkpoint(path, kg)
        config = ckpt.config if epochs is None else ckpt.config.replace(epochs=epochs)
        run_folder = ckpt.path.parent if ckpt.path.name in ("last", "best") else None
        trainer = cls(config, kg, ckpt.model, out=out if out is not None else run_folder, **kwargs)
        trainer.state = ckpt.state
        if ckpt.optimizer_state is not None:
            try:
                trainer.optimizer.load_state_dict(ckpt.optimizer_state)
            except (ValueError, KeyError, TypeError, RuntimeError) as err:
                raise CheckpointError(
                    f"{ckpt.path}: the optimizer state does not fit the model ({err})"
                ) from None
        if ckpt.generator_state is not None:
            try:
                trainer.generator.set_state(ckpt.generator_state)
            except (RuntimeError, TypeError) as err:
                raise CheckpointError(
                    f"{ckpt.path / 'training.safetensors'}: tensor 'generator' is not a generator "
                    f"state ({err})"
                ) from None
        if ckpt.state.best_epoch is not None and run_folder is not None:
            best_folder = run_folder / "best"
            if not recover_checkpoint(best_folder):
                raise CheckpointError(
                    f"{ckpt.path} records a best validation MRR at epoch {ckpt.state.best_epoch}, "
                    f"but {best_folder} holds no checkpoint"
                )
            trainer.best_params = _clone(model_tensors(load_checkpoint(best_folder).model))
        return trainer

    # --- the loop ------------------------------------------------------------------------------
    def fit(self) -> TrainResult:
        """Train until ``config.epochs`` or early stopping; restore the best parameters."""
        config = self.config
        while self.state.epoch < config.epochs:
            epoch = self.state.epoch + 1
            record = self.train_epoch(epoch)
            self.state.epoch = epoch
            stop = False
            if config.eval_every and epoch % config.eval_every == 0 and len(self.kg.valid):
                record["valid_mrr"] = mrr = self.validation_mrr()
                stop = self._update_best(mrr, epoch)
            self.state.history.append(record)
            self.log(_describe(record, config.epochs))
            self._save("last")
            if stop:
                self.log(
                    f"early stopping after epoch {epoch}: no improvement in {config.patience} "
                    f"evaluations (best validation MRR {self.state.best_metric:.4f} at epoch "
                    f"{self.state.best_epoch})"
                )
                break
        if self.best_params is not None:
            load_parameters(self.model, self.best_params, source="the best validation parameters")
        if self.out is not None and (self.best_params is None or not (self.out / "best").exists()):
            self._save("best")
        return TrainResult(self.model, self.compiled, config, self.state, self.out)

    def train_epoch(self, epoch: int) -> dict[str, float]:
        """One pass over the training triples; returns the epoch's history record."""
        config = self.config
        self.compiled.train()
        order = torch.randperm(len(self.train_triples), generator=self.generator)
        order = order.to(self.device)
        batches = torch.split(order, config.batch_size)
        total_loss, seen, start = 0.0, 0, time.perf_counter()
        bar = tqdm(
            total=len(self.train_triples),
            desc=f"epoch {epoch}/{config.epochs}",
            unit="triple",
            unit_scale=True,
            leave=False,
            disable=not (self.progress and _on_terminal()),
        )
        with bar:
            for i, index in enumerate(batches):
                batch = self.train_triples[index]
                loss = self._step(batch, epoch, i)
                total_loss += loss * len(batch)
                seen += len(batch)
                bar.update(len(batch))
                elapsed = time.perf_counter() - start
                bar.set_postfix(
                    loss=f"{total_loss / seen:.4f}", tps=f"{seen / elapsed:.0f}", refresh=False
                )
        seconds = time.perf_counter() - start
        return {"epoch": epoch, "loss": total_loss / seen, "seconds": seconds,
                "triples_per_second": seen / seconds}  # fmt: skip

    def _step(self, batch: Tensor, epoch: int, index: int) -> float:
        config = self.config
        if self.parallel is not None:
            batch, weight = self.parallel.local(batch)
        self.optimizer.zero_grad(set_to_none=True)
        with training_step():  # the objective and N3 share gathers and Grams
            loss = self.objective(self.compiled, batch)
            if config.reg == "n3" and config.reg_weight > 0:
                loss = loss + config.reg_weight * n3(self.model, batch)
        total = loss
        if self.parallel is not None:
            loss, total = self.parallel.loss(loss, weight)
        where = f"epoch {epoch}, step {self.state.step + 1} (batch {index + 1} of the epoch)"
        if not bool(torch.isfinite(total)):
            raise TrainingDivergedError(
                f"training diverged at {where}: the loss is {total.item()}; no checkpoint was "
                "written for this state (try a lower --lr or a larger --reg weight)"
            )
        loss.backward()
        if self.parallel is not None:
            self.parallel.reduce_gradients(self.params)
        self.optimizer.step()
        self.state.step += 1
        self._check_parameters(where)
        return float(total.detach())

    def _check_parameters(self, where: str) -> None:
        with torch.no_grad():
            sums = torch.stack([p.sum() for p in self.params])
            if bool(torch.isfinite(sums).all()):
                return
            for name, p in zip(self.param_names, self.params, strict=True):
                if not bool(torch.isfinite(p).all()):
                    raise TrainingDivergedError(
                        f"training diverged at {where}: parameter {name!r} became NaN or infinite "
                        "after the optimizer step; no checkpoint was written for this state "
                        "(try a lower --lr or a larger --reg weight)"
                    )

    # --- validation and checkpoints ----------------------------------------------------------------
    def validation_mrr(self) -> float:
        """Filtered MRR on the validation split, both directions, realistic ties."""
        self.compiled.eval()
        result = evaluate_ranking(
            keyword_scorer(self.compiled.score_all),
            self.kg.valid.to(self.device),
            known_triples=self.kg.known_triples().to(self.device),
            num_entities=self.kg.num_entities,
            batch_size=self.config.eval_batch_size,
        )
        return result.mrr

    def _update_best(self, mrr: float, epoch: int) -> bool:
        """Record a validation result; True when early stopping should stop now."""
        state = self.state
        if state.best_metric is None or mrr > state.best_metric:
            state.best_metric, state.best_epoch, state.evals_since_best = mrr, epoch, 0
            self.best_params = _clone(model_tensors(self.model))
            self._save("best")
            return False
        state.evals_since_best += 1
        return bool(self.config.patience) and state.evals_since_best >= self.config.patience

    def _save(self, name: str) -> None:
        if self.out is None or not (self.parallel is None or self.parallel.writes_checkpoints):
            return
        save_checkpoint(
            self.out / name, self.model, self.config, self.state, self.optimizer, self.generator,
            kg=self.kg,
        )  # fmt: skip


def train(
    config: TrainConfig,
    kg: KnowledgeGraph | None = None,
    *,
    model: KGEModel | None = None,
    out: str | os.PathLike[str] | None = None,
    init_from: str | os.PathLike[str] | None = None,
    progress: bool = True,
    log: Callable[[str], None] | None = None,
    device: str | torch.device = "cpu",
) -> TrainResult:
    """Train ``model``, or the model ``config`` describes (optionally initialised from a
    checkpoint). A given model is trained as it is, after :func:`initialise` with ``config.init``
    (so build it under a seed of your choice)."""
    kg = kg if kg is not None else dataset_of(config)
    model = prepare_model(config, kg, model, init_from)
    trainer = Trainer(config, kg, model, out=out, progress=progress, log=log, device=device)
    return trainer.fit()


def _optimizer(config: TrainConfig, params: list[Tensor]) -> torch.optim.Optimizer:
    if config.optimizer == "adam":
        return torch.optim.Adam(params, lr=config.lr)
    return torch.optim.Adagrad(params, lr=config.lr)


def _clone(params: dict[str, Tensor]) -> dict[str, Tensor]:
    return {name: p.detach().clone() for name, p in params.items()}


def _on_terminal() -> bool:
    """True when stderr, where tqdm draws, is an interactive terminal."""
    isatty = getattr(sys.stderr, "isatty", None)
    return bool(isatty and isatty())


def _describe(record: dict[str, float], epochs: int) -> str:
    line = (
        f"epoch {int(record['epoch'])}/{epochs}: loss {record['loss']:.4f}, "
        f"{record['seconds']:.1f} s, {record['triples_per_second']:.0f} triples/s"
    )
    if "valid_mrr" in record:
        line += f", valid MRR {record['valid_mrr']:.4f}"
    return line
