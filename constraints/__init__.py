"""Logical constraints compiled to constraint circuits (``circuitkg.constraints``).

A :class:`DomainSchema` (entity types, per-relation subject and object types) binds to a knowledge
graph (:class:`BoundSchema`: masks via entity classes, signature groups), compiles to a
deterministic, smooth, decomposable circuit ``c(s, r, o) ∈ {0, 1}`` compatible with the KGE circuits
of :mod:`circuitkg.compilers` (:func:`constraint_circuit`), and conditions a model on it
(:func:`constrain` -> :class:`ConstrainedCircuit`): ``p ∝ φ² · c`` with exact ``Z``, marginals,
conditionals and top-k that never violate the schema. See ``docs/constraints.md``.

>>> from circuitkg.constraints import biomedical_kg, constrain
>>> import circuitkg as ckg
>>> kg, schema = biomedical_kg(seed=0)
>>> model = ckg.models.ComplEx(kg.num_entities, kg.num_relations, rank=4)
>>> c = constrain(model, schema, kg)
>>> [p.name for p in c.topk("o", s="loxoprofen", r="inhibits", k=50)][:2]  # only enzymes  # doctest: +SKIP
"""

from circuitkg.constraints.binding import BoundSchema, ViolationReport
from circuitkg.constraints.circuit import (
    constraint_circuit,
    determinism_violation,
    is_deterministic,
)
from circuitkg.constraints.constrained import ConstrainedCircuit, constrain
from circuitkg.constraints.io import read_json, read_tsv, write_json, write_tsv
from circuitkg.constraints.schema import DomainSchema, SchemaError, SchemaFormatError, Signature
from circuitkg.constraints.synthetic import biomedical_kg

from circuitkg.executor.names import Prediction

__all__ = [
    "BoundSchema",
    "ConstrainedCircuit",
    "DomainSchema",
    "Prediction",
    "SchemaError",
    "SchemaFormatError",
    "Signature",
    "ViolationReport",
    "biomedical_kg",
    "constrain",
    "constraint_circuit",
    "determinism_violation",
    "is_deterministic",
    "read_json",
    "read_tsv",
    "write_json",
    "write_tsv",
]
