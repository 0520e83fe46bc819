"""Models whose entity tables an encoder computes: binding, rebinding to a new graph, the objective.

:func:`attach_encoder` replaces a model's entity tables (``entity``, or ``subject`` and ``object``)
by one :class:`~circuitkg.params.EncodedTable` of their summed width (column views when there are
several), and binds the model as the encoder's decoder (:class:`ModelObjective`).
:func:`rebind` is ``model.on(graph)``: a model over ``graph``'s nodes that shares every parameter.
"""

from __future__ import annotations

import copy
from collections.abc import Hashable

import torch
from torch import Tensor

from circuitkg.encoders import Graph, GraphEncoder, GraphError, make_encoder
from circuitkg.params import ColumnView, EncodedTable, Table
from circuitkg.params.tables import tensors_token

#: the attributes that hold entity tables, in column order of an encoded table
ENTITY_TABLES = ("entity", "subject", "object")
CLOSED_FORMS = {("distmult", "score"): "distmult-softmax"}


class ModelObjective:
    """The decoder objective an encoder's layers descend: the object-side softmax NLL in score
    form, PLL (:func:`~circuitkg.train.objectives.pll_loss`) in the normalised forms, each averaged
    over the triples, with the encoded table set to the given node states."""

    def __init__(self, model, table: EncodedTable) -> None:
        self.model, self.table = model, table
        self.closed_form = CLOSED_FORMS.get((model.name, model.form))
        self._compiled = None

    def relation_rows(self) -> Tensor:
        return self.model.relation.full()

    def loss(self, states: Tensor, triples: Tensor) -> Tensor:
        if self._compiled is None:
            from circuitkg.compile import compile as compile_

            self._compiled = compile_(self.model)
        compiled = self._compiled
        with self.table.evaluating_at(states):
            if compiled.form == "score":
                rows = compiled.log_conditional("o", s=triples[:, 0], r=triples[:, 1])
                return -rows.gather(1, triples[:, 2:]).mean()
            # imported here: circuitkg.train imports the model front ends
            from circuitkg.train.objectives import pll_loss

            return pll_loss(compiled, triples)

    def token(self) -> Hashable:
        return tensors_token(self.model.parameters())


def entity_attributes(model) -> list[str]:
    return [a for a in ENTITY_TABLES if isinstance(getattr(model, a, None), Table)]


def attach_encoder(model, encoder: str | GraphEncoder, graph: Graph, **options) -> EncodedTable:
    """Replace ``model``'s entity tables by ``encoder`` over ``graph`` (see the module docstring)."""
    if model._circuit is not None:
        raise GraphError("attach an encoder before the model's circuit is built")
    if graph.num_nodes != model.num_entities:
        raise GraphError(
            f"the graph has {graph.num_nodes} nodes, the model {model.num_entities} entities"
        )
    graph.check_relations(model.num_relations, None)
    attributes = entity_attributes(model)
    width = sum(getattr(model, a).width for a in attributes)
    if isinstance(encoder, str):
        encoder = make_encoder(encoder, width, graph.num_nodes, **options)
    elif options:
        raise GraphError("encoder options go with an encoder name, not an encoder module")
    if encoder.width != width:
        raise GraphError(f"the encoder's width is {encoder.width}; the model needs {width}")
    reference = next(model.relation.parameters())
    table = EncodedTable(encoder, graph).to(device=reference.device, dtype=reference.dtype)
    _set_entity_tables(model, attributes, table)
    return table


def rebind(model, graph: Graph, features: Tensor | None = None):
    """``model`` over ``graph``'s nodes: same relations, same encoder parameters (shared)."""
    table = model.__dict__.get("encoded_table")
    if table is None:
        raise GraphError(
            f"{type(model).__name__}'s entity table is a lookup table over its "
            f"{model.num_entities} training entities and cannot serve a new graph; create the "
            "model with an encoder (create(..., encoder='refactor')) for that"
        )
    graph.check_relations(model.num_relations, table.graph.relation_names)
    new = copy.copy(model)
    new.__dict__ = model.__dict__.copy()
    for store in ("_parameters", "_buffers", "_modules"):
        new.__dict__[store] = dict(model.__dict__[store])
    new._modules.pop("circuit_modules", None)
    new._circuit = None
    new.num_entities = graph.num_nodes
    bound = table.on(graph.to(table.edges.device), features)
    bound.train(model.training)
    _set_entity_tables(new, entity_attributes(model), bound)
    return new


def _set_entity_tables(model, attributes: list[str], table: EncodedTable) -> None:
    start = 0
    for name in attributes:
        width = getattr(model, name).width
        if len(attributes) == 1:
            setattr(model, name, table)
        else:
            setattr(model, name, ColumnView(table, torch.arange(start, start + width)))
        start += width
    model.__dict__["encoded_table"] = table  # not a submodule: the attributes above register it
    table.bind_decoder(ModelObjective(model, table))
