"""Pair folds: closed forms of a squared circuit's sums that replace the layer-by-layer pair pass.

The pair pass (:mod:`circuitkg.executor.pairs`) evaluates ``Σ_{integrated x} w(x) φ(x, e)²`` from
the layers alone. A compiler that knows more algebra about its circuit than the layers show (that
ComplEx's four ``K``-wide real terms are the real part of one complex trilinear product, say) can
register a *pair fold* under a name and build its circuit with ``Circuit(..., pair_fold=name)``.
The executor then calls the fold instead, for every query whose summed variables are not the
target of an adjoint (``log Z``, weighted marginals such as a schema's constrained ``Z``).

A fold receives, per variable, the *base pair* of the base table its input layer reads
(:func:`~circuitkg.params.views.base_of`): the weighted Gram ``Σ_x w[b, x] B[x]ᵀ B[x]`` ``(N, W, W)``
of an integrated variable (``N = 1`` when unweighted), or ``B[x_b] B[x_b]ᵀ`` ``(N, W, W)`` of an
observed one, each :class:`~circuitkg.numerics.Scaled`. A weighted Gram whose weights group the
values into classes (a schema's signature masks) comes unmixed, as a
:class:`~circuitkg.numerics.MixedScaled` of per-class Grams and their ``(N x C)`` mix. Both answer
``shape``, ``device`` and ``map(f)``: a fold applies its row-wise linear maps through ``map`` before
reading ``.value``, so a mixed pair is mixed on the (smaller) image of ``f``. It returns ``Σ φ²`` as
a ``Scaled`` of shape ``(N, 1, 1)``, exactly the value the pair pass would give. A fold is
registered in its model's own file; the executor names none.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping

from circuitkg.errors import StructureError
from circuitkg.numerics import MixedScaled, Scaled

PairFold = Callable[[Mapping[str, Scaled | MixedScaled]], Scaled]

_FOLDS: dict[str, PairFold] = {}


def register_pair_fold(name: str, fold: PairFold) -> PairFold:
    """Register ``fold`` under ``name`` (what ``Circuit(pair_fold=name)`` refers to)."""
    if name in _FOLDS and _FOLDS[name] is not fold:
        raise StructureError(f"a different pair fold is already registered as {name!r}")
    _FOLDS[name] = fold
    return fold


def pair_fold(name: str | None) -> PairFold | None:
    """The fold registered as ``name``; ``None`` for ``None`` or an unknown name (the pair pass)."""
    return None if name is None else _FOLDS.get(name)
