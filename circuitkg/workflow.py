"""The everyday workflow: :func:`pipeline`, one call from data to a trained, evaluated, saveable
model, and :func:`load` (``circuitkg.pipeline`` and ``circuitkg.load``).

::

    import circuitkg as ckg

    result = ckg.pipeline(dataset="nations", model="complex", form="squared", rank=16, epochs=5)
    result.metrics["mrr"]  # filtered test MRR; also hits@k, log_likelihood, ece
    result.topk("o", s="usa", r="embassy", k=5)  # [(name, id, probability), ...]
    result.sample(3, given={"s": "usa"})  # exact samples, by name
    result.save("runs/nations")
    again = ckg.load("runs/nations")

``dataset`` is a dataset name (:func:`circuitkg.data.load`), a folder of ``train``/``valid``/
``test`` triple files (:func:`circuitkg.data.load_folder`) or a
:class:`~circuitkg.data.KnowledgeGraph` (e.g. ``KnowledgeGraph.from_triples(...)``). ``model`` is
a registered model name or a :class:`~circuitkg.compilers.KGEModel` (such as
:func:`circuitkg.interop.pykeen.compile_pykeen`'s result), which is trained from its current
parameters (``init="model"`` unless given). Every other option of
:class:`~circuitkg.train.TrainConfig` is a keyword argument.

**The saved folder** is a run folder as ``circuitkg train --out`` writes it: ``best/`` (the
checkpoint: safetensors + JSON, with the vocabularies), ``metrics.json``, and, for a knowledge
graph built in memory, ``data/`` (its splits as ``head<TAB>relation<TAB>tail`` files, which the
checkpoint then names as its dataset). So ``circuitkg evaluate/predict/sample/plot`` work on it,
and :func:`load` restores the model, the data (ids exactly as trained) and the metrics.

Cost: that of :func:`circuitkg.train.train` plus one :func:`circuitkg.eval.evaluate` of the test
split (filtered ranking ``O(N n K)``, log-likelihood, calibration).
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import torch
from torch import Tensor

from circuitkg.compile import compile as compile_
from circuitkg.compilers import KGEModel
from circuitkg.compilers.base import KG_VARIABLES
from circuitkg.constraints import ConstrainedCircuit, constrain
from circuitkg.data import DataFormatError, KnowledgeGraph, from_triples, load_folder
from circuitkg.data import load as load_dataset
from circuitkg.data.loaders import REQUIRED_SPLITS, SUFFIXES
from circuitkg.errors import CircuitKGError, EvidenceError
from circuitkg.eval.calibration import ReliabilityTable, reliability_table
from circuitkg.eval.runner import EvaluationResult, corrupt, evaluate, triple_probabilities
from circuitkg.executor import CompiledCircuit
from circuitkg.executor.names import Prediction
from circuitkg.train import TrainConfig, TrainState, load_checkpoint, save_checkpoint, train
from circuitkg.train.checkpoint import check_vocabulary
from circuitkg.train.preparation import bind_schema, load_schema

__all__ = [
    "PipelineResult",
    "load",
    "pipeline",
    "reliability",
    "resolve_dataset",
    "resolve_given",
    "topk",
]

#: the files of a saved run folder
CHECKPOINT_DIR, METRICS_FILE, DATA_DIR = "best", "metrics.json", "data"


class PipelineError(CircuitKGError, ValueError):
    """A pipeline argument is unusable, or a folder is not a saved pipeline run."""


@dataclass
class PipelineResult:
    """A trained model with its data and test metrics (see the module docstring).

    ``metrics`` holds the test split's filtered MRR, mean rank, Hits@1/3/10, mean log-likelihood
    (``None`` in score form) and ECE; ``evaluation`` is the full
    :class:`~circuitkg.eval.EvaluationResult` (``None`` after :func:`load`). ``dataset`` is what
    the run records as its data: a name, a folder, or ``None`` for a graph built in memory.
    """

    model: KGEModel
    compiled: CompiledCircuit | ConstrainedCircuit
    kg: KnowledgeGraph
    config: TrainConfig
    state: TrainState
    metrics: dict[str, float | None]
    evaluation: EvaluationResult | None = None
    dataset: str | None = None
    extra: dict[str, Any] = field(default_factory=dict)

    @property
    def losses(self) -> list[float]:
        """The mean training loss of every epoch."""
        return [float(r["loss"]) for r in self.state.history]

    def topk(self, target: str, k: int = 10, **given: str | int) -> list[Prediction]:
        """The ``k`` most probable values of ``target`` given names (or ids):
        ``result.topk("o", s="usa", r="embassy")``; see :func:`topk`."""
        return topk(self.compiled, self.kg, target, k, **given)

    def sample(
        self,
        num_samples: int,
        given: dict[str, str | int] | None = None,
        generator: torch.Generator | None = None,
    ) -> list[tuple[str, str, str]]:
        """Exact samples ``(subject, relation, object)`` by name from ``p(rest | given)``, where
        ``given`` holds names (or ids): ``result.sample(5, given={"s": "usa"})``. Normalised forms
        only (the score form has no distribution)."""
        ids = self.compiled.sample(
            num_samples, given=resolve_given(self.kg, given), generator=generator
        )
        columns = [self.compiled.variables.index(v) for v in ("s", "r", "o")]
        entities, relations = self.kg.id_to_entity, self.kg.id_to_relation
        return [(entities[s], relations[r], entities[o]) for s, r, o in ids[:, columns].tolist()]

    def save(self, path: str | os.PathLike[str]) -> Path:
        """Write the run folder described in the module docstring; returns its path."""
        folder = Path(path)
        folder.mkdir(parents=True, exist_ok=True)
        config = self.config
        if self.dataset is None:
            _write_splits(self.kg, folder / DATA_DIR)
            config = config.replace(dataset=str((folder / DATA_DIR).resolve()))
        save_checkpoint(folder / CHECKPOINT_DIR, self.model, config, self.state, kg=self.kg)
        metrics = {"test": self.metrics, "best_valid_mrr": self.state.best_metric}
        metrics |= {"best_epoch": self.state.best_epoch, "epochs": self.state.epoch}
        text = json.dumps(_finite(metrics), indent=2, allow_nan=False)
        (folder / METRICS_FILE).write_text(text, encoding="utf-8")
        return folder

    def plot_losses(self, title: str | None = None):
        """A matplotlib Figure of the training loss (and validation MRR) per epoch."""
        from circuitkg.eval.plots import plot_loss

        return plot_loss(self.state, title=title or self._title())

    def plot_calibration(self, split: str = "test", title: str | None = None):
        """A matplotlib Figure: the reliability diagram of ``split`` (see :func:`reliability`)."""
        from circuitkg.eval.plots import plot_reliability

        with torch.no_grad():
            table = reliability(self.compiled, self.kg, split)
        return plot_reliability(table, title=title or f"{self._title()}, {split}")

    def _title(self) -> str:
        return f"{self.model.name} ({self.model.form}, rank {self.model.rank}) on {self.kg.name}"


def pipeline(
    dataset: str | os.PathLike[str] | KnowledgeGraph = "umls",
    model: str | KGEModel = "complex",
    form: str | None = None,
    *,
    data_root: str | None = None,
    device: str | torch.device = "auto",
    progress: bool = True,
    log=None,
    **options: Any,
) -> PipelineResult:
    """Load ``dataset``, train ``model`` in ``form``, evaluate it on the test split.

    ``options`` are :class:`~circuitkg.train.TrainConfig` fields (``rank``, ``epochs``, ``lr``,
    ``objective``, ``schema``, ...). ``form`` defaults to ``"squared"`` for a model name and to
    the given model's own form. ``device``: ``"auto"`` is cuda when available. ``progress`` and
    ``log`` are the trainer's (a bar on a terminal; one line per epoch to ``log``).
    """
    kg, reference = resolve_dataset(dataset, data_root, options.get("unseen", "drop"))
    values = dict(options, dataset=reference or kg.name, data_root=data_root)
    given = None
    if isinstance(model, KGEModel):
        given = model
        if form is not None and form != model.form:
            raise PipelineError(f"the model given is in {model.form!r} form, not {form!r}")
        sizes = (model.num_entities, model.num_relations)
        if sizes != (kg.num_entities, kg.num_relations):
            raise PipelineError(
                f"the model given has {sizes[0]} entities and {sizes[1]} relations, but "
                f"{kg.name!r} has {kg.num_entities} and {kg.num_relations}"
            )
        values |= {"model": model.name, "form": model.form, "rank": model.rank}
        values.setdefault("init", "model")
    else:
        values |= {"model": model, "form": form or "squared"}
    try:
        config = TrainConfig(**values)
    except TypeError as err:  # an option TrainConfig does not have
        raise PipelineError(f"pipeline: {err}") from None
    result = train(config, kg, model=given, progress=progress, log=log, device=_device(device))
    evaluation = evaluate(result.compiled, kg, "test", batch_size=config.eval_batch_size)
    return PipelineResult(
        model=result.model,
        compiled=result.compiled,
        kg=kg,
        config=config,
        state=result.state,
        metrics=evaluation.as_dict(),
        evaluation=evaluation,
        dataset=reference,
    )


def load(
    path: str | os.PathLike[str],
    *,
    data_root: str | None = None,
    device: str | torch.device = "cpu",
) -> PipelineResult:
    """A :class:`PipelineResult` from a folder :meth:`PipelineResult.save` (or ``circuitkg
    train --out``) wrote: model, data, configuration, history and test metrics."""
    folder = Path(path)
    ckpt = load_checkpoint(folder)
    config = ckpt.config
    data = folder / DATA_DIR
    if data.is_dir():
        kg, reference = _read_splits(data, ckpt.vocabulary, ckpt.spec.name), None
    else:
        kg, reference = resolve_dataset(
            config.dataset, data_root or config.data_root, config.unseen
        )
    check_vocabulary(ckpt, kg)
    model = ckpt.model.to(_device(device))
    compiled: CompiledCircuit | ConstrainedCircuit = compile_(model).eval()
    if config.schema is not None:
        bound = bind_schema(load_schema(config.schema), kg)
        compiled = constrain(compiled, bound).to(compiled.device).eval()
    metrics_file = folder / METRICS_FILE
    metrics = {}
    if metrics_file.is_file():
        metrics = json.loads(metrics_file.read_text(encoding="utf-8")).get("test", {})
    state = ckpt.state
    state.history = run_history(folder, state)
    return PipelineResult(model, compiled, kg, config, state, metrics, dataset=reference)


def run_history(path: str | os.PathLike[str], state: TrainState) -> list[dict[str, float]]:
    """The per-epoch records of the run at ``path``: those of its ``last/`` checkpoint when it has
    one (``circuitkg train --out`` writes ``best/`` when validation improves, before the epoch's
    record is added, and keeps training after it), else ``state``'s."""
    last = Path(path) / "last"
    if (last / "config.json").is_file():
        return load_checkpoint(last).state.history
    return state.history


def resolve_dataset(
    dataset: str | os.PathLike[str] | KnowledgeGraph,
    data_root: str | None = None,
    unseen: Literal["drop", "raise", "keep"] = "drop",
) -> tuple[KnowledgeGraph, str | None]:
    """The knowledge graph of ``dataset`` and the reference a run records for it: the name, a
    folder's absolute path, or ``None`` for a :class:`KnowledgeGraph` given in memory.
    ``unseen`` is the protocol of :func:`circuitkg.data.load_folder` for valid/test names absent
    from train (``keep``: the vocabulary spans all splits, as the published protocols have it).

    A string with a path separator, a leading ``.`` or ``~``, or naming an existing folder is
    read as a folder of ``train``/``valid``/``test`` files; a folder lacking one raises
    :class:`~circuitkg.data.DataFormatError` naming the folder and the missing splits."""
    if isinstance(dataset, KnowledgeGraph):
        return dataset, None
    if not isinstance(dataset, (str, os.PathLike)):
        raise PipelineError(
            "dataset must be a name, a folder or a KnowledgeGraph (e.g. "
            f"KnowledgeGraph.from_triples(...)), got {type(dataset).__name__}"
        )
    text = os.fspath(dataset)
    if not is_folder(text):
        return load_dataset(text, data_root, unseen=unseen), text
    folder = Path(text).expanduser().resolve()
    if not folder.is_dir():
        raise DataFormatError(
            f"dataset folder {folder} does not exist (a dataset is a name such as 'umls', or a "
            "folder of train, valid and test triple files)"
        )
    missing = [s for s in REQUIRED_SPLITS if not any(folder.glob(f"{s}.*"))]
    if missing:
        held = sorted(p.name for p in folder.iterdir())[:10]
        raise DataFormatError(
            f"dataset folder {folder} has no {', '.join(missing)} file (each split is a file "
            f"named <split> plus one of {', '.join(SUFFIXES)}, one head<TAB>relation<TAB>tail "
            f"triple per line); it holds {held or 'nothing'}"
        )
    return load_folder(folder, unseen=unseen, name=folder.name), str(folder)


def is_folder(text: str) -> bool:
    """True when a dataset string names a folder rather than a dataset (see
    :func:`resolve_dataset`)."""
    return "/" in text or os.sep in text or text.startswith((".", "~")) or Path(text).is_dir()


def topk(
    circuit: CompiledCircuit | ConstrainedCircuit,
    kg: KnowledgeGraph,
    target: str,
    k: int = 10,
    **given: str | int,
) -> list[Prediction]:
    """The ``k`` most probable values of ``target`` (``"s"``, ``"r"`` or ``"o"``) given names or
    ids of the other variables (those not given are summed out), by ``kg``'s names, most probable
    first: the circuit's own ``topk`` (a schema-constrained one lists only what its schema
    allows), one all-value conditional, ``O(nK)``."""
    top = circuit.topk(target, k, **resolve_given(kg, given))
    names = kg.variable_names()[target]
    return [Prediction(names[p.id], p.id, p.probability) for p in top]


def reliability(
    circuit: CompiledCircuit | ConstrainedCircuit,
    kg: KnowledgeGraph,
    split: str = "test",
    num_bins: int = 10,
    seed: int = 0,
) -> ReliabilityTable:
    """The reliability table of ``P(true | s, r, o)`` (:func:`~circuitkg.eval.runner.
    triple_probabilities`) on ``split``'s triples against its negatives: the dataset's
    ``<split>_negatives`` where present, else one sampled corruption per triple, as the ECE of
    :func:`~circuitkg.eval.evaluate` is measured."""
    positives = kg.split(split).to(circuit.device)
    name = f"{split}_negatives"
    if name in kg.splits and len(kg.split(name)):
        negatives = kg.split(name).to(circuit.device)
    else:
        negatives = corrupt(positives, kg, seed=seed)
    probs = torch.cat(
        [triple_probabilities(circuit, positives), triple_probabilities(circuit, negatives)]
    )
    labels = torch.cat([torch.ones(len(positives)), torch.zeros(len(negatives))])
    return reliability_table(probs, labels, num_bins)


def _device(device: str | torch.device) -> torch.device:
    if str(device) == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    return torch.device(device)


def _write_splits(kg: KnowledgeGraph, folder: Path) -> None:
    """Every split of ``kg`` as a ``<split>.txt`` file of name triples."""
    folder.mkdir(parents=True, exist_ok=True)
    for split, triples in kg.splits.items():
        lines = [
            f"{kg.id_to_entity[s]}\t{kg.id_to_relation[r]}\t{kg.id_to_entity[o]}\n"
            for s, r, o in triples.tolist()
        ]
        (folder / f"{split}.txt").write_text("".join(lines), encoding="utf-8")


def _read_splits(folder: Path, vocabulary: dict[str, Any] | None, name: str) -> KnowledgeGraph:
    """The inverse of :func:`_write_splits`, with the checkpoint's vocabulary (exact ids)."""
    if vocabulary is None:
        raise PipelineError(f"{folder.parent}: the checkpoint records no vocabulary")
    splits = {}
    for file in sorted(folder.glob("*.txt")):
        rows = [line.split("\t") for line in file.read_text(encoding="utf-8").splitlines()]
        splits[file.stem] = rows
    if "train" not in splits:
        raise PipelineError(f"{folder}: no train.txt (not a folder PipelineResult.save wrote)")
    return from_triples(
        splits,
        name=vocabulary.get("dataset") or name,
        entity_to_id={e: i for i, e in enumerate(vocabulary["entities"])},
        relation_to_id={r: i for i, r in enumerate(vocabulary["relations"])},
    )


def _finite(values: Any) -> Any:
    """Strict JSON: non-finite floats (a log-likelihood of -inf) become null, recursively."""
    if isinstance(values, dict):
        return {k: _finite(v) for k, v in values.items()}
    if isinstance(values, float) and not torch.isfinite(torch.tensor(values)):
        return None
    return values


def resolve_given(kg: KnowledgeGraph, given: dict[str, int | str | Tensor] | None) -> dict:
    """Map names in ``given`` to ids (``s``/``o`` entities, ``r`` relations); ids pass through."""
    out: dict[str, int | Tensor] = {}
    for var, value in (given or {}).items():
        if var not in KG_VARIABLES:
            raise EvidenceError(f"unknown variable {var!r}; a KG circuit has {list(KG_VARIABLES)}")
        if isinstance(value, str):
            value = kg.relation_id(value) if var == "r" else kg.entity_id(value)
        out[var] = value
    return out
