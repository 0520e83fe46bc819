"""The training configuration: every choice of a run, JSON-serialisable, validated on creation."""

from __future__ import annotations

import dataclasses
import difflib
from dataclasses import dataclass, field
from typing import Any

from circuitkg.compilers import MODELS
from circuitkg.errors import CircuitKGError
from circuitkg.forms import FORMS
from circuitkg.train.initialisation import INITS

OBJECTIVES = ("pll", "mle", "ce", "bce", "margin")
OPTIMIZERS = ("adam", "adagrad")
LOSSES = ("ce", "label_smoothing", "label_relaxation")
REGULARISERS = ("n3", "none")
SCHEMA_VIOLATIONS = ("error", "drop")
#: what the loader does with valid/test triples naming an entity or relation absent from train
UNSEEN = ("drop", "raise", "keep")


class ConfigError(CircuitKGError, ValueError):
    """A training option has an unknown or out-of-range value."""


@dataclass
class TrainConfig:
    """One training run: data, model, objective, optimiser, schedule and stopping rule.

    ``pll_weights`` are ``(w_s, w_r, w_o)`` of the PLL objective. ``loss``/``alpha`` choose the
    1-vs-all loss (``ce``, ``label_smoothing``, ``label_relaxation``) of the ``ce`` objective.
    ``init`` is an initialisation scheme of :mod:`circuitkg.train.initialisation`.
    ``reg_weight`` is λ of the N3 regulariser (``reg="n3"``). Validation MRR is computed every
    ``eval_every`` epochs (0: never); training stops after ``patience`` evaluations without
    improvement (0: never stops early). ``seed`` fixes initialisation and batch order.

    ``schema`` is the path of a JSON domain schema (:meth:`DomainSchema.from_json
    <circuitkg.constraints.DomainSchema.from_json>`); with it the model is trained, validated and
    evaluated conditioned on the schema (paper 004's D-ComplEx²: ``p ∝ φ² · c``). Training triples
    that violate it raise an error (``schema_violations="error"``) or are dropped (``"drop"``).

    ``unseen`` is the ranking protocol for valid/test triples with a name absent from train
    (:func:`circuitkg.data.load_folder`): ``"drop"`` them, ``"raise"``, or ``"keep"`` them with
    vocabularies over all splits, the protocol of the published benchmark numbers (an entity seen
    only in test is ranked, and normalised over, with its untrained row; the domain is then all
    ``n`` entities, so ``log Z`` and the log-likelihoods sum over it too).
    """

    dataset: str = "umls"
    data_root: str | None = None
    model: str = "complex"
    form: str = "squared"
    rank: int = 100
    model_kwargs: dict[str, Any] = field(default_factory=dict)
    init: str = "auto"
    objective: str = "pll"
    pll_weights: tuple[float, float, float] = (1.0, 1.0, 1.0)
    loss: str = "ce"
    alpha: float = 0.0
    reg: str = "n3"
    reg_weight: float = 1e-2
    optimizer: str = "adam"
    lr: float = 1e-2
    batch_size: int = 256
    epochs: int = 30
    eval_every: int = 5
    patience: int = 3
    eval_batch_size: int = 512
    seed: int = 0
    schema: str | None = None
    schema_violations: str = "error"
    unseen: str = "drop"

    def __post_init__(self) -> None:
        self.pll_weights = tuple(float(w) for w in self.pll_weights)
        self.validate()

    def validate(self) -> None:
        """Raise :class:`ConfigError` naming the first invalid option."""
        check_choice("model", self.model.lower(), sorted(MODELS))
        check_choice("form", self.form, FORMS)
        check_choice("init", self.init, INITS)
        check_choice("objective", self.objective, OBJECTIVES)
        check_choice("optimizer", self.optimizer, OPTIMIZERS)
        check_choice("loss", self.loss, LOSSES)
        check_choice("reg", self.reg, REGULARISERS)
        check_choice("schema_violations", self.schema_violations, SCHEMA_VIOLATIONS)
        check_choice("unseen", self.unseen, UNSEEN)
        if self.schema is not None and not str(self.schema).strip():
            raise ConfigError("schema must be the path of a schema file, got an empty string")
        if self.schema_violations != "error" and self.schema is None:
            raise ConfigError(
                f"schema_violations {self.schema_violations!r} applies only with a schema"
            )
        if self.objective == "mle" and self.form == "score":
            raise ConfigError(
                "objective 'mle' needs a normalised form (monotone or squared); "
                "the score form has no partition function: use objective 'ce' or 'pll'"
            )
        if self.loss != "ce" and self.objective != "ce":
            raise ConfigError(f"loss {self.loss!r} applies to the 'ce' objective only")
        if len(self.pll_weights) != 3 or any(w < 0 for w in self.pll_weights):
            raise ConfigError(
                f"pll_weights must be three non-negative numbers, got {self.pll_weights}"
            )
        positive = {"rank": self.rank, "batch_size": self.batch_size, "lr": self.lr}
        positive["eval_batch_size"] = self.eval_batch_size
        for name, value in positive.items():
            if value <= 0:
                raise ConfigError(f"{name} must be positive, got {value}")
        non_negative = {"epochs": self.epochs, "eval_every": self.eval_every}
        non_negative |= {"patience": self.patience, "reg_weight": self.reg_weight}
        non_negative["alpha"] = self.alpha
        for name, value in non_negative.items():
            if value < 0:
                raise ConfigError(f"{name} must be non-negative, got {value}")

    def to_dict(self) -> dict[str, Any]:
        """A JSON-ready dict (tuples become lists)."""
        out = dataclasses.asdict(self)
        out["pll_weights"] = list(self.pll_weights)
        return out

    @classmethod
    def from_dict(cls, values: dict[str, Any]) -> TrainConfig:
        """The inverse of :meth:`to_dict`; unknown keys raise :class:`ConfigError`, missing keys
        take their defaults (so configurations written before a field existed still load)."""
        names = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(values) - names)
        if unknown:
            raise ConfigError(f"unknown training options {unknown}")
        return cls(**values)

    def replace(self, **changes: Any) -> TrainConfig:
        """A copy with some options changed (validated)."""
        return dataclasses.replace(self, **changes)


def check_choice(option: str, value: str, allowed) -> None:
    """Raise :class:`ConfigError` (with the closest valid name) unless ``value`` is allowed."""
    if value not in allowed:
        close = difflib.get_close_matches(value, list(allowed), n=1)
        hint = f"did you mean {close[0]!r}? " if close else ""
        raise ConfigError(f"unknown {option} {value!r}; {hint}choose one of {', '.join(allowed)}")
