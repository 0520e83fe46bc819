"""Tables the symbolic operations build from other tables (:mod:`circuitkg.ir.symbolic`): the
row-wise Kronecker product of a product circuit, and the one-row tables of an input layer whose
variable was integrated out or observed."""

from __future__ import annotations

import torch
from einops import rearrange
from torch import Tensor

from circuitkg.params.tables import Table


class KroneckerRowTable(Table):
    """``T[x] = A[x] ⊗ B[x]`` (row-wise Kronecker product of two tables over the same variable).

    The input layer of a product circuit ``multiply(c1, c2)``; its width is ``K_A K_B``.
    """

    def __init__(self, left: Table, right: Table) -> None:
        if left.num_values != right.num_values:
            raise ValueError(
                f"row-wise Kronecker needs tables over the same domain, got {left.num_values} "
                f"and {right.num_values} values"
            )
        super().__init__(left.num_values, left.width * right.width)
        self.left, self.right = left, right
        self.nonnegative = left.nonnegative and right.nonnegative

    def rows(self, index: Tensor) -> Tensor:
        a, b = self.left.rows(index), self.right.rows(index)
        return rearrange(a[..., :, None] * b[..., None, :], "... i j -> ... (i j)")

    def log_rows(self, index: Tensor) -> Tensor:
        a, b = self.left.log_rows(index), self.right.log_rows(index)
        return rearrange(a[..., :, None] + b[..., None, :], "... i j -> ... (i j)")


class SummedTable(Table):
    """One row, ``Σ_x base[x]``: the table of an input layer whose variable was integrated out."""

    def __init__(self, base: Table) -> None:
        super().__init__(1, base.width)
        self.base = base
        self.nonnegative = base.nonnegative

    def rows(self, index: Tensor) -> Tensor:
        return self.base.column_sum().dense()[0].expand(index.shape + (self.width,))


class RowTable(Table):
    """One row, ``base[value]``: the table of an input layer whose variable was observed."""

    def __init__(self, base: Table, value: int) -> None:
        if not 0 <= value < base.num_values:
            raise ValueError(f"value {value} outside the domain [0, {base.num_values})")
        super().__init__(1, base.width)
        self.base, self.value = base, int(value)
        self.nonnegative = base.nonnegative

    def rows(self, index: Tensor) -> Tensor:
        row = self.base.rows(torch.tensor([self.value], device=self.base.device))[0]
        return row.expand(index.shape + (self.width,))
