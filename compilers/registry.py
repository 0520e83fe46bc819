"""Models by name, for the CLI and configuration files."""

from __future__ import annotations

from circuitkg.compilers.base import KGEModel
from circuitkg.compilers.complex import ComplEx
from circuitkg.compilers.cp import CP, DistMult
from circuitkg.compilers.rescal import RESCAL
from circuitkg.compilers.transe import TransE
from circuitkg.compilers.tucker import TuckER

MODELS: dict[str, type[KGEModel]] = {
    "cp": CP,
    "distmult": DistMult,
    "complex": ComplEx,
    "rescal": RESCAL,
    "tucker": TuckER,
    "transe": TransE,
}


def create_model(
    name: str, num_entities: int, num_relations: int, rank: int, form: str = "squared", **kwargs
) -> KGEModel:
    """Instantiate a registered model by (case-insensitive) name."""
    key = name.lower().replace("_", "-")
    if key not in MODELS:
        raise ValueError(f"unknown model {name!r}; known models: {sorted(MODELS)}")
    return MODELS[key](num_entities, num_relations, rank, form=form, **kwargs)
