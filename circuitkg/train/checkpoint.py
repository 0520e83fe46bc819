"""Checkpoints: a folder with safetensors for tensors and JSON for everything else (no pickle).

Layout of a checkpoint folder::

    config.json            format version, model spec, training config, training state,
                           optimizer name and hyper-parameters
    model.safetensors      the model's tensors by name (:func:`model_tensors`: its parameters, and
                           the state of encoded tables: node-state cache, feature statistics)
    graph.safetensors      the graph an entity encoder reads (encoded models only; its node and
                           relation names are in config.json)
    training.safetensors   optimizer state tensors and the batch-order generator state (optional)

Loading rebuilds the model from its spec (``create_model``, with the stored graph for encoded models)
and copies the tensors in, so fixed buffers built with the circuit (ComplEx's signs, TransE's feature
powers) are never stored. ``config.json`` also records the entity and relation vocabularies the
model was trained on (``vocabulary``); :func:`check_vocabulary` compares them with a dataset, and
the CLI and :meth:`~circuitkg.train.Trainer.resume` refuse a dataset whose names differ.

**Crash safety.** A checkpoint is never written when any tensor is NaN or infinite. Otherwise it is
written to the sibling ``<name>.tmp`` (every file and the folder fsynced), the old checkpoint is
renamed to ``<name>.old``, the new one renamed into place, the parent folder fsynced, and
``<name>.old`` removed: at every instant an intact checkpoint exists under ``<name>``, or (between
the two renames) under ``<name>.old`` with a complete ``<name>.tmp``
(:mod:`circuitkg.train.atomic_folder`). :func:`recover_checkpoint`
(run by every load and save) finishes an interrupted swap, promoting the complete ``<name>.tmp``,
else ``<name>.old``, and warns (:class:`CheckpointRecoveredWarning`) saying what it did; an
incomplete ``<name>.tmp`` next to an intact ``<name>`` is removed. Files are created with the
process's umask (the same mode for every file).

**Validation on load.** Every malformed file or value (not JSON, a missing key, a value of the
wrong type, an unknown model, a truncated safetensors file, a NaN or infinite tensor) raises
:class:`CheckpointError` naming the file and the key.
"""

from __future__ import annotations

import json
import os
import warnings
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import torch
from safetensors import SafetensorError
from safetensors.torch import load as load_bytes
from safetensors.torch import save as save_bytes
from torch import Tensor

from circuitkg.compilers import KGEModel, create_model
from circuitkg.encoders import Graph
from circuitkg.errors import CheckpointError, CircuitKGError
from circuitkg.train.atomic_folder import (
    OLD_SUFFIX,
    TMP_SUFFIX,
    recover_folder,
    replace_folder,
    sibling,
)
from circuitkg.train.config import TrainConfig
from circuitkg.train.tensor_state import (
    flatten_optimizer,
    load_parameters,
    model_tensors,
    unflatten_optimizer,
)

if TYPE_CHECKING:
    from circuitkg.data import KnowledgeGraph

FORMAT = "circuitkg-checkpoint"
VERSION = 1
CONFIG_FILE = "config.json"
MODEL_FILE = "model.safetensors"
GRAPH_FILE = "graph.safetensors"
TRAINING_FILE = "training.safetensors"


class CheckpointRecoveredWarning(UserWarning):
    """A checkpoint write was interrupted and the checkpoint was restored from its leftovers."""


@dataclass
class TrainState:
    """Progress of a run: completed epochs and steps, best validation MRR and its epoch,
    evaluations since the best one, and one history record per epoch."""

    epoch: int = 0
    step: int = 0
    best_metric: float | None = None
    best_epoch: int | None = None
    evals_since_best: int = 0
    history: list[dict[str, float]] = field(default_factory=list)


@dataclass
class ModelSpec:
    """What :func:`circuitkg.models.create_model` needs to rebuild a model."""

    name: str
    form: str
    num_entities: int
    num_relations: int
    rank: int
    kwargs: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        for key, kind in (("name", str), ("form", str), ("num_entities", int),
                          ("num_relations", int), ("rank", int), ("kwargs", dict)):  # fmt: skip
            value = getattr(self, key)
            if not isinstance(value, kind) or isinstance(value, bool):
                raise CheckpointError(
                    f"model spec key {key!r} must be {kind.__name__}, got {value!r}"
                )
        for key in ("num_entities", "num_relations", "rank"):
            if getattr(self, key) < 1:
                raise CheckpointError(
                    f"model spec key {key!r} must be positive, got {getattr(self, key)}"
                )

    @classmethod
    def of(cls, model: KGEModel, kwargs: dict[str, Any] | None = None) -> ModelSpec:
        sizes = (model.num_entities, model.num_relations, model.rank)
        return cls(model.name, model.form, *sizes, dict(kwargs or {}))

    def build(self, graph: Graph | None = None) -> KGEModel:
        """The model, over ``graph`` when it has an entity encoder."""
        return create_model(
            self.name, self.num_entities, self.num_relations, self.rank, self.form,
            graph=graph, **self.kwargs,
        )  # fmt: skip


@dataclass
class Checkpoint:
    """A loaded checkpoint. ``optimizer_state`` is in ``torch.optim`` ``state_dict`` format."""

    path: Path
    model: KGEModel
    spec: ModelSpec
    config: TrainConfig
    state: TrainState
    optimizer_name: str | None = None
    optimizer_state: dict[str, Any] | None = None
    generator_state: Tensor | None = None
    #: ``{"dataset", "entities", "relations"}`` the model was trained on (``None``: not recorded)
    vocabulary: dict[str, Any] | None = None


def save_checkpoint(
    path: str | os.PathLike[str],
    model: KGEModel,
    config: TrainConfig,
    state: TrainState,
    optimizer: torch.optim.Optimizer | None = None,
    generator: torch.Generator | None = None,
    kg: KnowledgeGraph | None = None,
) -> Path:
    """Write a checkpoint folder at ``path`` (replacing one there, crash-safely: see the module
    docstring); returns the path. With ``kg`` its name and vocabularies are recorded.

    Raises :class:`CheckpointError` naming the tensor if any parameter or optimizer state is not
    finite; nothing is written then.
    """
    path = Path(path)
    params = {name: p.detach().cpu().contiguous() for name, p in model_tensors(model).items()}
    training: dict[str, Tensor] = {}
    meta: dict[str, Any] = {
        "format": FORMAT,
        "version": VERSION,
        "model": asdict(ModelSpec.of(model, config.model_kwargs)),
        "train": config.to_dict(),
        "state": asdict(state),
    }
    if kg is not None:
        meta["vocabulary"] = {
            "dataset": kg.name,
            "entities": list(kg.id_to_entity),
            "relations": list(kg.id_to_relation),
        }
    if optimizer is not None:
        opt_meta, opt_tensors = flatten_optimizer(optimizer)
        meta["optimizer"] = {"name": config.optimizer, **opt_meta}
        training.update(opt_tensors)
    if generator is not None:
        training["generator"] = generator.get_state()
    graph = model.encoded_graph
    if graph is not None:
        meta["graph"] = {"node_names": graph.node_names, "relation_names": graph.relation_names}
    for name, tensor in [*params.items(), *training.items()]:
        if tensor.is_floating_point() and not bool(torch.isfinite(tensor).all()):
            raise CheckpointError(
                f"refusing to write checkpoint {path}: tensor {name!r} holds NaN or infinite values"
            )
    files = {MODEL_FILE: save_bytes(params)}
    if graph is not None:
        files[GRAPH_FILE] = save_bytes({"edges": graph.edges.cpu().contiguous()})
    if training:
        files[TRAINING_FILE] = save_bytes(training)
    files[CONFIG_FILE] = json.dumps(meta, indent=2).encode()  # last: it marks the folder complete
    recover_checkpoint(path)
    replace_folder(path, files)
    return path


def _complete(folder: Path) -> bool:
    """Whether ``folder`` holds a fully written checkpoint: ``config.json`` (written last) parses
    and every safetensors file it needs is present."""
    try:
        meta = json.loads((folder / CONFIG_FILE).read_text())
    except (OSError, ValueError):
        return False
    needed = [MODEL_FILE] + ([GRAPH_FILE] if isinstance(meta, dict) and "graph" in meta else [])
    return isinstance(meta, dict) and all((folder / n).is_file() for n in needed)


def recover_checkpoint(path: str | os.PathLike[str]) -> bool:
    """Finish an interrupted write of the checkpoint ``path``; True when a checkpoint is there
    afterwards.

    With ``path`` intact, leftover ``.old`` and ``.tmp`` folders are removed (a ``.tmp`` is then
    never newer than a completed swap). With ``path`` missing, a complete ``.tmp`` is promoted, else
    ``.old``; either is announced with a :class:`CheckpointRecoveredWarning`. An incomplete ``.tmp``
    is kept when nothing else exists (so no data is destroyed), and reported by loaders.
    """
    path = Path(path)
    present, restored = recover_folder(path, CONFIG_FILE, _complete)
    if restored is not None:
        warnings.warn(
            f"checkpoint {path} was missing after an interrupted write; restored it from "
            f"{restored}",
            CheckpointRecoveredWarning,
            stacklevel=3,
        )
    return present


def resolve_checkpoint(path: str | os.PathLike[str]) -> Path:
    """A checkpoint folder from ``path``: the folder itself, or ``best/`` (else ``last/``) inside a
    run folder. An interrupted write is finished first (:func:`recover_checkpoint`)."""
    path = Path(path)
    for candidate in (path, path / "best", path / "last"):
        if recover_checkpoint(candidate):
            return candidate
    leftovers = [
        p.name
        for base in (path, path / "best", path / "last")
        for p in (sibling(base, TMP_SUFFIX), sibling(base, OLD_SUFFIX))
        if p.exists()
    ]
    found = f"; found only the incomplete write(s) {leftovers}" if leftovers else ""
    raise CheckpointError(
        f"no checkpoint at {path} (expected {CONFIG_FILE} there or in best/){found}"
    )


def load_checkpoint(path: str | os.PathLike[str], kg: KnowledgeGraph | None = None) -> Checkpoint:
    """Read a checkpoint folder (see :func:`resolve_checkpoint`) onto the CPU; with ``kg``, check
    that it was trained on ``kg``'s vocabularies (:func:`check_vocabulary`)."""
    path = resolve_checkpoint(path)
    config_file = path / CONFIG_FILE
    try:
        meta = json.loads(config_file.read_text(encoding="utf-8"))
    except (ValueError, UnicodeDecodeError) as err:
        raise CheckpointError(f"{config_file}: not valid JSON ({err})") from None
    if not isinstance(meta, dict):
        raise CheckpointError(f"{config_file}: expected a JSON object, got {type(meta).__name__}")
    if meta.get("format") != FORMAT or meta.get("version") != VERSION:
        raise CheckpointError(f"{path}: not a {FORMAT} version {VERSION} checkpoint")
    spec = _parse(config_file, "model", meta, lambda v: ModelSpec(**v))
    config = _parse(config_file, "train", meta, TrainConfig.from_dict)
    state = _parse(config_file, "state", meta, _train_state)
    try:
        model = spec.build(_stored_graph(path, meta, spec))
        model.circuit()
    except CheckpointError:
        raise
    except (CircuitKGError, ValueError, TypeError, KeyError) as err:
        raise CheckpointError(
            f"{config_file}: key 'model' does not describe a buildable model ({err})"
        ) from None
    load_parameters(model, _load_tensors(path / MODEL_FILE), source=str(path / MODEL_FILE))
    training_file = path / TRAINING_FILE
    training = _load_tensors(training_file) if training_file.is_file() else {}
    checkpoint = Checkpoint(
        path=path,
        model=model,
        spec=spec,
        config=config,
        state=state,
        generator_state=training.get("generator"),
        vocabulary=_parse(config_file, "vocabulary", meta, _vocabulary, required=False),
    )
    if "optimizer" in meta:
        checkpoint.optimizer_name, checkpoint.optimizer_state = _parse(
            config_file, "optimizer", meta, lambda v: _optimizer_from(v, training)
        )
    if kg is not None:
        check_vocabulary(checkpoint, kg)
    return checkpoint


def _parse(file: Path, key: str, meta: dict[str, Any], build, required: bool = True):
    """``build(meta[key])``; a missing key or a malformed value raises :class:`CheckpointError`
    naming ``file`` and ``key``."""
    if key not in meta:
        if not required:
            return None
        raise CheckpointError(f"{file}: the key {key!r} is missing")
    try:
        return build(meta[key])
    except (CircuitKGError, ValueError, TypeError, KeyError, AttributeError) as err:
        raise CheckpointError(f"{file}: key {key!r} is malformed: {err}") from None


def _train_state(values: Any) -> TrainState:
    state = TrainState(**values)
    for key in ("epoch", "step", "evals_since_best"):
        value = getattr(state, key)
        if not isinstance(value, int) or isinstance(value, bool) or value < 0:
            raise TypeError(f"{key!r} must be a non-negative integer, got {value!r}")
    if not isinstance(state.history, list):
        raise TypeError(f"'history' must be a list, got {state.history!r}")
    return state


def _vocabulary(values: Any) -> dict[str, Any]:
    for key in ("entities", "relations"):
        names = values[key]
        if not isinstance(names, list) or not all(isinstance(n, str) for n in names):
            raise TypeError(f"{key!r} must be a list of names")
    return {"dataset": str(values.get("dataset")), "entities": values["entities"],
            "relations": values["relations"]}  # fmt: skip


def _optimizer_from(values: Any, training: dict[str, Tensor]) -> tuple[str, dict[str, Any]]:
    opt = dict(values)
    name = opt.pop("name")
    return name, unflatten_optimizer(opt, training)


def _load_tensors(file: Path) -> dict[str, Tensor]:
    """The tensors of a safetensors ``file``; unreadable, truncated or non-finite contents raise
    :class:`CheckpointError` naming the file (and the tensor)."""
    try:
        tensors = load_bytes(file.read_bytes())
    except FileNotFoundError:
        raise CheckpointError(f"{file} is missing") from None
    except (SafetensorError, OSError, ValueError, RuntimeError) as err:
        raise CheckpointError(f"{file}: not a readable safetensors file ({err})") from None
    for name, tensor in tensors.items():
        if tensor.is_floating_point() and not bool(torch.isfinite(tensor).all()):
            raise CheckpointError(f"{file}: tensor {name!r} holds NaN or infinite values")
    return tensors


def check_vocabulary(checkpoint: Checkpoint, kg: KnowledgeGraph) -> None:
    """Raise :class:`CheckpointError` unless ``checkpoint`` was trained on ``kg``'s entity and
    relation vocabularies (same names, same ids); the message names the first differing names.
    A checkpoint without a recorded vocabulary is checked on its sizes only."""
    spec, vocab = checkpoint.spec, checkpoint.vocabulary
    where = f"checkpoint {checkpoint.path}"
    if vocab is None:
        sizes = (spec.num_entities, spec.num_relations)
        if sizes != (kg.num_entities, kg.num_relations):
            raise CheckpointError(
                f"{where} has {sizes[0]} entities and {sizes[1]} relations, but the dataset "
                f"{kg.name!r} has {kg.num_entities} and {kg.num_relations}"
            )
        return
    for kind, theirs, ours in (
        ("entity", vocab["entities"], kg.id_to_entity),
        ("relation", vocab["relations"], kg.id_to_relation),
    ):
        problem = _first_difference(theirs, ours)
        if problem is not None:
            raise CheckpointError(
                f"{where} was trained on the dataset {vocab['dataset']!r}, whose {kind} "
                f"vocabulary differs from that of {kg.name!r}: {problem}; use the dataset (or "
                "--data-root) it was trained on"
            )


def _first_difference(theirs: Sequence[str], ours: Sequence[str]) -> str | None:
    if list(theirs) == list(ours):
        return None
    if len(theirs) != len(ours):
        sizes = f"{len(theirs)} names in the checkpoint, {len(ours)} in the dataset"
    else:
        sizes = f"{len(theirs)} names each"
    for i, (a, b) in enumerate(zip(theirs, ours, strict=False)):
        if a != b:
            return f"{sizes}; first difference at id {i}: {a!r} in the checkpoint, {b!r} in the dataset"
    return sizes


def _stored_graph(path: Path, meta: dict[str, Any], spec: ModelSpec) -> Graph | None:
    if "graph" not in meta:
        return None
    if not (path / GRAPH_FILE).is_file():
        raise CheckpointError(f"{path}: the model reads a graph, but {GRAPH_FILE} is missing")
    names = meta["graph"]
    tensors = _load_tensors(path / GRAPH_FILE)
    if "edges" not in tensors:
        raise CheckpointError(f"{path / GRAPH_FILE}: the tensor 'edges' is missing")
    try:
        return Graph.from_triples(
            tensors["edges"], spec.num_entities, spec.num_relations,
            names.get("node_names"), names.get("relation_names"),
        )  # fmt: skip
    except (CircuitKGError, ValueError, TypeError, AttributeError, RuntimeError) as err:
        raise CheckpointError(
            f"{path / GRAPH_FILE} (with key 'graph' of {CONFIG_FILE}): {err}"
        ) from None
