"""Training: objectives (PLL, MLE, 1-vs-all), N3, the training loop, configuration and checkpoints.

>>> from circuitkg.train import TrainConfig, train
>>> result = train(TrainConfig(dataset="nations", model="cp", form="squared", rank=8, epochs=1),
...                progress=False, log=lambda line: None)
>>> result.state.epoch
1
"""

from circuitkg.eval.runner import EvaluationResult, evaluate
from circuitkg.train.checkpoint import (
    Checkpoint,
    CheckpointError,
    CheckpointRecoveredWarning,
    ModelSpec,
    TrainState,
    check_vocabulary,
    load_checkpoint,
    recover_checkpoint,
    resolve_checkpoint,
    save_checkpoint,
)
from circuitkg.train.config import ConfigError, TrainConfig
from circuitkg.train.initialisation import initialise, positive_init
from circuitkg.train.objectives import make_objective, mle_loss, one_vs_all_loss, pll_loss
from circuitkg.train.preparation import build_model, init_from_checkpoint
from circuitkg.train.regularisers import embedding_factors, n3
from circuitkg.train.trainer import Trainer, TrainingDivergedError, TrainResult, train

__all__ = [
    "Checkpoint",
    "CheckpointError",
    "CheckpointRecoveredWarning",
    "ConfigError",
    "EvaluationResult",
    "ModelSpec",
    "TrainConfig",
    "TrainResult",
    "TrainState",
    "Trainer",
    "TrainingDivergedError",
    "build_model",
    "check_vocabulary",
    "embedding_factors",
    "evaluate",
    "init_from_checkpoint",
    "initialise",
    "load_checkpoint",
    "make_objective",
    "mle_loss",
    "n3",
    "one_vs_all_loss",
    "pll_loss",
    "positive_init",
    "recover_checkpoint",
    "resolve_checkpoint",
    "save_checkpoint",
    "train",
]
