"""Models by name, for the CLI and configuration files.

:data:`MODELS` is filled by the :func:`~circuitkg.compilers.base.register_model` decorator of each
model class (importing :mod:`circuitkg.compilers` imports every model file).
"""

from __future__ import annotations

from typing import Any

from circuitkg.compilers.base import MODELS, KGEModel
from circuitkg.compilers.encoded import attach_encoder

from circuitkg.data.kg import KnowledgeGraph
from circuitkg.encoders import Graph, GraphError
from circuitkg.errors import ModelSpecError

__all__ = ["MODELS", "create", "create_model"]


def create_model(
    name: str,
    num_entities: int,
    num_relations: int,
    rank: int,
    form: str = "squared",
    kronecker: str | None = None,
    encoder: str | None = None,
    encoder_options: dict[str, Any] | None = None,
    graph: Graph | None = None,
    **kwargs,
) -> KGEModel:
    """Instantiate a registered model by (case-insensitive) name.

    ``kronecker`` (``"entity"``, ``"relation"``, ``"both"``) reconstructs those tables from Kronecker
    factors (:meth:`KGEModel.with_kronecker`). ``encoder`` (a name in
    :data:`~circuitkg.encoders.ENCODERS`) computes the entity tables from ``graph`` instead
    (:func:`~circuitkg.compilers.encoded.attach_encoder`, with ``encoder_options``).
    """
    if not isinstance(name, str):
        raise ModelSpecError(f"a model name must be a string, got {name!r}")
    key = name.lower().replace("_", "-")
    if key not in MODELS:
        raise ModelSpecError(f"unknown model {name!r}; known models: {sorted(MODELS)}")
    model = MODELS[key](num_entities, num_relations, rank, form=form, **kwargs)
    if kronecker is not None:
        model.with_kronecker(kronecker)
    if encoder is not None:
        if graph is None:
            raise GraphError(f"encoder {encoder!r} needs the graph it reads (graph=...)")
        attach_encoder(model, encoder, graph, **(encoder_options or {}))
    return model


def create(
    name: str,
    data: KnowledgeGraph | Graph,
    rank: int = 100,
    form: str = "squared",
    *,
    encoder: str | None = None,
    kronecker: str | None = None,
    model_options: dict[str, Any] | None = None,
    **encoder_options,
) -> KGEModel:
    """A model sized for ``data`` (a knowledge graph, whose ``train`` split an encoder reads, or
    a :class:`~circuitkg.encoders.Graph`); the keyword options go to the encoder::

        create("distmult", kg, rank=200, form="squared", encoder="refactor", layers=6)
    """
    graph = data if isinstance(data, Graph) else Graph.from_kg(data)
    if encoder_options and encoder is None:
        raise GraphError(f"encoder options {sorted(encoder_options)} given without an encoder")
    return create_model(
        name, graph.num_nodes, graph.num_relations, rank, form, kronecker=kronecker,
        encoder=encoder, encoder_options=encoder_options, graph=graph, **(model_options or {}),
    )  # fmt: skip
