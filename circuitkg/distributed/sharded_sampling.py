"""Exact samples of a squared circuit whose entity tables are sharded: a Gram tree split by rank.

The chain rule as in :mod:`circuitkg.sampling.chain`: the free variables are drawn in the order
``r, s, o`` (those not given), each from its exact conditional given the evidence and the values
drawn so far (the *prefix*), the later ones summed out, through the executor's expansions
(``compiled.expansions``). With ``r(x)`` a variable's row of base tables divided by their largest
entries (all-reduced, so the same units on every rank):

* the **last** free variable: ``φ(x) = c · r(x)``, one coefficient row ``c`` per prefix;
* an **earlier** one: ``Σ_rest φ² = r(x) Q r(x)ᵀ`` (``W x W``), factored ``Q = U Uᵀ`` (an
  eigendecomposition, identical on every rank); a virtual index ``j ~ U_jᵀ G U_j`` (``G`` the
  reduced Gram of ``r``) leaves ``x ~ (U_j · r(x))²``, the last case again.

So every entity draw is ``x ~ (c · r(x))²`` over all ``n`` values. The **sharded Gram tree** does it
in two levels: the root's children are the ranks, with block Grams ``G_i = Σ_{x on rank i} r(x)ᵀ
r(x)``; a draw picks rank ``i`` with probability ``c G_i cᵀ / Σ_i' c G_i' cᵀ`` (the ``N`` masses
all-gathered), and that rank draws ``x`` inside its rows from its local
:class:`~circuitkg.sampling.tree.GramTree` (``O(W² log n_i)`` per draw). The product of the two
choices is ``(c · r(x))² / Σ_x (c · r(x))²``: exact. Relations (replicated, ``m`` values) are drawn
by enumerating their ``m`` masses.

**Randomness.** Choices every rank makes (relations, virtual indices, the rank of each draw) use a
generator seeded with ``seed`` on every rank, so they agree; draws inside a rank's rows use one
seeded by ``(seed, rank)``. The drawn ids are summed over the ranks (each id filled by its owner),
so every rank returns the same samples.

**Cost per entity draw.** ``O(W²)`` for the ``N`` rank masses, all-gathered (``4 N`` bytes per
draw), ``O(W² log n_i)`` on the owner, and an all-reduce of the ids (``≈ 16`` bytes per draw);
building the local trees ``O(n_i W²)`` and reducing the roots ``≈ 8 W²`` bytes, once per parameter
state (kept like the single-process trees, :func:`~circuitkg.sampling.tree.cached`).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import torch
from torch import Tensor

from circuitkg.distributed.sharded_table import ShardedTable
from circuitkg.errors import FormError
from circuitkg.params import Table
from circuitkg.sampling.categorical import draw, normalise_given
from circuitkg.sampling.tree import GramTree, cached

if TYPE_CHECKING:
    from circuitkg.distributed.sharded import ShardedCircuit

#: the order in which free variables are drawn
ORDER = ("r", "s", "o")


class _ShardedDomain:
    """An entity variable's rows ``r(x)`` on this rank, its local Gram tree and the reduced root."""

    def __init__(self, bases: tuple[ShardedTable, ...], leaf_size: int) -> None:
        self.bases = bases
        self.units = [torch.log(b.abs_max()) for b in bases]
        first = bases[0]
        self.world, self.start = first.world, first.start
        size = first.stop - first.start
        self.tree = GramTree(self.local_rows, size, leaf_size, first.device)
        self.root = first.world.all_reduce(self.tree.root.clone())

    def local_rows(self, index: Tensor) -> Tensor:
        parts = [
            b.local_rows[index] / torch.exp(u) for b, u in zip(self.bases, self.units, strict=True)
        ]
        return torch.cat(parts, dim=1)

    def draw(self, coef: Tensor, shared: torch.Generator, local: torch.Generator) -> Tensor:
        """``x_i ~ (coef[i] · r(x))²`` over all ranks' values (module docstring), ``(N,)``."""
        mass = ((coef @ self.tree.root) * coef).sum(dim=1).clamp_min(0).to(torch.float64)
        masses = self.world.all_gather(mass).T  # (N, ranks)
        rank = draw(torch.log(masses), generator=shared)
        out = torch.zeros(coef.shape[0], dtype=torch.long, device=coef.device)
        mine = rank == self.world.rank
        if bool(mine.any()):
            out[mine] = self.start + self.tree.draw(coef[mine], local)
        return self.world.all_reduce(out)


def _domain(bases: tuple[ShardedTable, ...], leaf_size: int) -> _ShardedDomain:
    """The variable's :class:`_ShardedDomain`, kept while its tables are unchanged (every rank
    makes the same calls, so hits and the root's all-reduce agree)."""
    key = ("sharded-gram-tree", leaf_size, tuple((id(b), b.state_token()) for b in bases))
    return cached(key, lambda: _ShardedDomain(bases, leaf_size))


def _replicated_rows(bases: tuple[Table, ...], units: list[Tensor], size: int) -> Tensor:
    index = torch.arange(size, device=bases[0].device)
    return torch.cat([b.rows(index) / torch.exp(u) for b, u in zip(bases, units, strict=True)], 1)


def _factor(q: Tensor) -> Tensor:
    """``U`` with ``U Uᵀ = Q`` for positive semi-definite ``Q`` ``(P, W, W)`` (rounding's negative
    eigenvalues set to 0)."""
    values, vectors = torch.linalg.eigh(q)
    return vectors * values.clamp_min(0).sqrt().unsqueeze(1)


def sample_sharded(
    sharded: ShardedCircuit,
    num_samples: int,
    given: dict[str, int] | None = None,
    seed: int = 0,
    leaf_size: int | None = None,
) -> Tensor:
    """``num_samples`` exact samples ``(N, 3)`` (columns ``s, r, o``) of ``p(rest | given)`` from a
    :class:`~circuitkg.distributed.ShardedCircuit` (module docstring); same on every rank."""
    compiled = sharded.compiled
    if compiled.form != "squared":
        raise FormError("sharded sampling is of squared circuits")
    world = sharded.world
    device = compiled.device
    evidence = normalise_given(compiled.variables, compiled.domains, given, num_samples, device)
    known = {v: x.expand(num_samples) for v, x in evidence.items()}
    shared = torch.Generator().manual_seed(seed)
    local = torch.Generator().manual_seed(seed * 1_000_003 + world.rank + 1)
    plan = compiled.expansions
    free = [v for v in ORDER if v not in known]
    with torch.no_grad():
        for position, target in enumerate(free):
            bases = plan.bases(target)
            sharded_bases = all(isinstance(b, ShardedTable) for b in bases)
            width = sum(b.width for b in bases)
            domain = _domain(bases, leaf_size or max(64, 2 * width)) if sharded_bases else None
            units = domain.units if domain else [torch.log(b.abs_max()) for b in bases]
            names = [v for v in compiled.variables if v in known]
            if names:
                keys = torch.stack([known[v] for v in names], dim=1)
                prefixes, inverse = torch.unique(keys, dim=0, return_inverse=True)
            else:
                prefixes = torch.zeros(1, 0, dtype=torch.long, device=device)
                inverse = torch.zeros(num_samples, dtype=torch.long, device=device)
            prefix_given = {v: prefixes[:, j] for j, v in enumerate(names)}
            size = compiled.domains[target]
            if position == len(free) - 1:
                coef = plan.linear(target, **prefix_given).coefficients(units)[inverse]
            else:
                q = plan.quadratic(target, **prefix_given).coefficients(units)
                if domain is None:
                    rows = _replicated_rows(bases, units, size)
                    mass = torch.einsum("xi,pij,xj->px", rows, q, rows).clamp_min(0)
                    known[target] = draw(torch.log(mass), inverse, shared)
                    continue
                u = _factor(q)
                mass = ((domain.root @ u) * u).sum(dim=1).clamp_min(0)  # (P, W): U_jᵀ G U_j
                virtual = draw(torch.log(mass), inverse, shared)
                coef = u[inverse, :, virtual]
            if domain is not None:
                known[target] = domain.draw(coef, shared, local)
            else:
                rows = _replicated_rows(bases, units, size)
                known[target] = draw(torch.log((coef @ rows.T).square()), generator=shared)
    return torch.stack([known[v] for v in compiled.variables], dim=1)
