"""RESCAL (Nickel et al. 2011): ``φ(s, r, o) = e_sᵀ W_r e_o = Σ_ab S[s,a] W_r[a,b] O[o,b]``.

Circuit: ``Kronecker(S, O)`` (width ``K²``) ⊙ an ``R`` input of width ``K²`` (``W_r`` flattened
row-major), then a sum with weights one; subject and object tables are tied. Squared ``log Z`` pairs
the ``K²``-wide layers: ``O(mK⁴ + nK²)`` time; keep ``K`` moderate (≤ 64) for the squared form.
"""

from __future__ import annotations

from circuitkg.compilers.base import KG_VARIABLES, KGEModel, register_model

from circuitkg.forms import Form
from circuitkg.ir import Circuit, InputLayer, ProductLayer, SumLayer
from circuitkg.params import FixedWeight


@register_model
class RESCAL(KGEModel):
    """Bilinear model with a full ``K x K`` matrix per relation."""

    name = "rescal"

    def __init__(
        self,
        num_entities: int,
        num_relations: int,
        rank: int,
        form: Form = "squared",
        init_std: float | None = None,
    ) -> None:
        super().__init__(num_entities, num_relations, rank, form, init_std)
        self.entity = self.table(num_entities, rank, effective_width=rank * rank)
        self.relation = self.table(num_relations, rank * rank, effective_width=rank * rank)

    def build_circuit(self) -> Circuit:
        pair = ProductLayer(
            [
                InputLayer("s", self.entity, name="rescal.S"),
                InputLayer("o", self.entity, name="rescal.O"),
            ],
            "kronecker",
            name="rescal.SO",
        )
        product = ProductLayer(
            [pair, InputLayer("r", self.relation, name="rescal.R")],
            "hadamard",
            name="rescal.product",
        )
        return Circuit(
            SumLayer([product], FixedWeight.ones(product.width), name="rescal.sum"), KG_VARIABLES
        )
