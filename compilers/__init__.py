"""Model front ends: KGE score functions compiled to the circuit IR (``circuitkg.compilers``).

Each model holds its parameter tables and builds one circuit over the variables ``(s, r, o)``. Forms:
``score`` (the published KGE), ``monotone`` (non-negative parameters, ``p = φ / Z``) and ``squared``
(``p = φ² / Z``), :data:`circuitkg.forms.Form`. A new model is a subclass of :class:`KGEModel`
implementing ``build_circuit``, decorated with :func:`register_model` in its own file (and imported
here) to reach it by name; the trainer's hooks (``positive_init_terms``, ``n3_factor``, ...) have
defaults.
"""

from circuitkg.compilers.base import KGEModel, cp_circuit, register_model
from circuitkg.compilers.complex import ComplEx
from circuitkg.compilers.cp import CP, DistMult
from circuitkg.compilers.kronecker import KDDistMult, KDRelDistMult
from circuitkg.compilers.registry import MODELS, create, create_model
from circuitkg.compilers.rescal import RESCAL
from circuitkg.compilers.transe import TransE
from circuitkg.compilers.tucker import TuckER

__all__ = [
    "CP",
    "MODELS",
    "RESCAL",
    "ComplEx",
    "DistMult",
    "KDDistMult",
    "KDRelDistMult",
    "KGEModel",
    "TransE",
    "TuckER",
    "cp_circuit",
    "create",
    "create_model",
    "register_model",
]
