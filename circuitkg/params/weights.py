"""Sum-layer weights: objects that produce a matrix ``W`` of shape ``(K_out, K_in)``.

A sum layer computes ``y = W x`` over the concatenation ``x`` of its children's outputs. Its weight is
learned (:class:`FreeWeight`), non-negative and learned (:class:`PositiveWeight`, ``W = exp θ``),
fixed (:class:`FixedWeight`: CP's ones, ComplEx's ±1), or derived (:class:`KroneckerWeight`, the
weight of a product of two sum layers). A core tensor (TuckER) is a free weight whose input axis is
the flattened ``(k_1, ..., k_d)`` of a Kronecker product child.

Like tables (:mod:`circuitkg.params.tables`), weights answer the trainer through hooks:
``supports_positive_init`` and ``init_positive_(μ, ν, shift)``, in place ``W[i, j] = μ ν ε +
μ [j ∈ shift]`` (cost ``O(K_out K_in)``; the default raises
:class:`~circuitkg.errors.UnsupportedHookError`). Weights without parameters (fixed ones) are never
asked.
"""

from __future__ import annotations

import torch
from torch import Tensor, nn

from circuitkg.errors import UnsupportedHookError
from circuitkg.params.tables import fill_positive_


class Weight(nn.Module):
    """Base class: ``matrix()`` returns ``W`` of shape ``(out_width, in_width)``."""

    nonnegative: bool = False
    #: :meth:`init_positive_` is implemented
    supports_positive_init: bool = False

    def __init__(self, out_width: int, in_width: int) -> None:
        super().__init__()
        self.out_width, self.in_width = int(out_width), int(in_width)

    def matrix(self) -> Tensor:
        raise NotImplementedError

    def init_positive_(self, mean: float, noise: float, shift: slice | None = None) -> None:
        """In place: every entry becomes ``mean·noise·ε``, ``ε ~ N(0, 1)``, plus ``mean`` on the
        input columns ``shift`` selects (all when None)."""
        raise UnsupportedHookError.missing(
            self, "init_positive_", "the positive initialisation", "free weights"
        )

    def extra_repr(self) -> str:
        return f"out_width={self.out_width}, in_width={self.in_width}"


class FixedWeight(Weight):
    """A constant matrix (a buffer)."""

    def __init__(self, matrix: Tensor) -> None:
        matrix = torch.as_tensor(matrix)
        if not matrix.is_floating_point():
            matrix = matrix.to(torch.get_default_dtype())
        if matrix.ndim != 2:
            raise ValueError(f"a weight matrix must be 2-D, got shape {tuple(matrix.shape)}")
        super().__init__(*matrix.shape)
        self.register_buffer("value", matrix.clone())
        self.nonnegative = bool((matrix >= 0).all())

    def matrix(self) -> Tensor:
        return self.value

    @staticmethod
    def ones(in_width: int, out_width: int = 1) -> FixedWeight:
        return FixedWeight(torch.ones(out_width, in_width))


class FreeWeight(Weight):
    """A learned unrestricted matrix (or core tensor, flattened), initialised ``N(0, init_std²)``."""

    supports_positive_init = True

    def __init__(self, out_width: int, in_width: int, init_std: float = 1.0) -> None:
        super().__init__(out_width, in_width)
        self.weight = nn.Parameter(torch.randn(out_width, in_width) * init_std)

    def matrix(self) -> Tensor:
        return self.weight

    def init_positive_(self, mean: float, noise: float, shift: slice | None = None) -> None:
        fill_positive_(self.weight, mean, noise, shift)


class PositiveWeight(Weight):
    """A learned non-negative matrix ``W = exp(θ)``."""

    nonnegative = True

    def __init__(self, out_width: int, in_width: int, init_std: float = 0.1) -> None:
        super().__init__(out_width, in_width)
        self.log_weight = nn.Parameter(torch.randn(out_width, in_width) * init_std)

    def matrix(self) -> Tensor:
        return torch.exp(self.log_weight)


class KroneckerWeight(Weight):
    """The weight of the product of two sum layers: ``[A_1 ⊗ B_1, ..., A_P ⊗ B_P]``.

    Block ``p`` pairs a column block of the left weight with one of the right weight (``None`` stands
    for the identity of the given width, when a sum layer meets a non-sum layer).
    """

    def __init__(
        self,
        left: Weight | int,
        right: Weight | int,
        blocks: list[tuple[slice | None, slice | None]] | None = None,
    ) -> None:
        self.left_width = left if isinstance(left, int) else left.out_width
        self.right_width = right if isinstance(right, int) else right.out_width
        if blocks is None:
            blocks = [
                (
                    None if isinstance(left, int) else slice(None),
                    None if isinstance(right, int) else slice(None),
                )
            ]
        in_width = 0
        for a, b in blocks:
            wa = self.left_width if a is None else len(range(left.in_width)[a])
            wb = self.right_width if b is None else len(range(right.in_width)[b])
            in_width += wa * wb
        super().__init__(self.left_width * self.right_width, in_width)
        self.left = left if isinstance(left, Weight) else None
        self.right = right if isinstance(right, Weight) else None
        self.blocks = blocks
        self.nonnegative = all(w is None or w.nonnegative for w in (self.left, self.right))

    def matrix(self) -> Tensor:
        a_full = None if self.left is None else self.left.matrix()
        b_full = None if self.right is None else self.right.matrix()
        ref = a_full if a_full is not None else b_full
        parts = []
        for a, b in self.blocks:
            wa = (
                torch.eye(self.left_width, dtype=ref.dtype, device=ref.device)
                if a is None
                else a_full[:, a]
            )
            wb = (
                torch.eye(self.right_width, dtype=ref.dtype, device=ref.device)
                if b is None
                else b_full[:, b]
            )
            parts.append(torch.kron(wa, wb))
        return torch.cat(parts, dim=1)
