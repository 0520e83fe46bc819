"""CP (Lacroix et al. 2018) and DistMult (Yang et al. 2015) as circuits.

``φ_CP(s, r, o) = Σ_k S[s,k] R[r,k] O[o,k]``: a Hadamard product of three input layers and a sum with
weights one. DistMult is CP with the subject and object tables tied (one parameter read twice).
Costs: score ``O(BK)``; squared ``log Z = log 1ᵀ(G_S ⊙ G_R ⊙ G_O)1``, ``O((n+m)K²)``.
"""

from __future__ import annotations

from circuitkg.compilers.base import KGEModel, cp_circuit, register_model

from circuitkg.forms import Form
from circuitkg.ir import Circuit


@register_model
class CP(KGEModel):
    """Canonical polyadic decomposition: separate subject, relation and object tables."""

    name = "cp"

    def __init__(
        self,
        num_entities: int,
        num_relations: int,
        rank: int,
        form: Form = "squared",
        init_std: float | None = None,
    ) -> None:
        super().__init__(num_entities, num_relations, rank, form, init_std)
        self.subject = self.table(num_entities, rank)
        self.relation = self.table(num_relations, rank)
        self.object = self.table(num_entities, rank)

    def build_circuit(self) -> Circuit:
        return cp_circuit(self.subject, self.relation, self.object, name=self.name)


@register_model
class DistMult(KGEModel):
    """CP with ``S = O``: one entity table referenced by both entity input layers."""

    name = "distmult"

    def __init__(
        self,
        num_entities: int,
        num_relations: int,
        rank: int,
        form: Form = "squared",
        init_std: float | None = None,
    ) -> None:
        super().__init__(num_entities, num_relations, rank, form, init_std)
        self.entity = self.table(num_entities, rank)
        self.relation = self.table(num_relations, rank)

    def build_circuit(self) -> Circuit:
        return cp_circuit(self.entity, self.relation, self.entity, name=self.name)
