"""The constrained pseudo-log-likelihood's normalisers (squared form), from the allowed values' rows.

For a PLL term ``log p_c(t | rest)``, every variable but the target ``t`` observed, the normaliser
is the unconstrained model summed over the target values the schema allows. With ``c_b`` the
coefficients of ``φ`` in the target's base row (``compiled.expansions.linear``, one forward and
one adjoint pass, ``O(B K)``) and ``T`` the target's base table:

* entity targets (:func:`grouped_normaliser`): the rows of one signature group ``g`` share their
  allowed set ``A_g``, so ``Σ_{x ∈ A_g} (c_b · T[x])²`` is one ``(B_g x K)(K x |A_g|)`` product
  per group: ``O(B K |A|)`` in all for an average allowed set ``|A|``, against ``O(n K² + B K²)``
  for the unconstrained Gram plan. Per-group Grams would need ``O(n K²)`` class Grams and a
  class-to-group mix per step, and with CoDEx-S's classes (a few dozen entities each, fewer than
  ``K``) a class Gram has more entries than the class's rows: that plan measured 4.4x the
  unconstrained step at rank 200 (``docs/constraints.md``).
* the relation (:func:`masked_normaliser`): all ``m`` relations' scores ``(B x m)``, squared and
  masked by the relations allowed for ``(s, o)``: ``O(B K m)``.

Rows whose anchor the schema forbids get ``-inf`` (the caller names the broken rule).
"""

from __future__ import annotations

import torch
from torch import Tensor

#: entries of the ``(rows x values)`` score block computed at once
MAX_ENTRIES = 1 << 24


def masked_normaliser(compiled, target: str, mask: Tensor, given: dict[str, Tensor]) -> Tensor:
    """``log Σ_x mask[b, x] φ(x, given_b)²`` per row ``b`` (``-inf`` for an all-zero mask row);
    every variable but ``target`` observed in ``given``."""
    coef, rows, m = _coefficients_and_rows(compiled, target, given)
    step = max(1, MAX_ENTRIES // rows.shape[0])
    parts = []
    for c, w in zip(coef.value.split(step), mask.split(step), strict=True):
        parts.append(((c @ rows.T).square() * w.to(c.dtype)).sum(dim=1))
    mass = torch.cat(parts)
    return _log_mass(mass, mass <= 0, coef.log_scale, m)


def grouped_normaliser(
    compiled,
    target: str,
    groups: Tensor,
    anchor_ok: Tensor,
    allowed: list[Tensor],
    given: dict[str, Tensor],
) -> Tensor:
    """``log Σ_{x ∈ allowed[groups[b]]} φ(x, given_b)²`` per row ``b``, ``-inf`` where
    ``anchor_ok[b]`` is false; every variable but ``target`` observed in ``given``."""
    coef, rows, m = _coefficients_and_rows(compiled, target, given)
    present, of_row = torch.unique(groups, return_inverse=True)
    order = torch.argsort(of_row, stable=True)
    counts = torch.bincount(of_row, minlength=present.numel()).tolist()
    # one gather of the coefficient rows and one of the allowed value rows, split by group
    ids = [allowed[g] for g in present.tolist()]
    values = rows[torch.cat(ids)].split([i.numel() for i in ids])
    parts = [
        (c @ r.T).square().sum(dim=1)
        for c, r in zip(coef.value[order].split(counts), values, strict=True)
    ]
    mass = torch.cat(parts)[torch.argsort(order)]
    return _log_mass(mass, ~anchor_ok | (mass <= 0), coef.log_scale, m)


def _coefficients_and_rows(compiled, target: str, given: dict[str, Tensor]):
    """The target's coefficients ``c_b`` (scaled, normalised), its one base table's rows divided
    by their largest entry ``m``, and ``m``: ``φ(x, given_b) = c_b · rows[x] · m · scale_b``.

    Raises ``ValueError`` when the target's input layers read more than one base table (the
    caller's general plan runs then)."""
    bases = compiled.expansions.bases(target)
    if len(bases) != 1:
        raise ValueError("the normalisers from allowed rows need one base table per variable")
    coef = compiled.expansions.linear(target, **given).blocks[0].normalised()
    m = bases[0].abs_max()
    return coef, bases[0].full() / m, m


def _log_mass(mass: Tensor, empty: Tensor, log_scale: Tensor, m: Tensor) -> Tensor:
    """``log`` of the scaled squared masses, ``-inf`` where ``empty``."""
    mass = torch.where(empty, 1.0, mass)  # no 1/0 in the backward of the rows cut below
    log_mass = torch.log(mass) + 2 * log_scale + 2 * torch.log(m)
    return torch.where(empty, -torch.inf, log_mass)
