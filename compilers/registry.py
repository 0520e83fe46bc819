"""Models by name, for the CLI and configuration files."""

from __future__ import annotations

from circuitkg.compilers.base import KGEModel
from circuitkg.compilers.complex import ComplEx
from circuitkg.compilers.cp import CP, DistMult
from circuitkg.compilers.kronecker import KDDistMult, KDRelDistMult
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
    "kd-distmult": KDDistMult,
    "kd-rel-distmult": KDRelDistMult,
}


def create_model(
    name: str,
    num_entities: int,
    num_relations: int,
    rank: int,
    form: str = "squared",
    kronecker: str | None = None,
    **kwargs,
) -> KGEModel:
    """Instantiate a registered model by (case-insensitive) name.

    ``kronecker`` (``"entity"``, ``"relation"``, ``"both"``) reconstructs those tables from Kronecker
    factors (:meth:`KGEModel.with_kronecker`).
    """
    key = name.lower().replace("_", "-")
    if key not in MODELS:
        raise ValueError(f"unknown model {name!r}; known models: {sorted(MODELS)}")
    model = MODELS[key](num_entities, num_relations, rank, form=form, **kwargs)
    return model if kronecker is None else model.with_kronecker(kronecker)
