"""The base class of KGE front ends, the model registry, and the CP-shaped circuit most of them
share.

A model registers itself with the :func:`register_model` class decorator in its own file, under
its ``name``; :data:`MODELS` maps the names to the classes (``circuitkg models`` lists them).
What the trainer needs to know about a model is asked of the model through hooks with defaults:
:meth:`KGEModel.positive_init_terms` and :meth:`KGEModel.positive_init_columns` (the positive
initialisation), :meth:`KGEModel.n3_factor` (the N3 regulariser).
"""

from __future__ import annotations

import math
import operator

from circuitkg.compilers.encoded import rebind
from torch import Tensor, nn

from circuitkg.errors import EvidenceError, FormError, ModelSpecError
from circuitkg.forms import FORMS, Form
from circuitkg.ir import Circuit, InputLayer, ProductLayer, SumLayer
from circuitkg.params import FixedWeight, FreeTable, PositiveTable, Table, Weight
from circuitkg.params.kronecker import kronecker_like

#: the variables of every KG circuit: subject, relation, object
KG_VARIABLES = ("s", "r", "o")
#: the table attributes that ``with_kronecker(which)`` reparameterises, by ``which``
KRONECKER_TABLES = {
    "entity": ("entity", "subject", "object"),
    "relation": ("relation",),
    "both": ("entity", "subject", "object", "relation"),
}


#: the registered models by name (:func:`register_model`)
MODELS: dict[str, type[KGEModel]] = {}


def register_model(cls: type[KGEModel]) -> type[KGEModel]:
    """Class decorator: make ``cls`` reachable by its ``name`` (``create_model``, the CLI,
    checkpoints). A second class under a name already taken raises :class:`ModelSpecError`."""
    taken = MODELS.get(cls.name)
    if taken is not None and taken is not cls:
        raise ModelSpecError(
            f"model name {cls.name!r} is taken by {taken.__module__}.{taken.__qualname__}"
        )
    MODELS[cls.name] = cls
    return cls


def check_kg_circuit(circuit, num_entities: int, num_relations: int, against: str) -> None:
    """Raise :class:`EvidenceError` unless ``circuit`` (anything with ``variables`` and
    ``domains``) is over ``s, r, o`` with ``num_entities`` and ``num_relations`` values;
    ``against`` names what those sizes come from, for the message."""
    if sorted(circuit.variables) != sorted(KG_VARIABLES):
        raise EvidenceError(f"expected a circuit over s, r, o; it is over {circuit.variables}")
    sizes = {"s": num_entities, "r": num_relations, "o": num_entities}
    for var, size in sizes.items():
        if circuit.domains[var] != size:
            raise EvidenceError(
                f"variable {var!r} has {circuit.domains[var]} values in the circuit but {size} "
                f"in {against}"
            )


class KGEModel(nn.Module):
    """A KGE model over ``num_entities`` entities and ``num_relations`` relations, in one ``form``.

    Subclasses create their tables in ``__init__`` (so they are submodules) and return the circuit
    from :meth:`build_circuit`. ``init_std`` overrides the default initialisation:

    * ``score``: ``N(0, 1e-3²)`` (small, as in Lacroix et al. 2018 for 1-vs-all training);
    * ``squared``: ``N(0, σ²)`` with ``σ`` chosen so that ``φ`` has unit variance at init
      (``σ = K^{-1/6}`` for CP-shaped models), which keeps ``φ²`` and its gradients O(1);
    * ``monotone``: ``exp`` of ``N(μ, 0.1²)`` with ``μ = -log(K)/3``, so ``φ ≈ 1`` at init.

    For training a squared model, :func:`circuitkg.train.initialise` (what the trainer does first)
    moves it to a positive start, from which PLL training does not stall.
    """

    forms: tuple[Form, ...] = FORMS
    name: str = "kge"

    def __init__(
        self,
        num_entities: int,
        num_relations: int,
        rank: int,
        form: Form = "squared",
        init_std: float | None = None,
    ) -> None:
        super().__init__()
        if form not in self.forms:
            raise FormError(
                f"{type(self).__name__} has no {form!r} form; it has {list(self.forms)}"
                + (f" ({self.form_note})" if getattr(self, "form_note", "") else "")
            )
        sizes = {"num_entities": num_entities, "num_relations": num_relations, "rank": rank}
        for key, value in sizes.items():
            try:
                whole = not isinstance(value, bool) and operator.index(value) >= 1
            except TypeError:
                whole = False
            if not whole:
                raise ModelSpecError(
                    f"{type(self).__name__}: {key} must be a positive integer, got {value!r}"
                )
        self.num_entities, self.num_relations, self.rank = (
            int(num_entities),
            int(num_relations),
            int(rank),
        )
        self.form = form
        self.init_std = init_std
        self._circuit: Circuit | None = None

    def build_circuit(self) -> Circuit:
        raise NotImplementedError

    def circuit(self) -> Circuit:
        """The model's circuit (built once; it references this module's parameters)."""
        if self._circuit is None:
            circuit = self.build_circuit()
            reference = next(self.parameters())
            # fixed weights and views are created here: register them so .to()/.double() reach them
            self.circuit_modules = circuit.modules().to(
                device=reference.device, dtype=reference.dtype
            )
            self._circuit = circuit
        return self._circuit

    def compile(self, **kwargs):
        """Shorthand for :func:`circuitkg.compile` on this model."""
        from circuitkg.compile import compile as compile_

        return compile_(self, **kwargs)

    def on(self, graph, features=None) -> KGEModel:
        """This model over ``graph``'s entities (a :class:`~circuitkg.encoders.Graph` over the same
        relation vocabulary), sharing the relation and encoder parameters; only models with an
        encoder can move (:func:`~circuitkg.compilers.encoded.rebind`). Every query of the result
        is exact over the new entity set, Z included."""
        return rebind(self, graph, features)

    @property
    def encoded_graph(self):
        """The graph the entity encoder reads, or None for lookup entity tables."""
        table = self.__dict__.get("encoded_table")
        return None if table is None else table.graph

    def num_parameters(self) -> int:
        return sum(p.numel() for p in self.parameters())

    def with_kronecker(self, which: str) -> KGEModel:
        """Reconstruct the entity and/or relation tables from Kronecker factors (paper 002).

        ``which`` is ``"entity"``, ``"relation"`` or ``"both"``; each table attribute it names
        (:data:`KRONECKER_TABLES`) is replaced by :func:`~circuitkg.params.kronecker.kronecker_like`
        of it: same values, width and kind (free or positive), ``A[x] ⊗ A[x]`` for square widths.
        Call it before the circuit is built (and before creating an optimiser); returns ``self``.
        """
        if which not in KRONECKER_TABLES:
            raise ValueError(f"kronecker must be one of {sorted(KRONECKER_TABLES)}, got {which!r}")
        if self._circuit is not None:
            raise ValueError("with_kronecker must be called before the circuit is built")
        for name in KRONECKER_TABLES[which]:
            table = getattr(self, name, None)
            if isinstance(table, Table):
                setattr(self, name, kronecker_like(table))
        return self

    # --- hooks of the trainer ---------------------------------------------------------------------
    def positive_init_terms(self) -> tuple[int, int] | None:
        """``(k, d)``: ``φ`` sums ``k`` product terms of ``d`` factors each, which sets the scale
        ``μ = k^{-1/d}`` of the positive initialisation (:mod:`circuitkg.train.initialisation`);
        ``None``: the scheme is not defined for this model.

        The default reads the circuit: when ``φ`` is one sum layer over one product layer, ``k`` is
        the product's width and ``d`` the number of variables it multiplies, plus one when the
        sum's weight holds parameters (a core tensor). That is CP and DistMult (``K``, 3), RESCAL
        (``K²``, 3) and TuckER (``K_e² K_r``, 4); other shapes give ``None``."""
        output = self.circuit().output
        if not isinstance(output, SumLayer) or len(output.children) != 1:
            return None
        (product,) = output.children
        if not isinstance(product, ProductLayer):
            return None
        learned = next(output.weight.parameters(), None) is not None
        return product.width, len(product.scope) + int(learned)

    def positive_init_columns(self, width: int) -> slice | None:
        """The columns of a parameter table of ``width`` columns that the positive initialisation
        shifts to ``μ`` (the others start at ``μ·noise·ε``); ``None`` (the default): all."""
        return None

    def n3_factor(self, rows: Tensor) -> Tensor:
        """The N3 factor of embedding ``rows`` ``(B, width)`` of one of this model's tables
        (:func:`circuitkg.train.regularisers.n3` sums ``|factor|³``); the default: the rows."""
        return rows

    # --- initialisation helpers ----------------------------------------------------------------
    def table(
        self,
        num_values: int,
        width: int,
        product_order: int = 3,
        effective_width: int | None = None,
    ) -> Table:
        """A table for this form: free (score, squared) or ``exp`` of a log-table (monotone).

        ``product_order`` is how many tables multiply in one score term and ``effective_width`` the
        number of terms summed, which set the default scale.
        """
        k = effective_width or width
        if self.form == "monotone":
            return PositiveTable(
                num_values, width, init_mean=-math.log(k) / product_order, init_std=0.1
            )
        if self.init_std is not None:
            std = self.init_std
        elif self.form == "score":
            std = 1e-3
        else:
            std = k ** (-1.0 / (2 * product_order))
        return FreeTable(num_values, width, init_std=std)

    def extra_repr(self) -> str:
        return (
            f"num_entities={self.num_entities}, num_relations={self.num_relations}, "
            f"rank={self.rank}, form={self.form!r}"
        )


def cp_circuit(
    s: Table,
    r: Table,
    o: Table,
    weight: Weight | None = None,
    name: str = "cp",
    folds: str | None = None,
) -> Circuit:
    """``φ(s, r, o) = W (S[s] ⊙ R[r] ⊙ O[o])``: three inputs, one Hadamard layer, one sum layer
    (``folds``: the name of registered closed forms of it, :mod:`circuitkg.executor.folds`)."""
    product = ProductLayer(
        [
            InputLayer("s", s, name=f"{name}.S"),
            InputLayer("r", r, name=f"{name}.R"),
            InputLayer("o", o, name=f"{name}.O"),
        ],
        "hadamard",
        name=f"{name}.product",
    )
    weight = FixedWeight.ones(product.width) if weight is None else weight
    return Circuit(SumLayer([product], weight, name=f"{name}.sum"), KG_VARIABLES, folds)
