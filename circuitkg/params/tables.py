"""Input-layer parameterisations: objects that produce a table ``T`` of shape ``(num_values, width)``.

An input layer over a categorical variable ``X`` maps a value ``x`` to the row ``T[x]``. How ``T`` is
obtained is the layer's *table*, each kind in its own module: learned tables ``θ`` and ``exp(θ)``
(:mod:`~circuitkg.params.learned`), constants and 0/1 indicators (:mod:`~circuitkg.params.fixed`),
views of another table's columns (:mod:`~circuitkg.params.views`), the tables the symbolic
operations derive (:mod:`~circuitkg.params.derived`), Kronecker reconstructions
(:mod:`~circuitkg.params.kronecker`) and encoders (:mod:`~circuitkg.params.encoded`). This module
holds the protocol they share; its default reductions are in :mod:`~circuitkg.params.reductions`.
Every table answers the same five questions, so every query of the executor works on every table:

===========================  ============================================  =====================
method                       value                                         cost (free table)
===========================  ============================================  =====================
``rows(index)``              ``T[index]``                                   O(B K)
``log_rows(index)``          ``log T[index]`` (non-negative tables)         O(B K)
``gram(other)``              ``Σ_x T[x]ᵀ T'[x]`` as a :class:`Scaled`        O(V K K')
``contract(coef)``           ``coef @ Tᵀ`` as a :class:`Scaled` (B, V)       O(B V K)
``log_contract(log_coef)``   ``log Σ_k exp(log_coef[b,k]) T[x,k]``          O(B V K)
===========================  ============================================  =====================

Tables that are computed on the fly override :meth:`Table.chunks` only; the defaults reduce over
chunks of ``chunk_size`` rows, so no full ``V x K`` tensor is needed for a Gram matrix.

**Hooks.** What the executor, the trainer and the model transforms need to know about a table is
asked of the table, never found out with ``isinstance``, so a new kind of table (an encoder's, say)
plugs in by overriding what differs from these defaults:

===============================  ==============================================  =================
hook                             value (default)                                 cost (default)
===============================  ==============================================  =================
``as_view()``                    ``(base, cols, runs)``: ``T = base[:, cols]``,  O(K)
                                 ``runs`` the contiguous runs of ``cols``
                                 (``(T, 0..K-1, ((0, K),))``)
``fold(coef, dim)``              ``c`` with ``coef · T[x]ᵀ = c · base[x]ᵀ``      O(1); a view: the
                                 (``coef``)                                      size of ``coef``
``parameter_table()``            the table whose rows N3 penalises as            O(1)
                                 embedding factors (``T``; views: their base's)
``supports_positive_init``       whether ``init_positive_`` is implemented       O(1)
                                 (False)
``init_positive_(μ, ν, shift)``  in place ``T[x, k] = μ ν ε + μ [k ∈ shift]``,   O(V K)
                                 ``ε ~ N(0, 1)`` (an error)
``kronecker_factor(w)``          a new table of this kind over the same values   O(V K), to read
                                 and width ``w`` whose ``A ⊗ A`` has ``T``'s     the scale
                                 scale (an error)
``state_token()``                a hashable that changes whenever ``T`` may      O(#tensors)
                                 have (pointer, version, dtype and device of
                                 each parameter and buffer)
===============================  ==============================================  =================

The executor reads ``as_view``/``fold`` to work at a view's base width and ``state_token`` to
reuse Gram matrices across no-grad queries; :func:`circuitkg.train.initialise` and the N3
regulariser read the parameter tables; ``KGEModel.with_kronecker`` reads ``kronecker_factor``. A
missing hook raises :class:`~circuitkg.errors.UnsupportedHookError` naming the table and the hook.
"""

from __future__ import annotations

import itertools
from collections.abc import Hashable, Iterable, Iterator

import torch
from torch import Tensor, nn

from circuitkg.errors import UnsupportedHookError
from circuitkg.numerics import MixedScaled, Scaled, abs_max, is_unscaled
from circuitkg.params.reductions import (
    DEFAULT_CHUNK,
    ClassGrams,
    class_indicator,
    contract_chunks,
    finite_max,
    gram_chunks,
    robust,
    unique_rows,
    unscaled_ok,
)

#: column views with more contiguous runs than this are gathered, not copied run by run (a Python
#: loop per run would dominate)
MAX_RUNS = 16

#: contiguous ``(start, stop)`` column runs
Runs = tuple[tuple[int, int], ...]


class Table(nn.Module):
    """Base class of input-layer parameterisations (the protocol documented in the module)."""

    num_values: int
    width: int
    #: every entry is >= 0 by construction (needed for monotone circuits)
    nonnegative: bool = False
    #: :meth:`init_positive_` is implemented
    supports_positive_init: bool = False

    def __init__(self, num_values: int, width: int) -> None:
        super().__init__()
        if num_values < 1 or width < 1:
            raise ValueError(
                f"a table needs num_values >= 1 and width >= 1, got {num_values}, {width}"
            )
        self.num_values = int(num_values)
        self.width = int(width)

    # --- what subclasses provide -------------------------------------------------------------
    def rows(self, index: Tensor) -> Tensor:
        """``T[index]``, shape ``index.shape + (width,)``."""
        raise NotImplementedError

    def log_rows(self, index: Tensor) -> Tensor:
        """``log T[index]``; only meaningful for non-negative tables."""
        return torch.log(self.rows(index))

    # --- reductions with defaults --------------------------------------------------------------
    def chunks(self, chunk_size: int = DEFAULT_CHUNK) -> Iterator[Tensor]:
        """The table in consecutive blocks of at most ``chunk_size`` rows."""
        device = self.device
        for start in range(0, self.num_values, chunk_size):
            stop = min(start + chunk_size, self.num_values)
            yield self.rows(torch.arange(start, stop, device=device))

    def full(self) -> Tensor:
        """The whole table (materialised)."""
        return torch.cat(list(self.chunks()), dim=0)

    def abs_max(self) -> Tensor:
        """``max |T|`` (detached, at least the smallest positive float)."""
        with torch.no_grad():
            m = max(abs_max(c) for c in self.chunks())
        return m.clamp_min(torch.finfo(m.dtype).tiny)

    def gram(self, other: Table | None = None, weights: Tensor | None = None) -> Scaled:
        """``Σ_x w[b, x] T[x]ᵀ T'[x]``, shape ``(B, K, K')`` (``B = 1`` and ``w = 1`` by default).

        Weighted Grams are :meth:`weighted_gram`'s, mixed.
        """
        other = self if other is None else other
        if weights is None:
            return robust(lambda ma, mb: gram_chunks(self, other, ma, mb, None), self, other)
        return self.weighted_gram(other, weights).map(lambda v: v)

    def weighted_gram(self, other: Table | None, weights: Tensor) -> Scaled | MixedScaled:
        """The weighted Gram ``Σ_x w[b, x] T[x]ᵀ T'[x]``, ``(B, K, K')``, unmixed where it pays:
        the values grouped by identical weight columns (e.g. the entity classes of a 0/1 schema
        mask), one Gram per group, ``O(|X| K K')`` in all, and the ``(B x C)`` mix of them as a
        :class:`MixedScaled`; one weighted product (a :class:`Scaled`) when there are more classes
        than rows and more than a quarter of the values have a column of their own (then the
        ``C`` class Grams would outweigh the ``B`` rows). Both read as rows through ``map``."""
        other = self if other is None else other
        classes, inverse = unique_rows(weights.detach().T)
        if classes.shape[0] > weights.shape[0] and classes.shape[0] * 4 > self.num_values:
            return robust(lambda ma, mb: gram_chunks(self, other, ma, mb, weights.T), self, other)
        per_class = ClassGrams(self, other, inverse, classes.shape[0])
        rows, row_of = unique_rows(weights)
        if rows.shape[0] * 2 > weights.shape[0]:  # few repeats: gathering them back costs more
            rows, row_of = weights, None
        # each class's weight in each distinct weight row
        mix = (
            rows
            @ class_indicator(inverse, classes.shape[0], rows)
            / torch.bincount(inverse).to(rows.dtype)
        )
        return MixedScaled(per_class, mix, row_of)

    def column_sum(self) -> Scaled:
        """``Σ_x T[x]`` of shape ``(1, K)``."""
        return self.weighted_sum(
            torch.ones(1, self.num_values, dtype=self.dtype, device=self.device)
        )

    def weighted_sum(self, weights: Tensor) -> Scaled:
        """``Σ_x w[b, x] T[x]`` of shape ``(B, K)``."""

        def reduce(m: Tensor | None) -> Tensor:
            total, start = None, 0
            for c in self.chunks():
                part = weights[:, start : start + c.shape[0]] @ (c if m is None else c / m)
                total = part if total is None else total + part
                start += c.shape[0]
            return total

        return robust(reduce, self)

    def log_column_sum(self) -> Tensor:
        """``log Σ_x T[x]`` of shape ``(1, K)`` for non-negative tables, in log space."""
        return self.log_weighted_sum(
            torch.zeros(1, self.num_values, dtype=self.dtype, device=self.device)
        )

    def log_weighted_sum(self, log_weights: Tensor) -> Tensor:
        """``log Σ_x exp(log_w[b, x]) T[x]`` of shape ``(B, K)`` for non-negative tables."""
        parts, start = [], 0
        for idx in self._chunk_ranges():
            log_t = self._log_chunk(idx)
            lw = log_weights[:, start : start + idx.numel()]
            top_w, top_t = finite_max(lw, dim=1), finite_max(log_t, dim=0)
            inner = torch.exp(lw - top_w) @ torch.exp(log_t - top_t)
            parts.append(torch.log(inner) + top_w + top_t)
            start += idx.numel()
        return torch.logsumexp(torch.stack(parts), dim=0) if len(parts) > 1 else parts[0]

    def contract(self, coef: Scaled) -> Scaled:
        """``coef @ Tᵀ``: shape ``(B, V)``, one scale per row shared by all values.

        Under :func:`~circuitkg.numerics.robustly` the plain product is returned unchecked (the
        caller checks its rows); otherwise it is kept when in range, else redone on the table
        divided by its largest entry.
        """
        value = contract_chunks(self, coef.value, None)
        if is_unscaled() or unscaled_ok(value):
            return Scaled(value, coef.log_scale)
        m = self.abs_max()
        return Scaled(contract_chunks(self, coef.value, m), coef.log_scale + torch.log(m))

    def log_contract(self, log_coef: Tensor) -> Tensor:
        """``log (exp(log_coef) @ Tᵀ)`` of shape ``(B, V)`` for non-negative tables."""
        top = finite_max(log_coef, dim=1)
        coef = torch.exp(log_coef - top)
        out = []
        for idx in self._chunk_ranges():
            log_t = self._log_chunk(idx)
            t_top = finite_max(log_t, dim=None)
            out.append(torch.log(coef @ torch.exp(log_t - t_top).T) + t_top)
        return torch.cat(out, dim=1) + top

    # --- hooks (see the module docstring) -------------------------------------------------------
    def as_view(self) -> tuple[Table, Tensor, Runs]:
        """``(base, columns, runs)`` such that ``self == base[:, columns]``; ``runs`` are the
        contiguous ``(start, stop)`` runs of ``columns``. A table that is no view is its own base."""
        return self, torch.arange(self.width, device=self.device), ((0, self.width),)

    def fold(self, coef: Tensor, dim: int = -1) -> Tensor:
        """Coefficients on this table's columns (axis ``dim``) as coefficients on its base's
        (:meth:`as_view`): ``coef · T[x]ᵀ = fold(coef) · base[x]ᵀ``. The identity unless a view."""
        return coef

    def parameter_table(self) -> Table:
        """The table whose rows are the embedding factors (what N3 penalises): this table, or for
        a table derived column-wise from another (a view, polynomial features), that one's."""
        return self

    def init_positive_(self, mean: float, noise: float, shift: slice | None = None) -> None:
        """In place: every entry becomes ``mean·noise·ε``, ``ε ~ N(0, 1)``, plus ``mean`` on the
        columns ``shift`` selects (all when None); see :mod:`circuitkg.train.initialisation`."""
        raise UnsupportedHookError.missing(
            self, "init_positive_", "the positive initialisation", "free tables"
        )

    def kronecker_factor(self, width: int) -> Table:
        """A new table of this kind over the same values, of width ``width``, whose Kronecker
        square ``A ⊗ A`` has entries of this table's scale (see
        :func:`~circuitkg.params.kronecker.kronecker_like`)."""
        raise UnsupportedHookError.missing(
            self,
            "kronecker_factor",
            "a Kronecker reparameterisation (with_kronecker)",
            "free and positive tables",
        )

    def state_token(self) -> Hashable:
        """A value that changes whenever the table's entries may have changed (cache keys): the
        :func:`tensors_token` of its parameters and buffers. Tables whose entries depend on more
        than their own tensors (a graph, a step counter) build their token from other parts."""
        return tensors_token(itertools.chain(self.parameters(), self.buffers()))

    # --- helpers -------------------------------------------------------------------------------
    @property
    def device(self) -> torch.device:
        first = next(itertools.chain(self.parameters(), self.buffers()), None)
        return torch.device("cpu") if first is None else first.device

    @property
    def dtype(self) -> torch.dtype:
        first = next(itertools.chain(self.parameters(), self.buffers()), None)
        return torch.get_default_dtype() if first is None else first.dtype

    def _chunk_ranges(self, chunk_size: int = DEFAULT_CHUNK) -> Iterator[Tensor]:
        for start in range(0, self.num_values, chunk_size):
            stop = min(start + chunk_size, self.num_values)
            yield torch.arange(start, stop, device=self.device)

    def _log_chunk(self, index: Tensor) -> Tensor:
        return self.log_rows(index)

    def extra_repr(self) -> str:
        return f"num_values={self.num_values}, width={self.width}"


def tensors_token(tensors: Iterable[Tensor]) -> tuple:
    """``(data_ptr, version, dtype, device)`` per tensor: equal tokens mean unchanged tensors.

    The one place that reads torch's private ``Tensor._version``: no public API detects an in-place
    update, and torch bumps the counter on every one (an optimiser step, ``copy_``,
    ``load_state_dict``); the data pointer catches replaced storage, dtype and device ``.to()``.
    """
    return tuple((t.data_ptr(), t._version, t.dtype, t.device) for t in tensors)


def fill_positive_(weight: Tensor, mean: float, noise: float, shift: slice | None) -> None:
    """In place, ``weight = mean·noise·ε`` plus ``mean`` on the columns ``shift`` selects (all
    when None), ``ε ~ N(0, 1)``: :meth:`Table.init_positive_` of tables stored as one tensor."""
    with torch.no_grad():
        weight.copy_(mean * noise * torch.randn_like(weight))
        if shift is None:
            weight += mean
        else:
            weight[:, shift] += mean
