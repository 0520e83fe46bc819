"""Pair mode: ``Σ_{integrated} c(x) c'(x)`` without building the product circuit.

The product of two compatible circuits pairs their layers scope by scope (see
:func:`circuitkg.ir.multiply`). Instead of materialising it, pair mode evaluates each pair
``(a, b)`` of same-scope layers to a matrix ``P_ab`` of shape ``(N, K_a, K_b)``:

* input pair over an integrated variable: the Gram matrix ``Σ_x T_a[x]ᵀ T_b[x]`` (once per pair
  of tables, :meth:`Table.gram`, ``O(|X| K_a K_b)``); over an observed variable: ``T_a[x] T_b[x]ᵀ``;
* sum pair: ``Σ_ij W_a[:, i] P_{a_i b_j} W_b[:, j]ᵀ``;
* product pair: children matched by scope, then their matrices multiplied elementwise (Hadamard)
  or in the Kronecker arrangement of each side. Two lazy Kronecker layers (all parents sums) stay
  factored and their sum parents contract the factors one at a time, never forming
  ``(Π k_i)²`` entries (TuckER's squared ``Z`` costs ``O(K_e³ K_r + ...)``, not ``O(K_e⁴ K_r²)``).

For a squared KGE model with all variables integrated this is the plan of DESIGN.md:
``log Z = log 1ᵀ (G_S ⊙ G_R ⊙ G_O) 1`` for CP, ``O((n+m)K²)``, no ``K² x n`` tensor.
Everything runs in :class:`~circuitkg.numerics.Scaled` linear space.
"""

from __future__ import annotations

import string
from dataclasses import dataclass

import torch
from torch import Tensor

from circuitkg.errors import StructureError
from circuitkg.executor.blocks import BlockView, block_product
from circuitkg.executor.folds import pair_fold
from circuitkg.executor.grams import _QueryGrams
from circuitkg.executor.passes import Evidence, Plan, is_integrated
from circuitkg.ir.layers import InputLayer, Layer, ProductLayer, SumLayer
from circuitkg.numerics import MixedScaled, Scaled, scaled_product, scaled_sum, unit_max
from circuitkg.params.views import base_of

_A = string.ascii_lowercase.replace("o", "").replace("p", "")
_B = string.ascii_uppercase.replace("N", "")


@dataclass
class LazyPair:
    """The pair value of two lazy Kronecker layers: factor matrices in ``a``'s child order."""

    factors: list[Scaled]
    b_perm: list[int]  # b_perm[c]: position in b's children of the partner of a's c-th child
    a_widths: list[int]
    b_widths: list[int]  # in b's own order


class PairEvaluator:
    """Evaluates ``Σ_integrated c(x)²`` (``a``, ``b`` from the same circuit) for a batch of evidence."""

    def __init__(
        self,
        plan: Plan,
        evidence: Evidence,
        grams: _QueryGrams,
        target: str | None = None,
        batch: int = 1,
    ) -> None:
        self.plan = plan
        self.evidence = evidence
        self.memo: dict[tuple[int, int], Scaled | LazyPair | BlockView] = {}
        self.grams = grams
        #: the target's input pairs are leaves ``P`` (one per table pair) for :meth:`target_adjoint`
        self.target, self.batch = target, batch
        self.placeholders: dict[tuple[int, int], tuple[InputLayer, InputLayer, Scaled]] = {}

    def root(self) -> Scaled:
        circuit = self.plan.circuit
        fold = pair_fold(circuit.folds)
        if fold is not None and self.target is None:
            return fold(self._base_pairs(circuit.input_layers()))
        value = self.pair(circuit.output, circuit.output)
        return self.materialise(value)

    def _base_pairs(self, layers: list[InputLayer]) -> dict[str, Scaled | MixedScaled]:
        """Every layer's :meth:`_base_pair`, by variable. The weighted variables that read one base
        table (a schema's ``s`` and ``o`` masks over the entities) share one weighted Gram: their
        weights are stacked, so the values are grouped into classes and the class Grams computed
        once for all of them, and the result is split back by rows."""
        pairs: dict[str, Scaled | MixedScaled] = {}
        weighted: dict[int, list[InputLayer]] = {}
        for layer in layers:
            value = self.evidence[layer.variable]
            if value is not None and is_integrated(value):
                weighted.setdefault(id(base_of(layer.table)), []).append(layer)
            else:
                pairs[layer.variable] = self._base_pair(layer)
        for group in weighted.values():
            base = base_of(group[0].table)
            weights = [self.evidence[layer.variable] for layer in group]
            stacked = base.weighted_gram(base, torch.cat(weights))
            pieces = stacked.split([w.shape[0] for w in weights])
            pairs |= {layer.variable: p for layer, p in zip(group, pieces, strict=True)}
        return pairs

    def _base_pair(self, layer: InputLayer) -> Scaled | MixedScaled:
        """The pair of the base table an unweighted ``layer`` reads, for a fold
        (:mod:`~circuitkg.executor.folds`): its Gram if the variable is integrated, else the outer
        product of its rows. Weighted variables are :meth:`_base_pairs`'."""
        base = base_of(layer.table)
        value = self.evidence[layer.variable]
        if value is None:
            return self.grams.gram(base, base)
        rows = Scaled.of(base.rows(value))
        return scaled_product([rows, rows], "Ni,Nj->Nij")

    # --- recursion -------------------------------------------------------------------------------
    def pair(self, a: Layer, b: Layer) -> Scaled | LazyPair | BlockView:
        key = (id(a), id(b))
        if key not in self.memo:
            self.memo[key] = self._pair(a, b)
        return self.memo[key]

    def _pair(self, a: Layer, b: Layer) -> Scaled | LazyPair | BlockView:
        if isinstance(a, SumLayer) or isinstance(b, SumLayer):
            return self._sum_pair(a, b)
        if isinstance(a, InputLayer) and isinstance(b, InputLayer) and a.variable == b.variable:
            return self._input_pair(a, b)
        if isinstance(a, ProductLayer) and isinstance(b, ProductLayer) and a.scope == b.scope:
            return self._product_pair(a, b)
        raise StructureError(
            f"cannot pair {type(a).__name__} {a.name!r} with {type(b).__name__} {b.name!r}: "
            "squaring needs a structured-decomposable circuit"
        )

    def target_adjoint(
        self,
    ) -> tuple[Scaled, list[tuple[InputLayer, InputLayer, Tensor, Tensor]]]:
        """The root and ``Q_ab = ∂root/∂P_ab`` for the target's input pairs ``(a, b)``.

        The root is linear in each ``P_ab = T_a[x] T_b[x]ᵀ`` (decomposability: every term of the
        squared circuit holds exactly one pair over the target), so
        ``Σ_rest φ(x, rest)² = Σ_ab T_a[x] Q_ab T_b[x]ᵀ`` for every ``x`` at once. The leaves hold
        the Gram matrices (so scaling sees realistic magnitudes); any value gives the same ``Q``.
        Returned as ``(a, b, G, log_factor)`` with ``Q_ab = G · exp(log_factor)`` (``log_factor =
        root.log_scale - P.log_scale``, shape ``(B,)``): the factor alone overflows float32 at
        large parameter scales, so it is kept as a log for the caller to apply in scaled form.
        """
        create_graph = torch.is_grad_enabled()
        with torch.enable_grad():
            root = self.root()
            leaves = [p for _, _, p in self.placeholders.values()]
            grads = torch.autograd.grad(
                root.value.sum(), [p.value for p in leaves], create_graph=create_graph
            )
        out = []
        for (a, b, leaf), g in zip(self.placeholders.values(), grads, strict=True):
            out.append((a, b, g, (root.log_scale - leaf.log_scale).detach()))
        return root, out

    def _input_pair(self, a: InputLayer, b: InputLayer) -> Scaled | BlockView:
        if a.variable is not None and a.variable == self.target:
            key = (id(a.table), id(b.table))
            if key not in self.placeholders:
                gram = self.grams.gram(a.table, b.table).expand_rows(self.batch)
                leaf = Scaled(
                    gram.value.detach().clone().requires_grad_(True), gram.log_scale.detach()
                )
                self.placeholders[key] = (a, b, leaf)
            return self.placeholders[key][2]
        value = None if a.variable is None else self.evidence[a.variable]
        if a.variable is not None and is_integrated(value):
            blocks = self.grams.gram_blocks(a.table, b.table, weights=value)
            if blocks is not None:
                return blocks  # multiplied block by block in _product_pair
            return self.grams.gram(a.table, b.table, weights=value)
        index = (
            torch.zeros(1, dtype=torch.long, device=a.table.device)
            if a.variable is None
            else self.evidence[a.variable]
        )
        ra, rb = Scaled.of(a.table.rows(index)), Scaled.of(b.table.rows(index))
        return scaled_product([ra, rb], "Ni,Nj->Nij")

    def _sum_pair(self, a: Layer, b: Layer) -> Scaled:
        a_parts = (
            list(zip(a.children, a.blocks(), strict=True))
            if isinstance(a, SumLayer)
            else [(a, None)]
        )
        b_parts = (
            list(zip(b.children, b.blocks(), strict=True))
            if isinstance(b, SumLayer)
            else [(b, None)]
        )
        wa = a.weight.matrix() if isinstance(a, SumLayer) else None
        wb = b.weight.matrix() if isinstance(b, SumLayer) else None
        terms = []
        for ca, sa in a_parts:
            for cb, sb in b_parts:
                value = self.pair(ca, cb)
                if isinstance(value, LazyPair) and sa is not None and sb is not None:
                    terms.append(self._contract_lazy(wa[:, sa], wb[:, sb], value))
                    continue
                value = self.materialise(value)
                if sa is not None and id(a) in self.plan.unit_sums:
                    value = value.map(lambda v: v.sum(dim=-2, keepdim=True))
                elif sa is not None:
                    w, s = unit_max(wa[:, sa])
                    value = Scaled(torch.matmul(w, value.value), value.log_scale + s)
                if sb is not None and id(b) in self.plan.unit_sums:
                    value = value.map(lambda v: v.sum(dim=-1, keepdim=True))
                elif sb is not None:
                    w, s = unit_max(wb[:, sb])
                    value = Scaled(torch.matmul(value.value, w.T), value.log_scale + s)
                terms.append(value.normalised())
        return scaled_sum(terms)

    def _product_pair(self, a: ProductLayer, b: ProductLayer) -> Scaled | LazyPair:
        by_scope = {c.scope: i for i, c in enumerate(b.children)}
        if len(by_scope) != len(b.children) or {c.scope for c in a.children} != set(by_scope):
            raise StructureError(
                f"product layers {a.name!r} and {b.name!r} split scope {{{','.join(sorted(a.scope))}}} "
                "differently: the circuit is not structured-decomposable"
            )
        b_perm = [by_scope[c.scope] for c in a.children]
        pairs = [self.pair(ca, b.children[j]) for ca, j in zip(a.children, b_perm, strict=True)]
        if a.kind == b.kind == "hadamard" and all(isinstance(p, BlockView) for p in pairs):
            return block_product(pairs).normalised()
        factors = [self.materialise(p) for p in pairs]
        a_widths = [c.width for c in a.children]
        b_widths = [c.width for c in b.children]
        if a.kind == b.kind == "kronecker" and self.plan.is_lazy(a) and self.plan.is_lazy(b):
            return LazyPair(factors, b_perm, a_widths, b_widths)
        d = len(factors)
        a_letters = ["i"] * d if a.kind == "hadamard" else list(_A[:d])
        b_own = ["J"] * d if b.kind == "hadamard" else list(_B[:d])
        b_letters = [b_own[b_perm[c]] for c in range(d)]
        out_a = "".join(dict.fromkeys(a_letters))
        out_b = "".join(dict.fromkeys(b_own))
        eq = (
            ",".join(f"N{x}{y}" for x, y in zip(a_letters, b_letters, strict=True))
            + f"->N{out_a}{out_b}"
        )
        value = scaled_product(factors, eq)
        return value.map(lambda v: v.reshape(v.shape[0], a.width, b.width))

    # --- lazy Kronecker pairs ----------------------------------------------------------------------
    def _contract_lazy(self, wa: Tensor, wb: Tensor, lazy: LazyPair) -> Scaled:
        """``Σ wa[o, a_1..a_d] wb[p, b_1..b_d] Π_c P_c[a_c, b_c]``, factor by factor."""
        d = len(lazy.factors)
        wa, sa = unit_max(wa.reshape((wa.shape[0], *lazy.a_widths)))
        wb, sb = unit_max(wb.reshape((wb.shape[0], *lazy.b_widths)))
        wb = wb.permute(0, *[1 + lazy.b_perm[c] for c in range(d)])  # b axes in a's order
        a_l, b_l = list(_A[:d]), list(_B[:d])
        axes = ["o"] + a_l
        cur = Scaled(wa.unsqueeze(0), sa.reshape(1))
        for c in reversed(range(d)):
            new_axes = [b_l[c] if x == a_l[c] else x for x in axes]
            eq = f"N{''.join(axes)},N{a_l[c]}{b_l[c]}->N{''.join(new_axes)}"
            cur = scaled_product([cur, lazy.factors[c]], eq)
            axes = new_axes
        eq = f"N{''.join(axes)},p{''.join(b_l)}->Nop"
        return Scaled(torch.einsum(eq, cur.value, wb), cur.log_scale + sb).normalised()

    def materialise(self, value: Scaled | LazyPair | BlockView) -> Scaled:
        if isinstance(value, Scaled):
            return value
        if isinstance(value, BlockView):
            return value.dense()
        d = len(value.factors)
        a_l, b_l = _A[:d], _B[:d]
        b_in_a_order = "".join(b_l[value.b_perm.index(j)] for j in range(d))
        eq = ",".join(f"N{a_l[c]}{b_l[c]}" for c in range(d)) + f"->N{a_l}{b_in_a_order}"
        out = scaled_product(value.factors, eq)
        ka = 1
        for w in value.a_widths:
            ka *= w
        return out.map(lambda v: v.reshape(v.shape[0], ka, -1))
