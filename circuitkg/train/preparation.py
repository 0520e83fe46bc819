"""What a training run trains: the dataset, the model and its initialisation, the schema it is
constrained by, and the checkpoint it resumes or starts from.

:class:`~circuitkg.train.Trainer` and :func:`~circuitkg.train.train` build their runs from these;
the command line and the workflow call them too, so that a run is prepared one way wherever it
starts.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path

import torch

from circuitkg.compilers import KGEModel, create_model
from circuitkg.constraints import BoundSchema, DomainSchema, SchemaError
from circuitkg.data import KnowledgeGraph, load
from circuitkg.encoders import Graph
from circuitkg.train.checkpoint import CheckpointError, load_checkpoint, recover_checkpoint
from circuitkg.train.config import TrainConfig
from circuitkg.train.initialisation import initialise
from circuitkg.train.tensor_state import load_parameters

__all__ = [
    "bind_schema",
    "build_model",
    "dataset_of",
    "init_from_checkpoint",
    "load_schema",
    "prepare_model",
    "resume_path",
    "schema_training_data",
]


def build_model(config: TrainConfig, kg: KnowledgeGraph) -> KGEModel:
    """``create_model`` for ``kg``'s sizes after seeding torch with ``config.seed``, then
    initialised with ``config.init``."""
    torch.manual_seed(config.seed)
    graph = Graph.from_kg(kg) if config.model_kwargs.get("encoder") else None
    model = create_model(
        config.model, kg.num_entities, kg.num_relations, config.rank, config.form,
        graph=graph, **config.model_kwargs,
    )  # fmt: skip
    initialise(model, config.init)
    model.circuit()
    return model


def dataset_of(config: TrainConfig) -> KnowledgeGraph:
    """The named dataset ``config`` trains on, under its ``unseen`` protocol."""
    return load(config.dataset, config.data_root, unseen=config.unseen)


def load_schema(path: str | os.PathLike[str]) -> DomainSchema:
    """Read a JSON domain schema; a missing file raises :class:`SchemaError` naming the path."""
    path = Path(path)
    if not path.is_file():
        raise SchemaError(f"schema file {path} does not exist")
    return DomainSchema.from_json(path)


def bind_schema(schema: DomainSchema, kg: KnowledgeGraph) -> BoundSchema:
    """``schema`` on ``kg``'s ids; relations without a signature are unconstrained.

    Names the schema has but ``kg`` lacks are ignored (a schema of all of CoDEx fits CoDEx-S);
    an entity of ``kg`` the schema has no entry for raises :class:`SchemaError` (give it an empty
    type list to make it untyped, i.e. allowed in no constrained relation).
    """
    untyped = [e for e in kg.id_to_entity if e not in schema.entity_types]
    if untyped:
        shown = ", ".join(map(repr, untyped[:5])) + (", ..." if len(untyped) > 5 else "")
        raise SchemaError(
            f"{len(untyped)} of the {kg.num_entities} entities of {kg.name!r} have no entry in the "
            f"schema: {shown} (list them with types, or with [] to leave them untyped)"
        )
    return schema.bind(kg, strict=False)


def schema_training_data(
    config: TrainConfig, kg: KnowledgeGraph, log: Callable[[str], None]
) -> tuple[BoundSchema, KnowledgeGraph]:
    """Bind ``config.schema`` to ``kg`` and apply ``config.schema_violations`` to the training
    triples; returns the bound schema and the knowledge graph to train on."""
    bound = bind_schema(load_schema(config.schema), kg)
    report = bound.check(kg, ("train",))
    bad, total = report.violating["train"], report.total["train"]
    if bad and config.schema_violations == "drop":
        log(f"schema {config.schema}: dropped {bad} of {total} training triples that violate it")
        return bound, bound.drop_violations(kg, ("train",))
    if bad:
        worst = sorted(report.by_relation.items(), key=lambda kv: -kv[1])[:5]
        examples = ", ".join(f"({s}, {r}, {o})" for s, r, o in report.examples)
        raise SchemaError(
            f"{bad} of {total} training triples violate the schema {config.schema} "
            f"(by relation: {', '.join(f'{r}: {c}' for r, c in worst)}; e.g. {examples}); "
            "fix the data or the schema, or drop them with schema_violations='drop' "
            "(--schema-violations drop)"
        )
    return bound, kg


def resume_path(path: str | os.PathLike[str]) -> Path:
    """The checkpoint :meth:`Trainer.resume` continues from ``path``: ``path`` itself when it is a
    checkpoint folder, else the run folder's ``last/`` (an interrupted write of it finished first).

    A run folder without ``last/`` raises :class:`CheckpointError` listing what it holds: resuming
    from ``best/`` would silently drop every epoch after the best one, so that must be asked for
    explicitly by passing ``best/``."""
    path = Path(path)
    if recover_checkpoint(path):
        return path
    last = path / "last"
    if recover_checkpoint(last):
        return last
    held = sorted(p.name for p in path.iterdir()) if path.is_dir() else []
    if not path.exists():
        raise CheckpointError(f"cannot resume {path}: it does not exist")
    detail = f"it holds {held}" if held else "it is empty"
    hint = ""
    if recover_checkpoint(path / "best"):
        best = load_checkpoint(path / "best").state
        hint = (
            f"; best/ is from epoch {best.epoch}: resuming from it would drop every later epoch, "
            f"pass {path / 'best'} explicitly to do that"
        )
    raise CheckpointError(f"cannot resume {path}: no last/ checkpoint there ({detail}){hint}")


def init_from_checkpoint(model: KGEModel, path: str | os.PathLike[str]) -> list[str]:
    """Copy a trained model's parameters into ``model`` (paper 004's ComplEx²★ initialisation).

    The checkpoint must hold the same model family with the same sizes; its form may differ where
    the parameters coincide (score and squared forms share the tables). Returns the names copied.
    """
    source = load_checkpoint(path)
    spec = source.spec
    ours = (model.name, model.num_entities, model.num_relations, model.rank)
    theirs = (spec.name, spec.num_entities, spec.num_relations, spec.rank)
    if ours != theirs:
        raise CheckpointError(
            f"cannot initialise {model.name} (entities={ours[1]}, relations={ours[2]}, rank={ours[3]}) "
            f"from {source.path}: it holds {spec.name} (entities={theirs[1]}, relations={theirs[2]}, "
            f"rank={theirs[3]})"
        )
    tensors = dict(source.model.named_parameters())
    return load_parameters(model, tensors, source=f"{source.path} ({spec.form} form)")


def prepare_model(
    config: TrainConfig,
    kg: KnowledgeGraph,
    model: KGEModel | None = None,
    init_from: str | os.PathLike[str] | None = None,
) -> KGEModel:
    """The model a run trains: ``model`` after :func:`initialise` with ``config.init``, or the one
    ``config`` describes; then parameters from the checkpoint ``init_from`` when given."""
    if model is None:
        model = build_model(config, kg)
    else:
        initialise(model, config.init)
    if init_from is not None:
        init_from_checkpoint(model, init_from)
    return model
