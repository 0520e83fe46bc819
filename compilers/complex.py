"""ComplEx (Trouillon et al. 2016) as a real circuit.

``φ(s, r, o) = Re <e_s, w_r, conj(e_o)> = Σ_k [s_re r_re o_re + s_re r_im o_im + s_im r_re o_im
- s_im r_im o_re]``. Entity and relation tables hold ``[Re | Im]`` (width ``2K``); each input layer is a
:class:`~circuitkg.params.ColumnView` that lays the columns out for the four terms side by side
(width ``4K``), so the circuit is CP-shaped with sum weights ``(+1, +1, +1, -1) ⊗ 1_K``. Gram matrices
and all-entity contractions are computed once at the base width ``2K``.

**Monotone form** (ComplEx+). With ``Re = exp(θ)`` and ``Im = Re · sigmoid(w)`` the score is
non-negative (paper 004's construction), but the ``-1`` weight is not. Because
``1 - σ_s σ_r = (1 - σ_s) + σ_s (1 - σ_r)``, the same function is the sum of four non-negative terms

``s_re(1-σ_s)·r_re·o_re + s_im·r_re(1-σ_r)·o_re + s_re·r_im·o_im + s_im·r_re·o_im``,

a structurally monotone circuit that runs in log space like CP+.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from circuitkg.compilers.base import KGEModel, cp_circuit, register_model
from einops import repeat
from torch import Tensor, nn

from circuitkg.forms import Form
from circuitkg.ir import Circuit
from circuitkg.params import ColumnView, FixedWeight, Table

# column blocks of the base table, per term (score/squared: base = [Re | Im])
_SIGNED_LAYOUT = {"s": (0, 0, 1, 1), "r": (0, 1, 0, 1), "o": (0, 1, 1, 0)}
_SIGNED_SIGNS = (1.0, 1.0, 1.0, -1.0)
# monotone: base = [Re | Im | Re(1-σ)]
_MONOTONE_LAYOUT = {"s": (2, 1, 0, 1), "r": (0, 2, 1, 0), "o": (0, 0, 1, 1)}


def _layout(blocks: tuple[int, ...], rank: int) -> Tensor:
    return torch.cat([torch.arange(b * rank, (b + 1) * rank) for b in blocks])


class ComplexPositiveTable(Table):
    """``[Re | Im | Re(1-σ(w))]`` with ``Re = exp(θ)``, ``Im = Re σ(w)``, kept in log space."""

    nonnegative = True

    def __init__(self, num_values: int, rank: int, init_mean: float, init_std: float = 0.1) -> None:
        super().__init__(num_values, 3 * rank)
        self.rank = rank
        self.log_real = nn.Parameter(init_mean + torch.randn(num_values, rank) * init_std)
        self.imag_logit = nn.Parameter(torch.randn(num_values, rank) * init_std)

    def log_rows(self, index: Tensor) -> Tensor:
        theta, w = self.log_real[index], self.imag_logit[index]
        return torch.cat([theta, theta + F.logsigmoid(w), theta + F.logsigmoid(-w)], dim=-1)

    def rows(self, index: Tensor) -> Tensor:
        return torch.exp(self.log_rows(index))


@register_model
class ComplEx(KGEModel):
    """ComplEx with rank ``K`` complex dimensions (``2K`` real parameters per embedding)."""

    name = "complex"

    def __init__(
        self,
        num_entities: int,
        num_relations: int,
        rank: int,
        form: Form = "squared",
        init_std: float | None = None,
    ) -> None:
        super().__init__(num_entities, num_relations, rank, form, init_std)
        if form == "monotone":
            mean = -math.log(4 * rank) / 3
            self.entity = ComplexPositiveTable(num_entities, rank, mean)
            self.relation = ComplexPositiveTable(num_relations, rank, mean)
        else:
            self.entity = self.table(num_entities, 2 * rank, effective_width=4 * rank)
            self.relation = self.table(num_relations, 2 * rank, effective_width=4 * rank)

    def positive_init_terms(self) -> tuple[int, int]:
        """``(K, 3)``: only the real parts are shifted, so of the ``4K`` terms the ``K`` of
        ``Re Re Re`` carry the start, as CP's."""
        return self.rank, 3

    def positive_init_columns(self, width: int) -> slice:
        """The real half of ``[Re | Im]``: the score starts as CP's (imaginary parts near 0)."""
        return slice(0, width // 2)

    def n3_factor(self, rows: Tensor) -> Tensor:
        """The moduli ``sqrt(Re² + Im²)`` of the complex coordinates (Lacroix et al. 2018); the
        monotone form's rows ``[Re | Im | Re(1-σ)]`` are their own factors."""
        if self.form == "monotone":
            return rows
        re, im = rows.chunk(2, dim=-1)
        return torch.sqrt(re * re + im * im + 1e-20)

    def build_circuit(self) -> Circuit:
        layout = _MONOTONE_LAYOUT if self.form == "monotone" else _SIGNED_LAYOUT
        k = self.rank
        views = {
            v: ColumnView(self.entity if v != "r" else self.relation, _layout(b, k))
            for v, b in layout.items()
        }
        if self.form == "monotone":
            weight = FixedWeight.ones(4 * k)
        else:
            weight = FixedWeight(repeat(torch.tensor(_SIGNED_SIGNS), "term -> 1 (term k)", k=k))
        return cp_circuit(views["s"], views["r"], views["o"], weight, name=self.name)
