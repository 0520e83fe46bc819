"""TransE (Bordes et al. 2013) with the squared L2 distance, as a polynomial circuit.

``φ(s, r, o) = -||s + r - o||² = Σ_k [-s_k² - r_k² - o_k² - 2 s_k r_k + 2 s_k o_k + 2 r_k o_k]``:
each of the six terms is a product of one feature per variable from ``{x², x, 1}``, so the inputs are
:class:`~circuitkg.params.FeatureTable` views of the embedding tables (width ``6K``), one Hadamard
layer, and a sum with weights ``(-1, -1, -1, -2, 2, 2) ⊗ 1_K``: smooth and decomposable, so
all-entity scores cost ``O(BKn)`` like the bilinear models.

Only the ``score`` form exists: the score is a negative distance, so it is not non-negative
(no monotone form), and its square would reward *distant* triples (no squared form).
"""

from __future__ import annotations

import torch
from circuitkg.compilers.base import KGEModel, cp_circuit, register_model
from einops import repeat

from circuitkg.forms import Form
from circuitkg.ir import Circuit
from circuitkg.params import FeatureTable, FixedWeight, FreeTable

# per term: the power of s, r, o
_TERMS = ((2, 0, 0), (0, 2, 0), (0, 0, 2), (1, 1, 0), (1, 0, 1), (0, 1, 1))
_COEFFICIENTS = (-1.0, -1.0, -1.0, -2.0, 2.0, 2.0)


@register_model
class TransE(KGEModel):
    """Translational model, score form: ``-||e_s + w_r - e_o||²``."""

    name = "transe"
    forms = ("score",)
    form_note = (
        "its score is a negative distance: not non-negative, and its square rewards distant triples"
    )

    def __init__(
        self,
        num_entities: int,
        num_relations: int,
        rank: int,
        form: Form = "score",
        init_std: float | None = None,
    ) -> None:
        super().__init__(num_entities, num_relations, rank, form, init_std)
        std = init_std if init_std is not None else rank**-0.5
        self.entity = FreeTable(num_entities, rank, init_std=std)
        self.relation = FreeTable(num_relations, rank, init_std=std)

    def positive_init_terms(self) -> None:
        """Not defined: ``φ`` is a negative distance, whose terms are powers of one coordinate,
        not products of positive factors."""
        return None

    def build_circuit(self) -> Circuit:
        k = self.rank
        columns = list(range(k)) * len(_TERMS)

        def features(table, position: int) -> FeatureTable:
            powers = [p[position] for p in _TERMS for _ in range(k)]
            return FeatureTable(table, columns, powers)

        weight = FixedWeight(repeat(torch.tensor(_COEFFICIENTS), "term -> 1 (term k)", k=k))
        return cp_circuit(
            features(self.entity, 0),
            features(self.relation, 1),
            features(self.entity, 2),
            weight,
            name=self.name,
        )
