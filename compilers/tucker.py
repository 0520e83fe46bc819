"""TuckER (Balažević et al. 2019): ``φ(s, r, o) = Σ_abc W[a,b,c] S[s,a] R[r,b] O[o,c]``.

Circuit: ``Kronecker(S, R, O)`` → a sum layer whose weight is the core tensor ``W`` flattened to
``(1, d_e d_r d_e)``. The executor keeps that Kronecker layer lazy: scores cost
``O(B d_e d_r d_e)`` by contracting the core factor by factor, never materialising the
``d_e² d_r`` vector per triple; squared ``log Z`` contracts the core with the three Gram matrices,
``O(d_e³ d_r + n d_e² + m d_r²)``. Subject and object tables are tied.
"""

from __future__ import annotations

import math

from circuitkg.compilers.base import KG_VARIABLES, KGEModel, register_model

from circuitkg.forms import Form
from circuitkg.ir import Circuit, InputLayer, ProductLayer, SumLayer
from circuitkg.params import FreeWeight, PositiveWeight


@register_model
class TuckER(KGEModel):
    """Tucker decomposition with entity width ``rank`` and relation width ``relation_rank``."""

    name = "tucker"

    def __init__(
        self,
        num_entities: int,
        num_relations: int,
        rank: int,
        form: Form = "squared",
        init_std: float | None = None,
        relation_rank: int | None = None,
    ) -> None:
        super().__init__(num_entities, num_relations, rank, form, init_std)
        self.relation_rank = int(relation_rank or rank)
        core_width = rank * self.relation_rank * rank
        self.entity = self.table(num_entities, rank, product_order=4, effective_width=core_width)
        self.relation = self.table(
            num_relations, self.relation_rank, product_order=4, effective_width=core_width
        )
        if form == "monotone":
            self.core = PositiveWeight(1, core_width, init_std=0.1)
            self.core.log_weight.data -= math.log(core_width) / 4
        else:
            std = (
                self.init_std
                if self.init_std is not None
                else (1e-1 if form == "score" else core_width**-0.125)
            )
            self.core = FreeWeight(1, core_width, init_std=std)

    def build_circuit(self) -> Circuit:
        kron = ProductLayer(
            [
                InputLayer("s", self.entity, name="tucker.S"),
                InputLayer("r", self.relation, name="tucker.R"),
                InputLayer("o", self.entity, name="tucker.O"),
            ],
            "kronecker",
            name="tucker.SRO",
        )
        return Circuit(SumLayer([kron], self.core, name="tucker.core"), KG_VARIABLES)
