"""Folds: closed forms of a circuit that replace layer-by-layer passes.

A compiler that knows more algebra about its circuit than the layers show (that ComplEx's four
``K``-wide real terms are the real part of one complex trilinear product, say) registers closed
forms under a name and builds its circuit with ``Circuit(..., folds=name)``. Two kinds:

**Pair folds** (:func:`register_pair_fold`). The pair pass (:mod:`circuitkg.executor.pairs`)
evaluates ``Σ_{integrated x} w(x) φ(x, e)²`` from the layers alone; the executor calls the fold
instead for every query whose summed variables are not the target of an adjoint (``log Z``,
weighted marginals such as a schema's constrained ``Z``). A pair fold receives, per variable, the
*base pair* of the base table its input layer reads (:func:`~circuitkg.params.views.base_of`):
the weighted Gram ``Σ_x w[b, x] B[x]ᵀ B[x]`` ``(N, W, W)`` of an integrated variable (``N = 1``
when unweighted), or ``B[x_b] B[x_b]ᵀ`` ``(N, W, W)`` of an observed one, each
:class:`~circuitkg.numerics.Scaled`. A weighted Gram whose weights group the values into classes
(a schema's signature masks) comes unmixed, as a :class:`~circuitkg.numerics.MixedScaled` of
per-class Grams and their ``(N x C)`` mix. Both answer ``shape``, ``device`` and ``map(f)``: a fold
applies its row-wise linear maps through ``map`` before reading ``.value``, so a mixed pair is
mixed on the (smaller) image of ``f``. It returns ``Σ φ²`` as a ``Scaled`` of shape ``(N, 1, 1)``,
exactly the value the pair pass would give.

**Linear folds** (:func:`register_linear_fold`). With every variable but the target observed,
``φ(x, e_b) = c_b · B[x]`` in the target's base rows (the expansion of
:mod:`circuitkg.executor.expansions`); the forward and adjoint passes compute ``c_b`` from the
layers. A linear fold computes it directly: it receives the target's name and the observed
variables' base rows ``B_v[e_b]`` (``(N, W_v)``, each :class:`~circuitkg.numerics.Scaled`), and
returns ``c`` ``(N, W)`` as a ``Scaled`` on the target's base table. Every query that contracts
the target against all its values (1-vs-all conditionals, the PLL normalisers, link prediction)
then skips the walk.

A fold is registered in its model's own file; the executor names none.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import TYPE_CHECKING

from torch import Tensor

from circuitkg.errors import StructureError
from circuitkg.numerics import MixedScaled, Scaled
from circuitkg.params.tables import Table
from circuitkg.params.views import base_of

if TYPE_CHECKING:
    from circuitkg.ir.circuit import Circuit

PairFold = Callable[[Mapping[str, Scaled | MixedScaled]], Scaled]
LinearFold = Callable[[str, Mapping[str, Scaled]], Scaled]

_PAIR_FOLDS: dict[str, PairFold] = {}
_LINEAR_FOLDS: dict[str, LinearFold] = {}


def register_pair_fold(name: str, fold: PairFold) -> PairFold:
    """Register ``fold`` as the pair fold of the circuits built with ``Circuit(folds=name)``."""
    return _register(_PAIR_FOLDS, "pair", name, fold)


def register_linear_fold(name: str, fold: LinearFold) -> LinearFold:
    """Register ``fold`` as the linear fold of the circuits built with ``Circuit(folds=name)``."""
    return _register(_LINEAR_FOLDS, "linear", name, fold)


def pair_fold(name: str | None) -> PairFold | None:
    """The pair fold registered as ``name``; ``None`` for ``None`` or an unknown name."""
    return None if name is None else _PAIR_FOLDS.get(name)


def linear_fold(name: str | None) -> LinearFold | None:
    """The linear fold registered as ``name``; ``None`` for ``None`` or an unknown name."""
    return None if name is None else _LINEAR_FOLDS.get(name)


def folded_coefficients(
    circuit: Circuit, target: str, evidence: Mapping[str, Tensor | None]
) -> list[tuple[Table, Scaled]] | None:
    """``[(base, c)]`` with ``φ(x, e_b) = c_b · base[x]`` from the circuit's linear fold, or
    ``None`` where it has none or a variable other than ``target`` is not observed (ids)."""
    fold = linear_fold(circuit.folds)
    observed = all(
        v == target or (i is not None and not i.is_floating_point()) for v, i in evidence.items()
    )
    if fold is None or not observed:
        return None
    rows, bases = {}, {}
    for layer in circuit.input_layers():
        bases[layer.variable] = base = base_of(layer.table)
        if layer.variable != target:
            rows[layer.variable] = Scaled.of(base.rows(evidence[layer.variable]))
    return [(bases[target], fold(target, rows))]


def _register(registry: dict, kind: str, name: str, fold):
    if name in registry and registry[name] is not fold:
        raise StructureError(f"a different {kind} fold is already registered as {name!r}")
    registry[name] = fold
    return fold
