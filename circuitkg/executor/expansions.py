"""Expansions of a circuit in one variable's base rows: the public plan the samplers read.

A smooth decomposable circuit is multilinear in the input rows of any one variable ``X``. With each
view folded into its base table (:meth:`~circuitkg.params.Table.fold`; ComplEx's four views of
``[Re | Im]`` become one ``2K``-wide table) and the distinct bases ``B_1..B_J`` of ``X``'s input
layers side by side, ``r(x) = [B_1[x], ..., B_J[x]]`` (width ``W = Σ_j W_j``):

* :meth:`Expansions.linear`, every other variable observed: ``φ(x, e_b) = c_b · r(x)`` for each row
  ``b`` of evidence. One forward and one adjoint pass, ``O(B K)`` for CP.
* :meth:`Expansions.quadratic` (squared circuits), some other variable summed out:
  ``Σ_rest φ(x, rest, e_b)² = r(x) Q_b r(x)ᵀ``, from one pair-mode pass and its backward
  (:meth:`~circuitkg.executor.pairs.PairEvaluator.target_adjoint`), ``O(B K²)`` for CP.
* :meth:`Expansions.log_integrals` (monotone circuits): ``log Σ_unobserved L(x)`` for every layer
  ``L``, one forward pass in log space (what top-down sampling walks down).

Coefficients are returned per base with a log-scale per row (:class:`Expansion`), so they stay
finite at any parameter scale; :meth:`Expansion.coefficients` puts them in the units of bases
divided by given scales ``m_j`` (how a sampler's Gram tree stores them) and drops the row scale.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import torch
from torch import Tensor

from circuitkg.errors import EvidenceError, FormError
from circuitkg.executor.blocks import segments
from circuitkg.executor.folds import folded_coefficients
from circuitkg.executor.grams import GramCache
from circuitkg.executor.pairs import PairEvaluator
from circuitkg.executor.passes import Evidence, Plan, adjoint, forward, is_integrated
from circuitkg.executor.semirings import LinearSemiring, LogSemiring, PlainSemiring
from circuitkg.ir.layers import InputLayer, ProductLayer, SumLayer
from circuitkg.numerics import Scaled, abs_max, is_unscaled, log_in_range, robustly, scaled_sum
from circuitkg.params.tables import Table


@dataclass(frozen=True)
class Expansion:
    """``φ`` (linear) or ``Σ_rest φ²`` (quadratic) of each evidence row in the target's base rows.

    ``blocks[j]`` (linear, ``(B, W_j)``) or ``blocks[j][k]`` (quadratic, ``(B, W_j, W_k)``) are
    :class:`Scaled` coefficients on ``bases[j]`` (and ``bases[k]``).
    """

    bases: tuple[Table, ...]
    blocks: tuple

    @property
    def order(self) -> int:
        return 1 if isinstance(self.blocks[0], Scaled) else 2

    def coefficients(self, log_units: list[Tensor]) -> Tensor:
        """The coefficients on ``r(x) / m`` (``log_units[j] = log m_j``), each row divided by a
        positive constant of its own: ``(B, W)`` (linear) or ``(B, W, W)`` (quadratic)."""
        if self.order == 1:
            parts = [
                Scaled(c.value, c.log_scale + u)
                for c, u in zip(self.blocks, log_units, strict=True)
            ]
            return _aligned(parts, lambda vs: torch.cat(vs, dim=1))
        parts = [
            Scaled(q.value, q.log_scale + log_units[j] + log_units[k])
            for j, row in enumerate(self.blocks)
            for k, q in enumerate(row)
        ]
        size = len(self.bases)

        def assemble(values: list[Tensor]) -> Tensor:
            rows = [torch.cat(values[j * size : (j + 1) * size], dim=2) for j in range(size)]
            q = torch.cat(rows, dim=1)
            return (q + q.transpose(1, 2)) / 2  # symmetric up to rounding: make it exact

        return _aligned(parts, assemble)


def _cp_inputs(circuit) -> dict[str, InputLayer] | None:
    """``{variable: input layer}`` of a CP-shaped circuit (a one-unit sum over one Hadamard product
    of one input layer per variable: CP, DistMult, ComplEx), else ``None``."""
    out = circuit.output
    if not (isinstance(out, SumLayer) and out.width == 1 and len(out.children) == 1):
        return None
    product = out.children[0]
    if not (isinstance(product, ProductLayer) and product.kind == "hadamard"):
        return None
    layers = product.children
    if not all(isinstance(c, InputLayer) and c.variable is not None for c in layers):
        return None
    found = {c.variable: c for c in layers}
    return found if len(found) == len(layers) == len(circuit.variables) else None


def _rows_in_range(expansion: Expansion) -> bool:
    """Every coefficient row of a linear expansion finite with its largest entry in range
    (:func:`~circuitkg.numerics.log_in_range`; an all-zero row is redone with scaling too)."""
    top = torch.stack([abs_max(b.value.detach(), dim=1) for b in expansion.blocks]).amax(0)
    return log_in_range(torch.log(top))


def _aligned(parts: list[Scaled], combine: Callable[[list[Tensor]], Tensor]) -> Tensor:
    """``combine`` of the parts' values brought to the largest scale of each row, each row then
    divided by its largest entry."""
    parts = [p.normalised() for p in parts]
    scales = torch.stack([p.log_scale for p in parts])
    top = scales.amax(dim=0)
    top = torch.where(torch.isfinite(top), top, torch.zeros_like(top))
    values = []
    for p in parts:
        factor = torch.exp(p.log_scale - top).reshape((-1,) + (1,) * (p.value.ndim - 1))
        values.append(p.value * factor)
    out = combine(values)
    top = abs_max(out.reshape(out.shape[0], -1), dim=1).clamp_min(torch.finfo(out.dtype).tiny)
    return out / top.reshape((-1,) + (1,) * (out.ndim - 1))


class Expansions:
    """The expansions of one compiled circuit (see the module docstring); built by
    :attr:`CompiledCircuit.expansions <circuitkg.executor.CompiledCircuit.expansions>`.

    ``evidence(given, target)`` validates keyword evidence into ``(Evidence, batch)``.
    """

    def __init__(
        self,
        plan: Plan,
        form: str,
        grams: GramCache,
        evidence: Callable[..., tuple[Evidence, int]],
        dtype: torch.dtype,
        device: torch.device,
    ) -> None:
        self._plan, self._form, self._grams = plan, form, grams
        self._evidence, self._dtype, self._device = evidence, dtype, device

    def bases(self, variable: str) -> tuple[Table, ...]:
        """The distinct base tables of ``variable``'s input layers, in layer order."""
        out: dict[int, Table] = {}
        for layer in self._plan.circuit.input_layers():
            if layer.variable == variable:
                base = layer.table.as_view()[0]
                out.setdefault(id(base), base)
        return tuple(out.values())

    def linear(self, target: str, **given: Tensor | int) -> Expansion:
        """``c_b`` with ``φ(x, e_b) = c_b · r(x)``; every variable but ``target`` observed (ids)."""
        evidence, batch = self._evidence(given, target=target)
        if any(is_integrated(v) for k, v in evidence.items() if k != target):
            raise EvidenceError("a linear expansion needs every variable but the target observed")
        if self._form == "monotone":
            raise FormError("linear expansions are of score and squared circuits (linear space)")

        def expand() -> Expansion:
            folded = folded_coefficients(self._plan.circuit, target, evidence)
            if folded is not None:  # the circuit's closed form (:mod:`~circuitkg.executor.folds`)
                return Expansion(tuple(b for b, _ in folded), tuple(c for _, c in folded))
            # robustly's unscaled attempt runs on plain tensors, the rerun with per-row scales
            semiring = PlainSemiring() if is_unscaled() else LinearSemiring()
            values = forward(self._plan, semiring, evidence, skip=target)
            coefs = adjoint(self._plan, semiring, values, target, batch, self._dtype, self._device)
            by_base: dict[int, list[Scaled]] = {id(b): [] for b in self.bases(target)}
            for layer, q in coefs:
                q = q if isinstance(q, Scaled) else Scaled.of(q)
                base = layer.table.as_view()[0]
                by_base[id(base)].append(Scaled(layer.table.fold(q.value, dim=1), q.log_scale))
            return Expansion(self.bases(target), tuple(scaled_sum(p) for p in by_base.values()))

        return robustly(expand, _rows_in_range)

    def quadratic(
        self, target: str, base_grams: dict[str, Scaled] | None = None, **given: Tensor | int
    ) -> Expansion:
        """``Q_b`` with ``Σ_rest φ(x, rest, e_b)² = r(x) Q_b r(x)ᵀ`` (squared circuits): variables
        not given are summed out.

        ``base_grams`` may hold, per summed variable of a CP-shaped circuit, the Gram of its one
        base table, computed already by the caller (a sampler's Gram tree root): it is used
        instead of the executor's, which saves one ``O(n W²)`` pass over the table."""
        if self._form != "squared":
            raise FormError("quadratic expansions are of squared circuits")
        evidence, batch = self._evidence(given, target=target)
        inputs = _cp_inputs(self._plan.circuit)
        if inputs is not None:
            return self._cp_quadratic(inputs, target, evidence, batch, base_grams or {})
        evaluator = PairEvaluator(
            self._plan, evidence, self._grams.query(), target=target, batch=batch
        )
        _, pairs = evaluator.target_adjoint()
        bases = self.bases(target)
        position = {id(b): j for j, b in enumerate(bases)}
        blocks: list[list[list[Scaled]]] = [[[] for _ in bases] for _ in bases]
        for a, b, q, log_factor in pairs:
            folded = b.table.fold(a.table.fold(q, dim=1), dim=2)
            j, k = position[id(a.table.as_view()[0])], position[id(b.table.as_view()[0])]
            blocks[j][k].append(Scaled(folded, log_factor).normalised())
        shape = [b.width for b in bases]
        rows = []
        for j, row in enumerate(blocks):
            cells = []
            for k, parts in enumerate(row):
                if not parts:  # no pair of these two bases meets over the target
                    zero = torch.zeros(batch, shape[j], shape[k], dtype=self._dtype)
                    parts = [Scaled.of(zero.to(self._device))]
                cells.append(scaled_sum(parts))
            rows.append(tuple(cells))
        return Expansion(bases, tuple(rows))

    def _cp_quadratic(
        self,
        inputs: dict[str, InputLayer],
        target: str,
        evidence: Evidence,
        batch: int,
        base_grams: dict[str, Scaled],
    ) -> Expansion:
        """CP-shaped circuits, ``φ = Σ_k w_k Π_v T_v[x_v, k]``: ``Q[k, l] = a_k a_l Π_v G_v[k, l]``
        with ``a = w ⊙ Π_{v observed} T_v[x_v]`` and ``G_v`` the (weighted) Gram of each summed
        variable's base, folded to the target's base as it is built: the unit axis is cut where
        any view's contiguous run ends (:func:`~circuitkg.executor.blocks.segments`; ComplEx: 4
        segments of ``K``), and each pair of segments adds one ``(B, K, K)`` block, a product of
        base-Gram slices, into ``Q``. ``O(B K²)`` elementwise, no pair pass, no ``(B, 4K, 4K)``
        tensor."""
        weight = self._plan.circuit.output.weight.matrix()
        rows, grams, runs = [Scaled.of(weight.expand(batch, -1))], [], []
        query = self._grams.query()
        for variable, layer in inputs.items():
            value = evidence[variable]
            base, _, view_runs = layer.table.as_view()
            if variable == target:
                continue
            if value is None and variable in base_grams:
                grams.append(base_grams[variable])
            elif is_integrated(value):
                grams.append(query.gram(base, base, weights=value))
            else:
                rows.append(Scaled.of(layer.table.rows(value)))
                continue
            runs.append(view_runs)
        a = rows[0]
        for r in rows[1:]:
            a = Scaled(a.value * r.value, a.log_scale + r.log_scale).normalised()
        target_base, _, target_runs = inputs[target].table.as_view()
        width = target_base.width
        q = a.value.new_zeros(batch, width, width)
        cuts = segments([target_runs, *runs])
        # every factor has entries of at most 1 (normalised): one normalisation at the end
        for r0, r1, rs in cuts:
            for c0, c1, cs in cuts:
                block = a.value[:, r0:r1, None] * a.value[:, None, c0:c1]
                for g, i, j in zip(grams, rs[1:], cs[1:], strict=True):
                    block = block * g.value[:, i : i + r1 - r0, j : j + c1 - c0]
                q[:, rs[0] : rs[0] + r1 - r0, cs[0] : cs[0] + c1 - c0] += block
        log_scale = 2 * a.log_scale
        for g in grams:
            log_scale = log_scale + g.log_scale
        folded = Scaled(q, log_scale.expand(batch))
        return Expansion(self.bases(target), ((folded.normalised(),),))

    def log_integrals(self, **given: Tensor | int) -> dict[int, Tensor]:
        """Monotone circuits: ``log Σ_unobserved L(x)`` of every layer ``L`` by ``id(L)``,
        ``(B or 1, K_L)``; a lazy Kronecker layer's factors are multiplied out (row-major)."""
        if self._form != "monotone":
            raise FormError("log integrals are of monotone circuits (log space)")
        evidence, _ = self._evidence(given)
        semiring = LogSemiring()
        values = forward(self._plan, semiring, evidence)
        for layer in self._plan.circuit.layers:
            if self._plan.is_lazy(layer):
                values[id(layer)] = semiring.outer(values[id(layer)])
        return values
