"""Exact sampling from squared circuits: the chain rule in the cheapest order, values from Gram trees.

``p(x) = φ(x)² / Z``. The unobserved variables are drawn one at a time, each from its exact
conditional given the evidence and the values drawn so far (its *prefix*), the later ones summed
out. Samples that share a prefix share its expansion (:mod:`circuitkg.executor.expansions`), read
through ``compiled.expansions``; ``r(x)`` is the variable's row of base tables, divided by their
largest entries:

* **last variable** (the rest observed): ``φ(x) = c · r(x)`` with one coefficient row ``c`` per
  prefix (a forward and an adjoint pass), and ``x ~ (c · r(x))²`` from the variable's
  :class:`~circuitkg.sampling.tree.GramTree`: ``O(W² log n)`` per draw instead of ``O(n W)``.
* **a variable with later ones summed out**: ``Σ_rest φ² = r(x) Q r(x)ᵀ`` with one ``W x W``
  matrix ``Q`` per prefix (pair mode). Small domains (``n ≤ 4W/3``) enumerate ``r(x) Q r(x)ᵀ``,
  ``O(n W²)`` per prefix. Large ones factor ``Q = U Uᵀ`` (Cholesky; an eigendecomposition if
  ``Q`` is singular): ``r(x) Q r(x)ᵀ = Σ_j (r(x) · U_j)²``, so a *virtual* index ``j`` is drawn
  from ``p(j) ∝ U_jᵀ G U_j`` (``G = Σ_x r(x)ᵀ r(x)``, the tree's root) and then ``x ~ (r(x) · U_j)²``
  from the Gram tree: exact, ``O(W³)`` per prefix plus ``O(W² log n)`` per draw.

**Order.** :func:`choose_order` picks the order of the unobserved variables by this cost, with
the number of distinct prefixes bounded by ``min(N, Π earlier domain sizes)``. For a KG circuit
sampled unconditionally this is ``r`` (``p(r)`` once, ``O(m K²)``), ``s | r`` (one ``Q`` per
relation) and ``o | s, r`` (one ``c`` per pair): ComplEx² at FB15k-237 size and ``K = 200``
draws thousands of triples per second on one thread (``docs/sampling.md``).
"""

from __future__ import annotations

import itertools
import math
from dataclasses import dataclass

import torch
from torch import Tensor

from circuitkg.errors import EvidenceError
from circuitkg.numerics import Scaled
from circuitkg.sampling.categorical import MAX_ENTRIES, draw
from circuitkg.sampling.tree import GramTree, cached


@dataclass(frozen=True)
class _Domain:
    """One variable's rows ``r(x)`` (bases over their largest entries) and its Gram tree."""

    bases: tuple
    log_units: list[Tensor]
    tree: GramTree
    leaf_size: int | None

    def rows(self, index: Tensor) -> Tensor:
        return _rows(self.bases, self.log_units, index)


def _rows(bases, log_units: list[Tensor], index: Tensor) -> Tensor:
    parts = [b.rows(index) / torch.exp(u) for b, u in zip(bases, log_units, strict=True)]
    return parts[0] if len(parts) == 1 else torch.cat(parts, dim=1)


def _domain(compiled, variable: str, leaf_size: int | None) -> _Domain:
    bases = compiled.expansions.bases(variable)
    width = sum(b.width for b in bases)
    leaf = leaf_size if leaf_size is not None else max(64, 2 * width)
    key = ("gram-tree", leaf, tuple((id(b), b.state_token()) for b in bases))

    def build() -> _Domain:
        log_units = [torch.log(b.abs_max()) for b in bases]
        tree = GramTree(
            lambda index: _rows(bases, log_units, index),
            compiled.domains[variable],
            leaf,
            compiled.device,
        )
        return _Domain(bases, log_units, tree, leaf_size)

    return cached(key, build)


def choose_order(compiled, num_samples: int, given: dict[str, Tensor]) -> list[str]:
    """The unobserved variables in the order of least estimated work (module docstring)."""
    free = [v for v in compiled.variables if v not in given]
    if len(free) > 4:  # 5! orders and more: keep the circuit's order
        return free
    sizes = compiled.domains
    widths = {v: sum(b.width for b in compiled.expansions.bases(v)) for v in free}
    pair = max(layer.width for layer in compiled.circuit.layers) ** 2
    start = 1 if all(g.numel() == 1 for g in given.values()) else num_samples

    def cost(order: tuple[str, ...]) -> float:
        total, prefixes = 0.0, start
        for t, v in enumerate(order):
            n, w = sizes[v], widths[v]
            tree = 2 * w * w * math.log2(max(2.0, n / (2 * w))) + 2 * w * w
            if t == len(order) - 1:
                total += prefixes * w + num_samples * tree
            elif n <= 4 * w / 3:
                total += prefixes * (pair + n * w * w)
            else:
                total += prefixes * (pair + 4 * w**3 / 3) + num_samples * tree
            prefixes = min(num_samples, prefixes * n)
        return total

    return list(min(itertools.permutations(free), key=cost))


def sample_squared(
    compiled,
    num_samples: int,
    given: dict[str, Tensor],
    generator: torch.Generator | None = None,
    max_entries: int = MAX_ENTRIES,
    leaf_size: int | None = None,
) -> Tensor:
    """``(num_samples, V)`` ids from ``p(x_unobserved | given)`` of a squared ``compiled``.

    ``leaf_size`` overrides the Gram trees' leaf size (default ``max(64, 2W)``).
    """
    variables = compiled.variables
    out = torch.empty(num_samples, len(variables), dtype=torch.long, device=compiled.device)
    prefix = out.new_zeros(num_samples)
    known: list[str] = []
    order = choose_order(compiled, num_samples, given)
    for t, v in enumerate([v for v in variables if v in given] + order):
        column = variables.index(v)
        if v in given:
            out[:, column] = given[v].expand(num_samples)
        elif num_samples:
            last = t == len(variables) - 1
            domain = _domain(compiled, v, leaf_size)
            draws = _Draws(compiled, domain, v, out, prefix, known, generator, max_entries)
            out[:, column] = draws.last() if last else draws.middle()
        known.append(v)
        _, prefix = torch.unique(prefix * compiled.domains[v] + out[:, column], return_inverse=True)
    return out


class _Draws:
    """The draws of one variable for every sample, one expansion per distinct prefix."""

    def __init__(self, compiled, domain, target, out, prefix, known, generator, max_entries):
        self.compiled, self.domain, self.target = compiled, domain, target
        self.prefix, self.generator, self.max_entries = prefix, generator, max_entries
        n = out.shape[0]
        num_prefixes = int(prefix.max()) + 1
        first = prefix.new_empty(num_prefixes).scatter_(
            0, prefix, torch.arange(n, device=out.device)
        )
        self.values = out[first][:, [compiled.variables.index(v) for v in known]]
        self.known = known
        width = domain.tree.root.shape[0]
        widest = max(layer.width for layer in compiled.circuit.layers)
        #: prefixes per expansion call: a pair pass holds ``(chunk, K, K)`` tensors, an adjoint
        #: pass ``(chunk, K)`` ones
        self.chunks = {
            1: max(1, max_entries // (4 * max(width, widest))),
            2: max(1, max_entries // max(width * width, widest * widest)),
        }

    def _expansions(self, order: int):
        """``(first prefix, coefficient rows (p, W) or matrices (p, W, W))`` per chunk of
        distinct prefixes: a chunk's matrices are used and dropped before the next is made."""
        plan = self.compiled.expansions
        extra = {} if order == 1 else {"base_grams": self._tree_grams()}
        expand = plan.linear if order == 1 else plan.quadratic
        chunk = self.chunks[order]
        for start in range(0, self.values.shape[0], chunk):
            block = self.values[start : start + chunk]
            given = {v: block[:, j] for j, v in enumerate(self.known)}
            expansion = expand(self.target, **extra, **given)
            yield start, expansion.coefficients(self.domain.log_units)

    def _tree_grams(self) -> dict[str, Scaled]:
        """The Gram of each summed variable's one base, from its tree (built for its own draw
        later anyway): the executor need not compute it a second time."""
        out = {}
        for v in self.compiled.variables:
            if v == self.target or v in self.known:
                continue
            domain = _domain(self.compiled, v, self.domain.leaf_size)
            if len(domain.bases) == 1:
                root = domain.tree.root.unsqueeze(0)
                out[v] = Scaled(root, (2 * domain.log_units[0]).reshape(1))
        return out

    def last(self) -> Tensor:
        coef = torch.cat([c for _, c in self._expansions(1)])
        root = self.domain.tree.root
        if bool((((coef @ root) * coef).sum(dim=1) <= 0).any()):
            raise EvidenceError(
                "cannot sample: the given values have probability zero (or the weights are not "
                "finite)"
            )
        return self.domain.tree.draw(coef[self.prefix], self.generator)

    def middle(self) -> Tensor:
        size = self.compiled.domains[self.target]
        width = self.domain.tree.root.shape[0]
        if size <= 4 * width / 3:
            rows = self.domain.rows(torch.arange(size, device=self.prefix.device)).T  # (W, n)
            step = max(1, self.max_entries // (size * width))
            mass = torch.cat(
                [
                    ((c @ rows) * rows).sum(dim=1)
                    for _, q in self._expansions(2)
                    for c in q.split(step)
                ]
            )
            return draw(torch.log(mass.clamp_min(0)), self.prefix, self.generator)
        # one virtual index per sample, chunk by chunk of prefixes, then one tree descent
        order = torch.argsort(self.prefix, stable=True)
        sorted_prefix = self.prefix[order]
        coef = torch.empty(self.prefix.numel(), width, device=self.prefix.device)
        root = self.domain.tree.root
        coef = coef.to(root.dtype)
        for start, q in self._expansions(2):
            lo, hi = torch.searchsorted(
                sorted_prefix, torch.tensor([start, start + q.shape[0]], device=order.device)
            ).tolist()
            chosen, local = order[lo:hi], sorted_prefix[lo:hi] - start
            u = _factor(q)
            mass = ((root @ u) * u).sum(dim=1).clamp_min(0)  # (p, W): U_jᵀ G U_j
            virtual = draw(torch.log(mass), local, self.generator)
            coef[chosen] = u[local, :, virtual]
        return self.domain.tree.draw(coef, self.generator)


def _factor(q: Tensor) -> Tensor:
    """``U`` with ``U Uᵀ = Q`` for positive semi-definite ``Q`` ``(P, W, W)``: Cholesky, and for
    the singular ones an eigendecomposition with negative (rounding) eigenvalues set to 0."""
    u, info = torch.linalg.cholesky_ex(q)
    bad = info != 0
    if bool(bad.any()):
        values, vectors = torch.linalg.eigh(q[bad])
        u = u.clone()
        u[bad] = vectors * values.clamp_min(0).sqrt().unsqueeze(1)
    return u
