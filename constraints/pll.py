"""The constrained pseudo-log-likelihood's normalisers (squared form), from the allowed values' rows.

For a PLL term ``log p_c(t | rest)``, every variable but the target ``t`` observed, the normaliser
is the unconstrained model summed over the target values the schema allows. With ``c_b`` the
coefficients of ``φ`` in the target's base row (``compiled.expansions.linear``, one forward and
one adjoint pass, ``O(B K)``) and ``T`` the target's base table:

* entity targets (:func:`grouped_normaliser`): the rows of one signature group ``g`` share their
  allowed set ``A_g``, so ``Σ_{x ∈ A_g} (c_b · T[x])²`` is a ``(B_g x K)(K x |A_g|)`` product per
  group: ``O(B K |A|)`` in all for an average allowed set ``|A|``, against ``O(n K² + B K²)`` for
  the unconstrained Gram plan. The table is gathered once per term, in an order where every
  allowed set is a few contiguous runs (:class:`AllowedRuns`), the batch's rows are sorted by
  group in the order of the groups' allowed sets, and each segment of values meets the few
  contiguous blocks of rows that allow it in one product each (:func:`allowed_blocks`: taller
  products than one per group and run; CoDEx-M rank 200, one run each: 3.9x the unconstrained
  step against 5.0x). A gather of each group's allowed rows wrote ``Σ_g |A_g| x K`` entries per term
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
    sets; CoDEx-M: 288 and 388 for 49). ``order[i]`` is the value at position ``i``. The values of
    one membership column (a class of the Gram plan) are one contiguous *segment*:
    ``segments[j] = (start, stop)``, and ``member[g, j]`` says whether group ``g`` allows segment
    ``j``. ``group_rank[g]`` is group ``g``'s place when the groups are sorted by their membership
    rows (descending, lexicographic over the segments), which puts equal allowed sets side by side
    and nested ones close: rows in that group order meet a segment in few contiguous blocks."""

    order: Tensor
    segments: tuple[tuple[int, int], ...]
    member: Tensor
    group_rank: Tensor
    masks: Tensor

    @property
    def num_classes(self) -> int:
        """Distinct membership columns (the classes of the Gram plan)."""
        return len(self.segments)

    def sizes(self, groups: Tensor) -> list[int]:
        """How many values each of ``groups`` allows."""
        return self.masks[groups].sum(dim=1).tolist()

    @staticmethod
    def of(masks: Tensor) -> AllowedRuns:
        """From the ``(G x n)`` 0/1 allowed masks of the groups."""
        masks = masks.bool()
        by_size = torch.argsort(masks.sum(dim=1), descending=True, stable=True)
        key = (~masks[by_size]).T.to(torch.uint8)  # ascending order of ~membership = descending
        classes, inverse = torch.unique(key, dim=0, return_inverse=True)
        by_class = RowsByGroup.of(inverse, classes.shape[0])
        order, segments = by_class.order, tuple(by_class.spans)
        member = masks[:, order[torch.tensor([a for a, _ in segments], device=order.device)]]
        rows = member.to(torch.int8).tolist()
        by_membership = sorted(range(len(rows)), key=lambda g: rows[g], reverse=True)
        group_rank = torch.empty(len(rows), dtype=torch.long)
        group_rank[torch.tensor(by_membership, dtype=torch.long)] = torch.arange(len(rows))
        return AllowedRuns(order, segments, member, group_rank.to(masks.device), masks)


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

    Two plans, by multiply-adds: the *runs* (the value rows gathered once, in ``allowed.order``;
    the rows sorted by group in membership order, so that the rows allowed one segment of values
    are a few contiguous blocks, each block meeting its values in one product,
    :class:`_RunSquareSums`), ``Σ_b |A_g(b)| W``; or the *Grams* (each present group's Gram
    ``G_g = Σ_{x ∈ A_g} T[x]ᵀ T[x]`` from the table's class Grams and a nested mix,
    ``Table.weighted_gram``, then ``c_bᵀ G_g c_b``), ``(n + B) W²`` plus the memory-bound cost of
    each class and group Gram (:data:`GRAM_ROWS`). The runs win on CoDEx-S at rank 200 (allowed
    sets of 340-997 of 2034 entities); the Grams on CoDEx-M at rank 50 (8,900 of 17,050)."""
    coef, table, m = _coefficients_and_table(compiled, target, given)
    present, of_row = torch.unique(groups, return_inverse=True)
    # the present groups in membership order (AllowedRuns.group_rank), rows relabelled to match
    by_rank = torch.argsort(allowed.group_rank[present])
    present = present[by_rank]
    of_row = torch.argsort(by_rank)[of_row]
    by_group = RowsByGroup.of(of_row, present.numel())
    width = coef.value.shape[1]
    sizes = allowed.sizes(present)
    runs_cost = sum(n * size for n, size in zip(by_group.counts, sizes, strict=True))
    grams = allowed.num_classes + present.numel()
    if (table.num_values + len(groups) + GRAM_ROWS * grams) * width < runs_cost:
        mass, log_scale = _gram_masses(coef, table, allowed.masks[present], by_group, of_row)
        return _log_mass(mass, ~anchor_ok | (mass <= 0), log_scale, torch.ones_like(m))
    blocks = allowed_blocks(allowed, present, by_group)
    rows = table.rows(allowed.order.to(coef.value.device)) / m
    mass = by_group.restore(_RunSquareSums.apply(coef.value[by_group.order], rows, blocks))
    return _log_mass(mass, ~anchor_ok | (mass <= 0), coef.log_scale, m)


def allowed_blocks(
    allowed: AllowedRuns, present: Tensor, by_group: RowsByGroup
) -> tuple[tuple[int, int, int, int], ...]:
    """The ``(row start, row stop, value start, value stop)`` rectangles that cover, exactly once,
    every (row, allowed value) pair of rows sorted by the groups ``present``: per segment, each
    maximal run of consecutive groups that allow it is one block of rows; then blocks of the same
    rows over adjacent segments are joined. ``O(P S)`` for ``P`` groups and ``S`` segments."""
    need = allowed.member[present].T.to(torch.int8).cpu()  # (S x P)
    edges = torch.diff(torch.nn.functional.pad(need, (1, 1)), dim=1)
    starts, stops = (edges == 1).nonzero(), (edges == -1).nonzero()
    spans = by_group.spans
    pieces = sorted(
        (spans[g0][0], spans[g1 - 1][1], j)
        for (j, g0), g1 in zip(starts.tolist(), stops[:, 1].tolist(), strict=True)
    )
    blocks: list[list[int]] = []
    for a0, z0, j in pieces:
        a, z = allowed.segments[j]
        last = blocks[-1] if blocks else None
        if last is not None and last[:2] == [a0, z0] and last[3] == a:
            last[3] = z
        else:
            blocks.append([a0, z0, a, z])
    return tuple((a0, z0, a, z) for a0, z0, a, z in blocks)


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
    """``mass[b] = Σ_{blocks (a0, z0, a, z) with a0 <= b < z0} Σ_{a <= x < z} (C[b] · V[x])²``:
    one ``(rows x W)(W x values)`` product per block, forward and backward (``∂/∂C = 2 (g ⊙ S)
    V``, ``∂/∂V = 2 (g ⊙ S)ᵀ C``) written into one gradient each, where autograd's backward of
    every slice of ``V`` would zero-fill a whole ``n x W`` gradient. The scores ``S`` are kept for
    the backward (``B x |allowed|`` entries)."""

    @staticmethod
    def forward(ctx, coef: Tensor, values: Tensor, blocks) -> Tensor:
        scores = []
        mass = coef.new_zeros(coef.shape[0])
        for a0, z0, a, z in blocks:
            block = coef[a0:z0] @ values[a:z].T
            mass[a0:z0] += block.square().sum(dim=1)
            scores.append(block)
        ctx.blocks, ctx.scores = blocks, scores
        ctx.save_for_backward(coef, values)
        return mass

    @staticmethod
    def backward(ctx, grad: Tensor):
        coef, values = ctx.saved_tensors
        grad_coef, grad_values = torch.zeros_like(coef), torch.zeros_like(values)
        for (a0, z0, a, z), block in zip(ctx.blocks, ctx.scores, strict=True):
            weighted = block * (2 * grad[a0:z0, None])
            grad_coef[a0:z0].addmm_(weighted, values[a:z])
            grad_values[a:z].addmm_(weighted.T, coef[a0:z0])
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
