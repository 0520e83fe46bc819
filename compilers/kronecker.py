"""KD-DistMult and KD-Rel-DistMult (Demir et al. 2022, paper 002) as CP circuits over Kronecker tables.

With stored embeddings of width ``k`` (``rank``), both are CP circuits of rank ``K = k²`` (the paper's
"embedding size" ``D = k²``) whose input tables are reconstructed on the fly
(:class:`~circuitkg.params.kronecker.KroneckerTable`):

* **KD-DistMult** (eq. 9): ``φ(h, r, t) = Σ_ij h_i h_j r_i r_j t_j = Σ_i R((h⊗h) ∘ (r⊗r))_i · t``,
  i.e. inputs ``S: h ⊗ h``, ``R: r ⊗ r``, ``O: 1 ⊗ t``, with one entity table ``E`` (``n x k``)
  read by ``S`` and ``O``. Parameters ``(n + m) k``. The ``1 ⊗ t`` object keeps 1-vs-all cheap:
  scoring all tails contracts ``O(B n k)`` after summing the coefficient over the ones axis.
* **KD-Rel-DistMult** (eq. 8): ``φ(h, r, t) = Σ_u h_u (r ⊗ r)_u t_u`` with entity tables of width
  ``k²`` and ``R: r ⊗ r`` of a relation table of width ``k``. Parameters ``n k² + m k``.

Every form exists: ``score`` (the published model), ``monotone`` (positive factors, so positive
tables) and ``squared``. Scores are polynomials of degree 5 (KD-DistMult) and 4 (KD-Rel-DistMult)
in the stored parameters, so every form, ``score`` included, starts at unit-variance scores: the
``1e-3`` entries the other models use in ``score`` form would make scores and gradients vanish.
Squared ``log Z`` contracts the three ``K x K`` Gram matrices, ``O((n + m) K²)`` with ``K = k²``.
"""

from __future__ import annotations

from circuitkg.compilers.base import KGEModel, cp_circuit, register_model

from circuitkg.forms import Form
from circuitkg.ir import Circuit
from circuitkg.params import KroneckerTable


class _KroneckerDistMult(KGEModel):
    """Shared set-up: ``rank`` is the stored width ``k``, the circuit has ``k²`` units."""

    #: how many stored entries multiply in one term of the score
    degree: int

    def __init__(
        self,
        num_entities: int,
        num_relations: int,
        rank: int,
        form: Form = "squared",
        init_std: float | None = None,
    ) -> None:
        super().__init__(num_entities, num_relations, rank, form, init_std)
        if form == "score" and init_std is None:
            self.init_std = self.circuit_width ** (-1.0 / (2 * self.degree))

    def positive_init_terms(self) -> None:
        """Not defined: a score term is a degree-``degree`` monomial of the stored entries, some
        read twice, so the circuit's ``k^{-1/d}`` scale of one entry per factor does not apply."""
        return None

    @property
    def circuit_width(self) -> int:
        """``K = k²``, the rank of the CP circuit (the paper's embedding size)."""
        return self.rank * self.rank


@register_model
class KDDistMult(_KroneckerDistMult):
    """KD-DistMult: CP of rank ``k²`` with inputs ``h ⊗ h``, ``r ⊗ r`` and ``1 ⊗ t``."""

    name = "kd-distmult"
    degree = 5

    def __init__(
        self,
        num_entities: int,
        num_relations: int,
        rank: int,
        form: Form = "squared",
        init_std: float | None = None,
    ) -> None:
        super().__init__(num_entities, num_relations, rank, form, init_std)
        k2 = self.circuit_width
        self.entity = self.table(num_entities, rank, self.degree, effective_width=k2)
        self.relation = self.table(num_relations, rank, self.degree, effective_width=k2)

    def build_circuit(self) -> Circuit:
        return cp_circuit(
            KroneckerTable.square(self.entity),
            KroneckerTable.square(self.relation),
            KroneckerTable.broadcast(self.entity, self.rank),
            name=self.name,
        )


@register_model
class KDRelDistMult(_KroneckerDistMult):
    """KD-Rel-DistMult: DistMult of rank ``k²`` whose relation rows are ``r ⊗ r``, ``r ∈ R^k``."""

    name = "kd-rel-distmult"
    degree = 4

    def __init__(
        self,
        num_entities: int,
        num_relations: int,
        rank: int,
        form: Form = "squared",
        init_std: float | None = None,
    ) -> None:
        super().__init__(num_entities, num_relations, rank, form, init_std)
        k2 = self.circuit_width
        self.entity = self.table(num_entities, k2, self.degree, effective_width=k2)
        self.relation = self.table(num_relations, rank, self.degree, effective_width=k2)

    def build_circuit(self) -> Circuit:
        relation = KroneckerTable.square(self.relation)
        return cp_circuit(self.entity, relation, self.entity, name=self.name)
