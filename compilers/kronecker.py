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

``batch_norm=True`` adds paper 002's batch normalisation as
:class:`~circuitkg.params.kronecker.BatchNormTable` (statistics over the whole table, so the table
stays a function of the parameters) on the subject and relation inputs, where the paper's parameter
counts put it: KD-DistMult normalises the stored ``h`` and ``r`` (two layers of width ``k``) before
the Kronecker squares, KD-Rel-DistMult the subject ``h`` and the reconstructed ``r ⊗ r`` (two of
width ``k²``), :class:`BatchNormDistMult` the subject and relation rows (two of width ``d``). The
object (the 1-vs-all side) is not normalised. The paper's third layer for the latter two, a
normaliser of the product ``h ∘ r`` over the batch, is no input table and is left out (``2·k²`` or
``2·d`` parameters fewer). Score and squared forms only: normalised entries have both signs. In
score form the entries then start at ``1e-3`` (as DistMult's): the normalised tables do not depend
on that scale, and with unit-variance scores at the start KD-DistMult barely trains (UMLS, 50
epochs of the paper's protocol: test MRR .07 at the unit-variance scale, .40 at 1e-3).
"""

from __future__ import annotations

from circuitkg.compilers.base import KGEModel, cp_circuit, register_model
from circuitkg.compilers.cp import DistMult

from circuitkg.errors import FormError
from circuitkg.forms import Form
from circuitkg.ir import Circuit
from circuitkg.params import KroneckerTable
from circuitkg.params.kronecker import BatchNormTable


def _check_batch_norm(model: KGEModel, batch_norm: bool) -> None:
    if batch_norm and model.form == "monotone":
        raise FormError(
            f"{type(model).__name__}: batch normalisation gives entries of both signs; "
            "the monotone form needs non-negative tables (use score or squared)"
        )


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
        batch_norm: bool = False,
    ) -> None:
        super().__init__(num_entities, num_relations, rank, form, init_std)
        _check_batch_norm(self, batch_norm)
        self.batch_norm = batch_norm
        if form == "score" and init_std is None:
            # normalised inputs do not depend on their tables' scale: only the object's sets the
            # score's, and small entries (the 1e-3 of the other score models) train best
            unit = self.circuit_width ** (-1.0 / (2 * self.degree))
            self.init_std = 1e-3 if batch_norm else unit

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
        batch_norm: bool = False,
    ) -> None:
        super().__init__(num_entities, num_relations, rank, form, init_std, batch_norm)
        k2 = self.circuit_width
        self.entity = self.table(num_entities, rank, self.degree, effective_width=k2)
        self.relation = self.table(num_relations, rank, self.degree, effective_width=k2)
        if batch_norm:
            self.subject_norm = BatchNormTable(self.entity)
            self.relation_norm = BatchNormTable(self.relation)

    def build_circuit(self) -> Circuit:
        subject = self.subject_norm if self.batch_norm else self.entity
        relation = self.relation_norm if self.batch_norm else self.relation
        return cp_circuit(
            KroneckerTable.square(subject),
            KroneckerTable.square(relation),
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
        batch_norm: bool = False,
    ) -> None:
        super().__init__(num_entities, num_relations, rank, form, init_std, batch_norm)
        k2 = self.circuit_width
        self.entity = self.table(num_entities, k2, self.degree, effective_width=k2)
        self.relation = self.table(num_relations, rank, self.degree, effective_width=k2)
        if batch_norm:
            self.subject_norm = BatchNormTable(self.entity)
            self.relation_norm = BatchNormTable(KroneckerTable.square(self.relation))

    def build_circuit(self) -> Circuit:
        if self.batch_norm:
            return cp_circuit(self.subject_norm, self.relation_norm, self.entity, name=self.name)
        relation = KroneckerTable.square(self.relation)
        return cp_circuit(self.entity, relation, self.entity, name=self.name)


class BatchNormDistMult(DistMult):
    """DistMult with paper 002's batch normalisation of the subject and relation rows
    (:class:`~circuitkg.params.kronecker.BatchNormTable`, whole-table statistics; module docstring).
    Not registered: the plain ``distmult`` is the library's model, this one the paper's baseline."""

    def __init__(
        self,
        num_entities: int,
        num_relations: int,
        rank: int,
        form: Form = "squared",
        init_std: float | None = None,
    ) -> None:
        super().__init__(num_entities, num_relations, rank, form, init_std)
        _check_batch_norm(self, True)
        self.subject_norm = BatchNormTable(self.entity)
        self.relation_norm = BatchNormTable(self.relation)

    def build_circuit(self) -> Circuit:
        return cp_circuit(self.subject_norm, self.relation_norm, self.entity, name=self.name)
