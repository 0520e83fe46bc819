"""Kronecker tables (paper 002): rows reconstructed on the fly as ``T[x] = A[x] ⊗ B[x]``.

A table of width ``K = a·b`` is stored as two tables ``A`` (``|X| x a``) and ``B`` (``|X| x b``) over
the same values, so ``|X|(a + b)`` parameters instead of ``|X| a b``. Unit ``(i, j)`` of a row is
``A[x, i] · B[x, j]``, in row-major order (``i·b + j``), as ``torch.kron`` lays it out. Three forms:

* two factors, ``A[x] ⊗ B[x]``;
* the self form ``A[x] ⊗ A[x]`` (paper 002's ``h ⊗ h``; ``|X| a`` parameters for width ``a²``);
* broadcast forms ``1 ⊗ A[x]`` and ``A[x] ⊗ 1`` (KD-DistMult's object ``1 ⊗ t``): a factor of ones,
  stored as nothing.

Non-negative factors give a non-negative table (``log T[x] = log A[x] ⊕ log B[x]``, an outer sum),
so the monotone form works too. No ``|X| x K`` tensor is ever built: every reduction below walks the
values in chunks whose size bounds the temporaries to about :data:`CHUNK_ELEMENTS` numbers, and
contracts the factors directly (n = |X|, B = batch, primes for the other table):

==================  ===============================================  =========================
method              plan                                             cost
==================  ===============================================  =========================
``gram(T')``        ``Σ_x (A⊗A')[x]ᵀ (B⊗B')[x]``, then a permutation  ``O(n a a' b b')``;
                    (both sides Kronecker); ones on both sides of a  ``O(n b b')`` with ones
                    factor leave ``Σ_x (B⊗B')[x]``                   on the left
``contract(C)``     ``C[b] ↦ A[x]ᵀ C[b] B[x]``, larger factor first  ``O(B n a b)``; ``O(B n b)``
                    (or rows and one GEMM when that is smaller)      for ``1 ⊗ B``
``weighted_sum``    ``Σ_x w[b,x] A[x] ⊗ B[x]``                        ``O(B n a b)``
``abs_max``         ``max|A| · max|B|`` (exact for the self form,     ``O(n (a + b))``
                    an upper bound otherwise)
``init_positive_``  each factor's, ``shift`` scaled to its width      ``O(n (a + b))``
                    (``[0, K/2)`` -> ``[0, a/2)``); supported iff
                    every factor supports it
==================  ===============================================  =========================

The ``log_*`` variants shift each factor by its own maximum before leaving log space.
:func:`kronecker_like` builds its factors with the replaced table's ``kronecker_factor`` hook.
"""

from __future__ import annotations

import math

import torch
from einops import rearrange
from torch import Tensor

from circuitkg.numerics import Scaled
from circuitkg.params.reductions import finite_max
from circuitkg.params.tables import DEFAULT_CHUNK, Table

#: temporaries of the chunked reductions hold about this many numbers
CHUNK_ELEMENTS = 1 << 22

# a factor's rows for a chunk: a tensor, or None for a factor of ones
Rows = Tensor | None


class KroneckerTable(Table):
    """``T[x] = A[x] ⊗ B[x]``; ``None`` for a factor means ones of the given width.

    Use :meth:`square` for ``A ⊗ A`` and :meth:`broadcast` for ``1 ⊗ A`` / ``A ⊗ 1``. The factors are
    submodules, so the parameters are those of ``A`` and ``B`` (once, in the self form).
    """

    def __init__(
        self,
        left: Table | None,
        right: Table | None,
        left_width: int | None = None,
        right_width: int | None = None,
    ) -> None:
        if left is None and right is None:
            raise ValueError("a Kronecker table needs at least one factor table")
        widths = []
        for factor, width in ((left, left_width), (right, right_width)):
            if factor is None and width is None:
                raise ValueError("a factor of ones needs its width")
            if factor is not None and width not in (None, factor.width):
                raise ValueError(f"width {width} given for a factor of width {factor.width}")
            widths.append(factor.width if factor is not None else int(width))
        sizes = {f.num_values for f in (left, right) if f is not None}
        if len(sizes) != 1:
            raise ValueError(f"the factors range over different numbers of values: {sorted(sizes)}")
        super().__init__(sizes.pop(), widths[0] * widths[1])
        self.left, self.right = left, right
        self.left_width, self.right_width = widths
        self.nonnegative = all(f.nonnegative for f in (left, right) if f is not None)

    @classmethod
    def square(cls, base: Table) -> KroneckerTable:
        """``T[x] = A[x] ⊗ A[x]`` (width ``a²``, the parameters of ``A`` only)."""
        return cls(base, base)

    @classmethod
    def broadcast(cls, base: Table, width: int, side: str = "left") -> KroneckerTable:
        """``1_width ⊗ A[x]`` (``side="left"``) or ``A[x] ⊗ 1_width`` (``side="right"``)."""
        if side == "left":
            return cls(None, base, left_width=width)
        if side == "right":
            return cls(base, None, right_width=width)
        raise ValueError(f"side must be 'left' or 'right', got {side!r}")

    # --- hooks ---------------------------------------------------------------------------------
    @property
    def supports_positive_init(self) -> bool:
        return all(f.supports_positive_init for f in self._factors())

    def init_positive_(self, mean: float, noise: float, shift: slice | None = None) -> None:
        """Each factor table's ``init_positive_(mean, noise, shift')`` (once in the self form), where
        ``shift'`` selects the same fraction of the factor's columns as ``shift`` of this table's
        (``[0, K/2)`` -> ``[0, a/2)``), so reconstructed entries start near ``mean²`` where shifted.
        This is what the positive initialisation did to Kronecker factors before it used hooks."""
        for factor in self._factors():
            factor.init_positive_(mean, noise, _scaled_slice(shift, self.width, factor.width))

    # --- rows ----------------------------------------------------------------------------------
    def rows(self, index: Tensor) -> Tensor:
        a, b = self._factor_rows(index, log=False)
        return _outer(a, b, self.left_width, self.right_width, log=False)

    def log_rows(self, index: Tensor) -> Tensor:
        a, b = self._factor_rows(index, log=True)
        return _outer(a, b, self.left_width, self.right_width, log=True)

    def abs_max(self) -> Tensor:
        a, b = self._factor_scales()
        m = a if b is None else b if a is None else a * b
        return m.clamp_min(torch.finfo(m.dtype).tiny)

    # --- reductions ----------------------------------------------------------------------------
    def gram(self, other: Table | None = None, weights: Tensor | None = None) -> Scaled:
        """``Σ_x T[x]ᵀ T'[x]``, ``(1, K, K')``; factorised when ``other`` is Kronecker too.

        Weighted Grams (``weights`` of shape ``(B, |X|)``) use the generic chunked plan.
        """
        other = self if other is None else other
        if weights is not None:
            return super().gram(other, weights)
        ma, mb = self.abs_max(), other.abs_max()
        if isinstance(other, KroneckerTable):
            value = self._kronecker_gram(other)
        else:
            value = None
            scales = self._factor_scales()
            for idx in self._index_chunks(self.width + other.width):
                a, b = self._normalised_factor_rows(idx, scales)
                rows = _outer(a, b, self.left_width, self.right_width, log=False)
                part = rows.T @ (other.rows(idx) / mb)
                value = part if value is None else value + part
        log_scale = (torch.log(ma) + torch.log(mb)).reshape(1)
        return Scaled(value.unsqueeze(0), log_scale).normalised()

    def weighted_sum(self, weights: Tensor) -> Scaled:
        """``Σ_x w[b, x] A[x] ⊗ B[x]`` of shape ``(B, K)``; a ones factor costs nothing."""
        total, scales = None, self._factor_scales()
        for idx in self._index_chunks(weights.shape[0] * self.width):
            a, b = self._normalised_factor_rows(idx, scales)
            w = weights[:, idx]
            if a is None:
                part = (w @ b).unsqueeze(1).expand(-1, self.left_width, -1)
            elif b is None:
                part = (w @ a).unsqueeze(2).expand(-1, -1, self.right_width)
            else:
                part = torch.einsum("bx,xi,xj->bij", w, a, b)
            total = part if total is None else total + part
        log_m = torch.log(self.abs_max()).expand(weights.shape[0])
        return Scaled(total.reshape(weights.shape[0], self.width), log_m).normalised()

    def log_weighted_sum(self, log_weights: Tensor) -> Tensor:
        """``log Σ_x exp(log_w[b, x]) T[x]``, ``(B, K)``, each factor shifted by its column maxima."""
        batch = log_weights.shape[0]
        parts = []
        for idx in self._index_chunks(batch * self.width):
            la, lb = self._factor_rows(idx, log=True)
            lw = log_weights[:, idx]
            tw = finite_max(lw, dim=1)
            w = torch.exp(lw - tw)
            if la is None or lb is None:
                lf = lb if la is None else la
                tf = finite_max(lf, dim=0)
                inner = torch.log(w @ torch.exp(lf - tf)) + tf + tw
                inner = inner.unsqueeze(1) if la is None else inner.unsqueeze(2)
            else:
                ta, tb = finite_max(la, dim=0), finite_max(lb, dim=0)
                prod = torch.einsum("bx,xi,xj->bij", w, torch.exp(la - ta), torch.exp(lb - tb))
                inner = torch.log(prod) + (ta.reshape(-1, 1) + tb).unsqueeze(0) + tw.unsqueeze(2)
            parts.append(inner.expand(batch, self.left_width, self.right_width).reshape(batch, -1))
        return torch.logsumexp(torch.stack(parts), dim=0) if len(parts) > 1 else parts[0]

    def contract(self, coef: Scaled) -> Scaled:
        """``coef @ Tᵀ``, ``(B, |X|)``: ``Σ_ij C[b,i,j] A[x,i] B[x,j]`` with ``C = coef`` reshaped."""
        c = coef.value.reshape(-1, self.left_width, self.right_width)
        scales = self._factor_scales()
        out = [
            self._bilinear(c, *self._normalised_factor_rows(idx, scales))
            for idx in self._chunks_for(c)
        ]
        return Scaled(torch.cat(out, dim=1), coef.log_scale + torch.log(self.abs_max()))

    def log_contract(self, log_coef: Tensor) -> Tensor:
        """``log (exp(log_coef) @ Tᵀ)``, ``(B, |X|)``, for non-negative factors."""
        top = finite_max(log_coef, dim=1)
        c = torch.exp(log_coef - top).reshape(-1, self.left_width, self.right_width)
        out = []
        for idx in self._chunks_for(c):
            la, lb = self._factor_rows(idx, log=True)
            shift = torch.zeros((), dtype=c.dtype, device=c.device)
            factors = []
            for lf in (la, lb):
                if lf is None:
                    factors.append(None)
                    continue
                t = finite_max(lf, dim=None)
                factors.append(torch.exp(lf - t))
                shift = shift + t
            out.append(torch.log(self._bilinear(c, *factors)) + shift)
        return torch.cat(out, dim=1) + top

    # --- helpers -------------------------------------------------------------------------------
    def _factors(self) -> list[Table]:
        """The distinct factor tables (ones are none; the self form's one factor once)."""
        right = None if self.right is self.left else self.right
        return [f for f in (self.left, right) if f is not None]

    def _factor_rows(self, index: Tensor, log: bool) -> tuple[Rows, Rows]:
        def get(f: Table | None) -> Rows:
            if f is None:
                return None
            return f.log_rows(index) if log else f.rows(index)

        a = get(self.left)
        b = a if self.right is self.left else get(self.right)
        return a, b

    def _factor_scales(self) -> tuple[Tensor | None, Tensor | None]:
        """Each factor's (detached) ``abs_max``; ``None`` for ones."""
        return tuple(None if f is None else f.abs_max().detach() for f in (self.left, self.right))

    def _normalised_factor_rows(
        self, index: Tensor, scales: tuple[Tensor | None, Tensor | None]
    ) -> tuple[Rows, Rows]:
        """Factor rows divided by their factor's ``abs_max`` (``scales``), so ``|entries| <= 1``."""
        rows = self._factor_rows(index, log=False)
        return tuple(None if r is None else r / m for r, m in zip(rows, scales, strict=True))

    def _index_chunks(self, per_row: int):
        """Index ranges over the values, ``per_row`` numbers of temporaries per value."""
        size = max(1, min(DEFAULT_CHUNK, CHUNK_ELEMENTS // max(1, per_row)))
        return self._chunk_ranges(size)

    def _chunks_for(self, c: Tensor):
        batch, a, b = c.shape
        return self._index_chunks(min(batch * min(a, b), a * b) + a + b)

    def _kronecker_gram(self, other: KroneckerTable) -> Tensor:
        """``Σ_x T[x]ᵀ T'[x]`` for two Kronecker tables, unscaled by the abs maxima: ``(K, K')``.

        Entry ``((i, j), (k, l))`` is ``Σ_x A_i A'_k B_j B'_l``: one ``(a a') x (b b')`` product per
        chunk of ``P_x = A[x] ⊗ A'[x]`` and ``Q_x = B[x] ⊗ B'[x]``, permuted at the end. When both
        ``A`` and ``A'`` are ones, ``P_x = 1`` and only ``Σ_x Q_x`` is needed (likewise for ``B``).
        """
        wa, wb, wa2, wb2 = self.left_width, self.right_width, other.left_width, other.right_width
        squares = self.left is self.right and other.left is other.right
        scales, other_scales = self._factor_scales(), other._factor_scales()
        total = None
        for idx in self._index_chunks(wa * wa2 + wb * wb2):
            a, b = self._normalised_factor_rows(idx, scales)
            a2, b2 = other._normalised_factor_rows(idx, other_scales)
            p = None if a is None and a2 is None else _outer(a, a2, wa, wa2, log=False)
            if squares:
                q = p
            else:
                q = None if b is None and b2 is None else _outer(b, b2, wb, wb2, log=False)
            if p is None:
                part = q.sum(dim=0).expand(wa * wa2, -1)
            elif q is None:
                part = p.sum(dim=0).unsqueeze(1).expand(-1, wb * wb2)
            else:
                part = p.T @ q
            total = part if total is None else total + part
        # rows (i i'), columns (j j') of P ⊗ Q's sums  ->  rows (i j), columns (i' j'): the Gram
        return rearrange(total, "(i i2) (j j2) -> (i j) (i2 j2)", i=wa, i2=wa2, j=wb, j2=wb2)

    @staticmethod
    def _bilinear(c: Tensor, a: Rows, b: Rows) -> Tensor:
        """``Σ_ij c[n,i,j] a[x,i] b[x,j]`` for a chunk, shape ``(N, X)``; ``None`` means ones.

        With two factors the larger one is contracted first (temporary ``N X min(a, b)``), unless
        the reconstructed rows (``X a b``) are smaller, then it is one GEMM.
        """
        if a is None:
            return c.sum(dim=1) @ b.T
        if b is None:
            return c.sum(dim=2) @ a.T
        n, wa, wb = c.shape
        if wa * wb <= n * min(wa, wb):
            rows = (a.unsqueeze(2) * b.unsqueeze(1)).reshape(a.shape[0], -1)
            return c.reshape(n, -1) @ rows.T
        if wa >= wb:
            return torch.einsum("nxj,xj->nx", torch.einsum("nij,xi->nxj", c, a), b)
        return torch.einsum("nxi,xi->nx", torch.einsum("nij,xj->nxi", c, b), a)

    def extra_repr(self) -> str:
        def name(f: Table | None, width: int) -> str:
            return f"1[{width}]" if f is None else f"{type(f).__name__}[{width}]"

        shape = (
            f"square of {name(self.left, self.left_width)}"
            if self.left is self.right
            else f"{name(self.left, self.left_width)} ⊗ {name(self.right, self.right_width)}"
        )
        return f"{super().extra_repr()}, {shape}"


def _outer(a: Rows, b: Rows, wa: int, wb: int, log: bool) -> Tensor:
    """Row-wise ``a ⊗ b`` (``log``: ``a ⊕ b``), flattened; ``None`` is ones (zeros in log)."""
    if a is None:
        return b.unsqueeze(-2).expand(*b.shape[:-1], wa, wb).reshape(*b.shape[:-1], wa * wb)
    if b is None:
        return a.unsqueeze(-1).expand(*a.shape[:-1], wa, wb).reshape(*a.shape[:-1], wa * wb)
    out = a.unsqueeze(-1) + b.unsqueeze(-2) if log else a.unsqueeze(-1) * b.unsqueeze(-2)
    return out.flatten(-2)


def _scaled_slice(shift: slice | None, width: int, to: int) -> slice | None:
    """``shift`` over ``width`` columns as the same fraction of ``to`` columns (rounded down)."""
    if shift is None:
        return None
    start, stop, step = shift.indices(width)
    if step != 1:
        raise ValueError(f"a Kronecker table shifts a contiguous column range, got {shift}")
    return slice(start * to // width, stop * to // width)


def balanced_factors(width: int) -> tuple[int, int]:
    """``(a, b)`` with ``a·b = width`` and ``a <= b`` as close as possible (``a = b`` for squares)."""
    a = math.isqrt(width)
    while width % a:
        a -= 1
    return a, width // a


def kronecker_like(table: Table) -> KroneckerTable:
    """A Kronecker table with ``table``'s values, width and kind, at the same typical scale.

    Square widths ``a²`` give the self form ``A ⊗ A`` (``|X| a`` parameters); other widths the two
    most balanced factors ``A ⊗ B``. The factors are ``table.kronecker_factor(width)``: a free table
    of entry std ``σ`` gets factors of std ``√σ``; a positive table ``exp(θ)`` gets factors
    ``exp(θ')`` with half the mean and ``1/√2`` the std of ``θ``, so reconstructed entries start
    where the replaced ones did. A table without that hook raises
    :class:`~circuitkg.errors.UnsupportedHookError`.
    """
    a, b = balanced_factors(table.width)
    if a == b:
        out = KroneckerTable.square(table.kronecker_factor(a))
    else:
        out = KroneckerTable(table.kronecker_factor(a), table.kronecker_factor(b))
    return out.to(device=table.device, dtype=table.dtype)


class BatchNormTable(Table):
    """Batch normalisation of a table's columns with statistics over **all** its rows.

    ``T[x] = γ ∘ (A[x] − μ) / √(σ² + ε) + β`` with ``μ`` and ``σ²`` the column means and (biased)
    variances of the whole table ``A`` (all ``n`` values), ``γ`` (ones) and ``β`` (zeros) learnt
    of ``A``'s width: ``2·width`` parameters, as a BatchNorm1d layer. This is paper 002's batch
    normalisation of the (reconstructed) embeddings with the batch replaced by the whole table:
    the statistics are a deterministic function of the parameters, the same in training and in
    evaluation (so there are no running statistics and no train/eval switch), and the circuit stays
    an exact distribution whatever the batch. Per column the map is affine, ``T[x] = A[x] ∘ g + c``
    with ``g = γ/√(σ²+ε)`` and ``c = β − μ ∘ g``, and gradients flow through ``μ`` and ``σ²`` as in
    training-mode BatchNorm. ``base`` may be any table, a :class:`KroneckerTable` included.

    Cost: the statistics take one pass over ``A`` in chunks, ``O(n·width)`` per call of
    :meth:`rows` (1-vs-all touches all ``n`` rows anyway); the reductions are the generic ones of
    :class:`~circuitkg.params.tables.Table` on these rows. Entries may be negative, so it serves the
    score and squared forms, not the monotone one.
    """

    def __init__(self, base: Table, eps: float = 1e-5) -> None:
        super().__init__(base.num_values, base.width)
        self.base, self.eps = base, float(eps)
        self.weight = torch.nn.Parameter(
            torch.ones(base.width, dtype=base.dtype, device=base.device)
        )
        self.bias = torch.nn.Parameter(
            torch.zeros(base.width, dtype=base.dtype, device=base.device)
        )

    def statistics(self) -> tuple[Tensor, Tensor]:
        """``(μ, σ²)``: column mean and biased variance of the base table, ``(width,)`` each."""
        total = square = None
        for rows in self.base.chunks(max(1, CHUNK_ELEMENTS // self.width)):
            part, part2 = rows.sum(dim=0), (rows * rows).sum(dim=0)
            total = part if total is None else total + part
            square = part2 if square is None else square + part2
        mean = total / self.num_values
        return mean, (square / self.num_values - mean * mean).clamp_min(0.0)

    def affine(self) -> tuple[Tensor, Tensor]:
        """``(g, c)`` with ``T[x] = A[x] ∘ g + c`` (class docstring)."""
        mean, var = self.statistics()
        gain = self.weight * torch.rsqrt(var + self.eps)
        return gain, self.bias - mean * gain

    def rows(self, index: Tensor) -> Tensor:
        gain, shift = self.affine()
        return self.base.rows(index) * gain + shift

    def parameter_table(self) -> Table:
        """The base table's: the embedding factors, what N3 would penalise."""
        return self.base.parameter_table()

    def extra_repr(self) -> str:
        return f"{super().extra_repr()}, batch norm over all rows of {type(self.base).__name__}"
