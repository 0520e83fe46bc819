"""The constrained pseudo-log-likelihood's normalisers (squared form), from the allowed values' rows.

For a PLL term ``log p_c(t | rest)``, every variable but the target ``t`` observed, the normaliser
is the unconstrained model summed over the target values the schema allows. With ``c_b`` the
coefficients of ``φ`` in the target's base row (``compiled.expansions.linear``, one forward and
one adjoint pass, ``O(B K)``) and ``T`` the target's base table:

* entity targets (:func:`grouped_normaliser`): the rows of one signature group ``g`` share their
  allowed set ``A_g``, so ``Σ_{x ∈ A_g} (c_b · T[x])²`` is a ``(B_g x K)(K x |A_g|)`` product per
  group: ``O(B K |A|)`` in all for an average allowed set ``|A|``, against ``O(n K² + B K²)`` for
  the unconstrained Gram plan. The table is gathered once per term, in an order where every
  allowed set is a few contiguous runs (:class:`AllowedRuns`), and each group's rows meet its
  runs directly: a gather of each group's allowed rows wrote ``Σ_g |A_g| x K`` entries per term
  and as many back in the backward (60 MB per term on CoDEx-S at rank 200, a gigabyte on
  CoDEx-M). Per-group Grams would need ``O(n K²)`` class Grams and a class-to-group mix per step;
  that plan measured 4.4x the unconstrained step at rank 200 (``docs/constraints.md``).
* the relation (:func:`masked_normaliser`): all ``m`` relations' scores ``(B x m)``, squared and
  masked by the relations allowed for ``(s, o)``: ``O(B K m)``.

Rows whose anchor the schema forbids get ``-inf`` (the caller names the broken rule).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor

from circuitkg.grouping import RowsByGroup

#: entries of the ``(rows x values)`` score block computed at once
MAX_ENTRIES = 1 << 24
#: what a class or group Gram of the Gram plan costs, in rows of the table: it is written,
#: checked, scaled and mixed, all memory-bound (fitted on CoDEx-S and CoDEx-M at ranks 50, 200)
GRAM_ROWS = 100


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


@dataclass(frozen=True)
class AllowedRuns:
    """The values in an order where each signature group's allowed set is a few contiguous runs.

    Values are sorted by their membership over the groups, largest group first (descending
    lexicographic order of the membership columns), so nested allowed sets come out as prefixes
    and most others as one or two runs (CoDEx-S: 59 runs for 38 subject sets, 124 for the object
    sets; CoDEx-M: 288 and 388 for 49). ``order[i]`` is the value at position ``i``; ``runs[g]``
    the ``(start, stop)`` positions of group ``g``'s allowed values; ``num_classes`` counts the
    distinct membership columns (the classes of the Gram plan)."""

    order: Tensor
    runs: tuple[tuple[tuple[int, int], ...], ...]
    masks: Tensor
    num_classes: int

    def size(self, group: int) -> int:
        """How many values group ``group`` allows."""
        return sum(z - a for a, z in self.runs[group])

    @staticmethod
    def of(masks: Tensor) -> AllowedRuns:
        """From the ``(G x n)`` 0/1 allowed masks of the groups."""
        masks = masks.bool()
        by_size = torch.argsort(masks.sum(dim=1), descending=True, stable=True)
        key = (~masks[by_size]).T.to(torch.uint8)  # ascending order of ~membership = descending
        classes, inverse = torch.unique(key, dim=0, return_inverse=True)
        order = torch.argsort(inverse, stable=True)
        runs = []
        for row in masks[:, order].to(torch.int8).cpu():
            edges = torch.diff(row, prepend=row.new_zeros(1), append=row.new_zeros(1))
            starts, stops = (edges == 1).nonzero()[:, 0], (edges == -1).nonzero()[:, 0]
            runs.append(tuple(zip(starts.tolist(), stops.tolist(), strict=True)))
        return AllowedRuns(order, tuple(runs), masks, classes.shape[0])


def grouped_normaliser(
    compiled,
    target: str,
    groups: Tensor,
    anchor_ok: Tensor,
    allowed: AllowedRuns,
    given: dict[str, Tensor],
) -> Tensor:
    """``log Σ_{x allowed in group groups[b]} φ(x, given_b)²`` per row ``b``, ``-inf`` where
    ``anchor_ok[b]`` is false; every variable but ``target`` observed in ``given``.

    Two plans, by multiply-adds: the *runs* (the value rows gathered once, in ``allowed.order``,
    each group's rows of coefficients meeting each of its runs of allowed values in one product,
    :class:`_RunSquareSums`), ``Σ_b |A_g(b)| W``; or the *Grams* (each present group's Gram
    ``G_g = Σ_{x ∈ A_g} T[x]ᵀ T[x]`` from the table's class Grams and a nested mix,
    ``Table.weighted_gram``, then ``c_bᵀ G_g c_b``), ``(n + B) W²`` plus the memory-bound cost of
    each class and group Gram (:data:`GRAM_ROWS`). The runs win on CoDEx-S at rank 200 (allowed
    sets of 340-997 of 2034 entities); the Grams on CoDEx-M at rank 50 (8,900 of 17,050)."""
    coef, table, m = _coefficients_and_table(compiled, target, given)
    present, of_row = torch.unique(groups, return_inverse=True)
    by_group = RowsByGroup.of(of_row, present.numel())
    width = coef.value.shape[1]
    sizes = [allowed.size(g) for g in present.tolist()]
    runs_cost = sum(n * size for n, size in zip(by_group.counts, sizes, strict=True))
    grams = allowed.num_classes + present.numel()
    if (table.num_values + len(groups) + GRAM_ROWS * grams) * width < runs_cost:
        mass, log_scale = _gram_masses(coef, table, allowed.masks[present], by_group, of_row)
        return _log_mass(mass, ~anchor_ok | (mass <= 0), log_scale, torch.ones_like(m))
    plan = tuple(
        (a, z, allowed.runs[g]) for (a, z), g in zip(by_group.spans, present.tolist(), strict=True)
    )
    rows = table.rows(allowed.order.to(coef.value.device)) / m
    mass = by_group.restore(_RunSquareSums.apply(coef.value[by_group.order], rows, plan))
    return _log_mass(mass, ~anchor_ok | (mass <= 0), coef.log_scale, m)


def _gram_masses(
    coef, table, masks: Tensor, by_group: RowsByGroup, of_row: Tensor
) -> tuple[Tensor, Tensor]:
    """``c_bᵀ G_g c_b`` with ``G_g`` the Gram of group ``g = of_row[b]``'s allowed rows (``masks``
    ``(P x n)``), as masses and half their log scales (so that ``_log_mass`` doubles them)."""
    grams = table.weighted_gram(table, masks.to(coef.value.dtype)).map(_same)
    # unbind, not an index per group: each index's backward zero-fills all P Grams' gradient
    parts = zip(by_group.split(coef.value[by_group.order]), grams.value.unbind(0), strict=True)
    mass = by_group.restore(torch.cat([((c @ gram) * c).sum(dim=1) for c, gram in parts]))
    return mass, coef.log_scale + 0.5 * grams.log_scale[of_row]


def _same(x: Tensor) -> Tensor:
    return x


class _RunSquareSums(torch.autograd.Function):
    """``mass[b] = Σ_{(a, z) in runs(b)} Σ_{a <= x < z} (C[b] · V[x])²`` for the blocks of rows
    ``(start, stop, runs)`` of ``plan``: one ``(B_g x W)(W x run)`` product per run, forward
    and backward (``∂/∂C = 2 (g ⊙ S) V``, ``∂/∂V = 2 (g ⊙ S)ᵀ C``) written into one gradient
    each, where autograd's backward of every slice of ``V`` would zero-fill a whole ``n x W``
    gradient. The scores ``S`` are kept for the backward (``B x |allowed|`` entries)."""

    @staticmethod
    def forward(ctx, coef: Tensor, values: Tensor, plan) -> Tensor:
        scores = []
        mass = coef.new_zeros(coef.shape[0])
        for start, stop, runs in plan:
            for a, z in runs:
                block = coef[start:stop] @ values[a:z].T
                mass[start:stop] += block.square().sum(dim=1)
                scores.append(block)
        ctx.plan, ctx.scores = plan, scores
        ctx.save_for_backward(coef, values)
        return mass

    @staticmethod
    def backward(ctx, grad: Tensor):
        coef, values = ctx.saved_tensors
        grad_coef, grad_values = torch.zeros_like(coef), torch.zeros_like(values)
        blocks = iter(ctx.scores)
        for start, stop, runs in ctx.plan:
            for a, z in runs:
                weighted = next(blocks) * (2 * grad[start:stop, None])
                grad_coef[start:stop].addmm_(weighted, values[a:z])
                grad_values[a:z].addmm_(weighted.T, coef[start:stop])
        return grad_coef, grad_values, None


def _coefficients_and_rows(compiled, target: str, given: dict[str, Tensor]):
    """The target's coefficients ``c_b`` (scaled, normalised), its one base table's rows divided
    by their largest entry ``m``, and ``m``: ``φ(x, given_b) = c_b · rows[x] · m · scale_b``."""
    coef, table, m = _coefficients_and_table(compiled, target, given)
    return coef, table.full() / m, m


def _coefficients_and_table(compiled, target: str, given: dict[str, Tensor]):
    """The target's coefficients ``c_b`` (scaled, normalised), its one base table ``T`` and
    ``m = max |T|``: ``φ(x, given_b) = c_b · T[x] · scale_b``.

    Raises ``ValueError`` when the target's input layers read more than one base table (the
    caller's general plan runs then)."""
    bases = compiled.expansions.bases(target)
    if len(bases) != 1:
        raise ValueError("the normalisers from allowed rows need one base table per variable")
    coef = compiled.expansions.linear(target, **given).blocks[0].normalised()
    return coef, bases[0], bases[0].abs_max()


def _log_mass(mass: Tensor, empty: Tensor, log_scale: Tensor, m: Tensor) -> Tensor:
    """``log`` of the scaled squared masses, ``-inf`` where ``empty``."""
    mass = torch.where(empty, 1.0, mass)  # no 1/0 in the backward of the rows cut below
    log_mass = torch.log(mass) + 2 * log_scale + 2 * torch.log(m)
    return torch.where(empty, -torch.inf, log_mass)
