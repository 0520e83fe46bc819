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
powers) are never stored. A checkpoint is written to a
temporary sibling folder and moved into place, and never when any tensor is NaN or infinite.
"""

from __future__ import annotations

import json
import os
import shutil
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import torch
from safetensors.torch import load_file, save_file
from torch import Tensor

from circuitkg.compilers import KGEModel, create_model
from circuitkg.encoders import Graph
from circuitkg.errors import CircuitKGError
from circuitkg.train.config import TrainConfig

FORMAT = "circuitkg-checkpoint"
VERSION = 1
CONFIG_FILE = "config.json"
MODEL_FILE = "model.safetensors"
GRAPH_FILE = "graph.safetensors"
TRAINING_FILE = "training.safetensors"


class CheckpointError(CircuitKGError, ValueError):
    """A checkpoint is missing, malformed, would hold non-finite values, or does not fit a model."""


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


def model_tensors(model: KGEModel) -> dict[str, Tensor]:
    """The tensors a checkpoint stores: the model's ``state_dict`` without the modules its circuit
    builds (fixed weights and views, rebuilt with the circuit)."""
    return {
        name: tensor
        for name, tensor in model.state_dict(keep_vars=True).items()
        if not name.startswith("circuit_modules.")
    }


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


def save_checkpoint(
    path: str | os.PathLike[str],
    model: KGEModel,
    config: TrainConfig,
    state: TrainState,
    optimizer: torch.optim.Optimizer | None = None,
    generator: torch.Generator | None = None,
) -> Path:
    """Write a checkpoint folder at ``path`` (replacing one there); returns the path.

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
    if optimizer is not None:
        opt_meta, opt_tensors = _flatten_optimizer(optimizer)
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
    tmp = path.with_name(path.name + ".tmp")
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True)
    save_file(params, str(tmp / MODEL_FILE))
    if graph is not None:
        save_file({"edges": graph.edges.cpu().contiguous()}, str(tmp / GRAPH_FILE))
    if training:
        save_file(training, str(tmp / TRAINING_FILE))
    (tmp / CONFIG_FILE).write_text(json.dumps(meta, indent=2))
    if path.exists():
        shutil.rmtree(path)
    os.replace(tmp, path)
    return path


def resolve_checkpoint(path: str | os.PathLike[str]) -> Path:
    """A checkpoint folder from ``path``: the folder itself, or ``best/`` inside a run folder."""
    path = Path(path)
    for candidate in (path, path / "best", path / "last"):
        if (candidate / CONFIG_FILE).is_file():
            return candidate
    raise CheckpointError(f"no checkpoint at {path} (expected {CONFIG_FILE} there or in best/)")


def load_checkpoint(path: str | os.PathLike[str]) -> Checkpoint:
    """Read a checkpoint folder (see :func:`resolve_checkpoint`) onto the CPU."""
    path = resolve_checkpoint(path)
    try:
        meta = json.loads((path / CONFIG_FILE).read_text())
    except json.JSONDecodeError as err:
        raise CheckpointError(f"{path / CONFIG_FILE}: not valid JSON ({err})") from None
    if meta.get("format") != FORMAT or meta.get("version") != VERSION:
        raise CheckpointError(f"{path}: not a {FORMAT} version {VERSION} checkpoint")
    spec = ModelSpec(**meta["model"])
    model = spec.build(_stored_graph(path, meta, spec))
    model.circuit()
    load_parameters(model, load_file(str(path / MODEL_FILE)), source=str(path))
    training = load_file(str(path / TRAINING_FILE)) if (path / TRAINING_FILE).is_file() else {}
    checkpoint = Checkpoint(
        path=path,
        model=model,
        spec=spec,
        config=TrainConfig.from_dict(meta["train"]),
        state=TrainState(**meta["state"]),
        generator_state=training.get("generator"),
    )
    if "optimizer" in meta:
        opt = dict(meta["optimizer"])
        checkpoint.optimizer_name = opt.pop("name")
        checkpoint.optimizer_state = _unflatten_optimizer(opt, training)
    return checkpoint


def _stored_graph(path: Path, meta: dict[str, Any], spec: ModelSpec) -> Graph | None:
    if "graph" not in meta:
        return None
    if not (path / GRAPH_FILE).is_file():
        raise CheckpointError(f"{path}: the model reads a graph, but {GRAPH_FILE} is missing")
    names = meta["graph"]
    return Graph.from_triples(
        load_file(str(path / GRAPH_FILE))["edges"], spec.num_entities, spec.num_relations,
        names.get("node_names"), names.get("relation_names"),
    )  # fmt: skip


def load_parameters(
    model: KGEModel, tensors: dict[str, Tensor], source: str, partial: bool = False
) -> list[str]:
    """Copy ``tensors`` into ``model``'s tensors of the same names (:func:`model_tensors`); returns
    the names copied.

    Names or shapes that do not match raise :class:`CheckpointError`; with ``partial`` the model
    may have parameters that ``tensors`` lacks (they keep their values).
    """
    own = model_tensors(model)
    unknown = sorted(set(tensors) - set(own))
    missing = [] if partial else sorted(set(own) - set(tensors))
    if unknown or missing:
        raise CheckpointError(
            f"{source} does not fit {type(model).__name__}({model.form}): "
            f"unexpected parameters {unknown}, missing parameters {missing}"
        )
    for name, tensor in tensors.items():
        if tuple(tensor.shape) != tuple(own[name].shape):
            raise CheckpointError(
                f"{source}: parameter {name!r} has shape {tuple(tensor.shape)}, "
                f"the model expects {tuple(own[name].shape)}"
            )
    with torch.no_grad():
        for name, tensor in tensors.items():
            own[name].copy_(tensor)
    return sorted(tensors)


def _flatten_optimizer(
    optimizer: torch.optim.Optimizer,
) -> tuple[dict[str, Any], dict[str, Tensor]]:
    """``(JSON part, tensors)`` of an optimizer ``state_dict``."""
    sd = optimizer.state_dict()
    tensors: dict[str, Tensor] = {}
    scalars: dict[str, dict[str, Any]] = {}
    for index, entry in sd["state"].items():
        for key, value in entry.items():
            if isinstance(value, Tensor):
                tensors[f"optimizer.{index}.{key}"] = value.detach().cpu().contiguous()
            else:
                scalars.setdefault(str(index), {})[key] = value
    return {"param_groups": sd["param_groups"], "scalar_state": scalars}, tensors


def _unflatten_optimizer(meta: dict[str, Any], tensors: dict[str, Tensor]) -> dict[str, Any]:
    state: dict[int, dict[str, Any]] = {}
    for name, tensor in tensors.items():
        if name.startswith("optimizer."):
            _, index, key = name.split(".", 2)
            state.setdefault(int(index), {})[key] = tensor
    for index, entry in meta.get("scalar_state", {}).items():
        state.setdefault(int(index), {}).update(entry)
    groups = [
        {k: tuple(v) if isinstance(v, list) and k != "params" else v for k, v in g.items()}
        for g in meta["param_groups"]
    ]
    return {"state": state, "param_groups": groups}
