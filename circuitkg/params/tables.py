"""Input-layer parameterisations: objects that produce a table ``T`` of shape ``(num_values, width)``.

An input layer over a categorical variable ``X`` maps a value ``x`` to the row ``T[x]``. How ``T`` is
obtained is the layer's *table*: a free table, ``exp`` of a log-table, a view of another table's
columns, constants, 0/1 indicators, Kronecker products of rows, or (in later modules) an encoder.
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
import math
from collections.abc import Hashable, Iterable, Iterator, Sequence

import torch
from torch import Tensor, nn

from circuitkg.errors import UnsupportedHookError
from circuitkg.numerics import SAFE_RANGE, Scaled, abs_max, is_unscaled
from circuitkg.params.gather import gather

DEFAULT_CHUNK = 16384
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

        Weighted Grams group the values by identical weight columns (e.g. the entity classes of a
        0/1 schema mask): one Gram per group, ``O(|X| K K')`` in all, then a ``(B x C)`` mix of the
        ``C`` group Grams. With many distinct columns it falls back to one weighted product.
        """
        other = self if other is None else other
        if weights is None:
            return _robust(lambda ma, mb: _gram_chunks(self, other, ma, mb, None), self, other)
        classes, inverse = unique_rows(weights.detach().T)
        if classes.shape[0] * 4 > self.num_values:
            return _robust(lambda ma, mb: _gram_chunks(self, other, ma, mb, weights.T), self, other)
        per_class = _robust(
            lambda ma, mb: _class_grams(self, other, ma, mb, inverse, classes.shape[0]), self, other
        )
        top = per_class.log_scale.max()  # classes were normalised one by one: align them first
        aligned = per_class.value * torch.exp(per_class.log_scale - top).reshape(-1, 1, 1)
        # classes.T holds the weight of each class in each distinct weight row: mix those only
        rows, row_of = unique_rows(weights)
        mix = (
            rows
            @ _class_indicator(inverse, classes.shape[0], rows)
            / torch.bincount(inverse).to(rows.dtype)
        )
        value = torch.einsum("bc,cij->bij", mix, aligned)[row_of]
        return Scaled(value, top.expand(value.shape[0])).normalised()

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

        return _robust(reduce, self)

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
            top_w, top_t = _finite_max(lw, dim=1), _finite_max(log_t, dim=0)
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
        value = _contract_chunks(self, coef.value, None)
        if is_unscaled() or _unscaled_ok(value):
            return Scaled(value, coef.log_scale)
        m = self.abs_max()
        return Scaled(_contract_chunks(self, coef.value, m), coef.log_scale + torch.log(m))

    def log_contract(self, log_coef: Tensor) -> Tensor:
        """``log (exp(log_coef) @ Tᵀ)`` of shape ``(B, V)`` for non-negative tables."""
        top = _finite_max(log_coef, dim=1)
        coef = torch.exp(log_coef - top)
        out = []
        for idx in self._chunk_ranges():
            log_t = self._log_chunk(idx)
            t_top = _finite_max(log_t, dim=None)
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


def _contract_chunks(table: Table, coef: Tensor, scale: Tensor | None) -> Tensor:
    parts = [coef @ (c if scale is None else c / scale).T for c in table.chunks()]
    return parts[0] if len(parts) == 1 else torch.cat(parts, dim=1)


def _unscaled_ok(value: Tensor) -> bool:
    """A reduction computed on unscaled tables can be kept: its largest entry is finite and above
    ``SAFE_RANGE[0]`` (below it, float32 underflow could have zeroed smaller entries)."""
    low, high = (v.item() for v in torch.aminmax(value.detach()))
    return math.isfinite(low) and math.isfinite(high) and max(-low, high) > SAFE_RANGE[0]


def _robust(reduce, *tables: Table) -> Scaled:
    """Run a reduction over tables unscaled; redo it on prescaled tables if needed.

    ``reduce(m_1, ..., m_t)`` computes a sum over ``x`` of products of ``T_i[x] / m_i``, where
    ``m_i = None`` means no division. The fast path (all ``None``) costs no pass over the tables
    beyond the reduction itself; it is kept unless its result overflowed or its largest entry lies
    below ``SAFE_RANGE[0]`` (where float32 underflow could bite), in which case each table is
    divided by its largest entry first.
    """
    value = reduce(*[None] * len(tables))
    if _unscaled_ok(value):
        zeros = torch.zeros(value.shape[0], dtype=value.dtype, device=value.device)
        return Scaled(value, zeros).normalised()
    scales = [t.abs_max() for t in tables]
    value = reduce(*scales)
    log_scale = sum(torch.log(m) for m in scales).expand(value.shape[0])
    return Scaled(value, log_scale).normalised()


def _class_indicator(inverse: Tensor, num_classes: int, like: Tensor) -> Tensor:
    onehot = torch.zeros(inverse.numel(), num_classes, dtype=like.dtype, device=like.device)
    onehot[torch.arange(inverse.numel(), device=like.device), inverse] = 1.0
    return onehot


def _class_grams(
    a: Table, b: Table, ma: Tensor | None, mb: Tensor | None, inverse: Tensor, num_classes: int
) -> Tensor:
    """``(C, K, K')``: ``Σ_{x in class c} (A[x]/ma)ᵀ (B[x]/mb)``, ``O(|X| K K')`` in all."""
    order = torch.argsort(inverse)
    counts = torch.bincount(inverse, minlength=num_classes).tolist()
    grams = []
    for index in torch.split(order, counts):
        ra, rb = _divided(a.rows(index), ma), _divided(b.rows(index), mb)
        grams.append(ra.T @ rb)
    return torch.stack(grams)


def _divided(x: Tensor, m: Tensor | None) -> Tensor:
    return x if m is None else x / m


def _gram_chunks(
    a: Table, b: Table, ma: Tensor | None, mb: Tensor | None, weights: Tensor | None
) -> Tensor:
    """``Σ_x w[x, c] (A[x]/ma)ᵀ (B[x]/mb)`` per column ``c`` of ``weights`` (``(X, C)``; None: ones).

    Chunked over rows without autograd (a computed table is never materialised whole); in one piece
    with it, where autograd keeps every chunk anyway and a split's backward would copy the whole
    gradient back together (a third of a CP step at 100k entities).
    """
    size = a.num_values if torch.is_grad_enabled() else DEFAULT_CHUNK
    total, start = None, 0
    for ca, cb in zip(a.chunks(size), b.chunks(size), strict=True):
        ca, cb = _divided(ca, ma), _divided(cb, mb)
        if weights is None:
            part = (_SelfGram.apply(ca) if a is b else ca.T @ cb).unsqueeze(0)
        else:
            w = weights[start : start + ca.shape[0]]
            part = torch.einsum("xc,xi,xj->cij", w, ca, cb)
        total = part if total is None else total + part
        start += ca.shape[0]
    return total


def unique_rows(x: Tensor) -> tuple[Tensor, Tensor]:
    """The distinct rows of a 2-D tensor and the index of each row's distinct row (``inverse``).

    ``torch.unique(x, dim=0)`` sorts whole rows and took 85 ms per constrained PLL step (2034 x 1024
    weights); here rows are keyed by one random projection, grouped by key, and every row is checked
    against its group's first row, ``O(size of x)``. Distinct rows that collide on a key are caught
    by the check and fall back to ``torch.unique``. Equal rows can get keys that differ in the last
    bit (a matrix-vector product need not sum every row in the same order), so the groups' first
    rows, few, are merged with ``torch.unique`` at the end; the distinct rows come sorted.
    """
    if x.numel() == 0:
        return torch.unique(x, dim=0, return_inverse=True)
    generator = torch.Generator().manual_seed(0)
    projection = torch.rand(x.shape[1], generator=generator, dtype=x.dtype).to(x.device)
    _, inverse = torch.unique(x @ projection, return_inverse=True)
    count = int(inverse.max()) + 1
    positions = torch.arange(x.shape[0], device=x.device)
    first = torch.full((count,), x.shape[0], device=x.device).scatter_reduce(
        0, inverse, positions, "amin"
    )
    distinct = x[first]
    if not torch.equal(distinct[inverse], x):
        return torch.unique(x, dim=0, return_inverse=True)
    merged, of_group = torch.unique(distinct, dim=0, return_inverse=True)
    return merged, of_group[inverse]


class _SelfGram(torch.autograd.Function):
    """``Xᵀ X`` whose backward is one product, ``X (g + gᵀ)``, where autograd's ``mm`` takes two
    (``X g`` and ``X gᵀ``, each ``O(V K²)``): the backward of a squared model's ``log Z`` halves."""

    @staticmethod
    def forward(ctx, x: Tensor) -> Tensor:
        ctx.save_for_backward(x)
        return x.T @ x

    @staticmethod
    def backward(ctx, grad: Tensor) -> Tensor:
        (x,) = ctx.saved_tensors
        return x @ (grad + grad.T)


def _finite_max(x: Tensor, dim: int | None) -> Tensor:
    """Max over ``dim`` (all if None), detached, with -inf rows mapped to 0 so shifts stay finite."""
    x = x.detach()
    m = x.amax() if dim is None else x.amax(dim=dim, keepdim=True)
    return torch.where(torch.isfinite(m), m, torch.zeros_like(m))


class FreeTable(Table):
    """An unrestricted learned table ``T = θ``, initialised ``N(0, init_std²)``."""

    supports_positive_init = True

    def __init__(self, num_values: int, width: int, init_std: float = 1.0) -> None:
        super().__init__(num_values, width)
        self.weight = nn.Parameter(torch.randn(num_values, width) * init_std)

    def rows(self, index: Tensor) -> Tensor:
        return gather(self.weight, index)

    def chunks(self, chunk_size: int = DEFAULT_CHUNK) -> Iterator[Tensor]:
        if self.num_values <= chunk_size:
            yield self.weight  # no split: its backward would copy the whole gradient
        else:
            yield from torch.split(self.weight, chunk_size)

    def abs_max(self) -> Tensor:
        norm = abs_max(self.weight.detach())
        return norm.clamp_min(torch.finfo(self.weight.dtype).tiny)

    def init_positive_(self, mean: float, noise: float, shift: slice | None = None) -> None:
        fill_positive_(self.weight, mean, noise, shift)

    def kronecker_factor(self, width: int) -> FreeTable:
        """Entries of std ``√σ`` for this table's std ``σ`` (1 for a single entry)."""
        std = float(self.weight.detach().std()) if self.weight.numel() > 1 else 1.0
        return FreeTable(self.num_values, width, init_std=math.sqrt(std))


class PositiveTable(Table):
    """A non-negative learned table ``T = exp(θ)``, kept in log space (``log_rows`` is ``θ``)."""

    nonnegative = True

    def __init__(self, num_values: int, width: int, init_mean: float = 0.0, init_std: float = 0.1):
        super().__init__(num_values, width)
        self.log_weight = nn.Parameter(init_mean + torch.randn(num_values, width) * init_std)

    def rows(self, index: Tensor) -> Tensor:
        return gather(self.log_weight, index, torch.exp)

    def log_rows(self, index: Tensor) -> Tensor:
        return gather(self.log_weight, index)

    def abs_max(self) -> Tensor:
        return torch.exp(self.log_weight.detach().amax())

    def chunks(self, chunk_size: int = DEFAULT_CHUNK) -> Iterator[Tensor]:
        for block in torch.split(self.log_weight, chunk_size):
            yield torch.exp(block)

    def _log_chunk(self, index: Tensor) -> Tensor:
        return self.log_weight[index]

    def kronecker_factor(self, width: int) -> PositiveTable:
        """``exp(θ')`` with half the mean and ``1/√2`` the std of this table's ``θ``, so that
        ``θ' ⊕ θ'`` has ``θ``'s mean and std (std 0.1 for a single entry)."""
        theta = self.log_weight.detach()
        mean = float(theta.mean())
        std = float(theta.std()) if theta.numel() > 1 else 0.1
        return PositiveTable(
            self.num_values, width, init_mean=mean / 2, init_std=std / math.sqrt(2)
        )


class ConstantTable(Table):
    """A fixed table (a buffer): constants, 0/1 indicators, or the rows of a conditioned layer."""

    def __init__(self, values: Tensor) -> None:
        values = torch.as_tensor(values)
        if values.ndim != 2:
            raise ValueError(
                f"a constant table must be 2-D (values x units), got shape {tuple(values.shape)}"
            )
        super().__init__(values.shape[0], values.shape[1])
        self.register_buffer("values", values.clone())
        self.nonnegative = bool((values >= 0).all())

    def rows(self, index: Tensor) -> Tensor:
        return self.values[index]

    def chunks(self, chunk_size: int = DEFAULT_CHUNK) -> Iterator[Tensor]:
        yield from torch.split(self.values, chunk_size)


class IndicatorTable(ConstantTable):
    """A 0/1 table: ``T[x, k] = 1`` iff value ``x`` is allowed by unit ``k`` (constraint circuits)."""

    def __init__(self, mask: Tensor) -> None:
        super().__init__(torch.as_tensor(mask).to(torch.get_default_dtype()))
        if not bool(((self.values == 0) | (self.values == 1)).all()):
            raise ValueError("an indicator table holds only 0 and 1")


class ColumnView(Table):
    """``T[x] = base[x][columns]``: several layers reading one parameter table.

    ComplEx reads ``[Re; Im]`` in four arrangements; a view costs nothing to store, and its Gram
    matrix and contractions are gathered from / folded into the base table's, so the work is done
    at the base width (``Gram`` once per base table, ``contract`` at ``K_base``).
    """

    def __init__(self, base: Table, columns: Tensor | list[int]) -> None:
        columns = torch.as_tensor(columns, dtype=torch.long)
        if columns.numel() and (columns.min() < 0 or columns.max() >= base.width):
            raise ValueError(f"column view indices must lie in [0, {base.width})")
        super().__init__(base.num_values, len(columns))
        self.base = base
        self.register_buffer("columns", columns)
        self.nonnegative = base.nonnegative
        self.runs: Runs = _contiguous_runs(columns.tolist())

    def _select(self, x: Tensor) -> Tensor:
        # contiguous runs (ComplEx: four blocks) are copied block by block and their gradients added
        # back block by block: cheaper than a gather and its scatter, or a cat of slices whose
        # backward fills a zero tensor of the base width per slice
        if len(self.runs) <= MAX_RUNS:
            return select_runs(x, self.runs)
        return x.index_select(-1, self.columns)

    def rows(self, index: Tensor) -> Tensor:
        return self._select(self.base.rows(index))

    def log_rows(self, index: Tensor) -> Tensor:
        return self._select(self.base.log_rows(index))

    def chunks(self, chunk_size: int = DEFAULT_CHUNK) -> Iterator[Tensor]:
        for c in self.base.chunks(chunk_size):
            yield self._select(c)

    def abs_max(self) -> Tensor:
        return self.base.abs_max()

    def as_view(self) -> tuple[Table, Tensor, Runs]:
        return self.base, self.columns, self.runs

    def parameter_table(self) -> Table:
        return self.base.parameter_table()

    def gram(self, other: Table | None = None, weights: Tensor | None = None) -> Scaled:
        other = self if other is None else other
        if base_of(other) is not self.base:
            return super().gram(other, weights)
        return view_gram(self.base.gram(weights=weights), self, other)

    def weighted_sum(self, weights: Tensor) -> Scaled:
        return self.base.weighted_sum(weights).map(lambda v: v[:, self.columns])

    def log_weighted_sum(self, log_weights: Tensor) -> Tensor:
        return self.base.log_weighted_sum(log_weights)[:, self.columns]

    def fold(self, coef: Tensor, dim: int = -1) -> Tensor:
        """Coefficients on the view's columns (axis ``dim``) as coefficients on the base's:
        ``coef · T[x]ᵀ = fold(coef) · base[x]ᵀ``, summing columns that read one base column."""
        shape = list(coef.shape)
        shape[dim] = self.base.width
        return coef.new_zeros(shape).index_add_(dim, self.columns, coef)

    def contract(self, coef: Scaled) -> Scaled:
        return self.base.contract(Scaled(self.fold(coef.value, dim=1), coef.log_scale))


class _SelectRuns(torch.autograd.Function):
    """``cat([x[..., a:b] for a, b in runs], -1)`` whose backward adds the blocks into one zero tensor."""

    @staticmethod
    def forward(ctx, x: Tensor, runs: list[tuple[int, int]]) -> Tensor:
        ctx.runs, ctx.width = runs, x.shape[-1]
        return _cat_runs(x, runs)

    @staticmethod
    def backward(ctx, grad: Tensor):
        out = grad.new_zeros((*grad.shape[:-1], ctx.width))
        position = 0
        for a, b in ctx.runs:
            out[..., a:b] += grad[..., position : position + b - a]
            position += b - a
        return out, None


def select_runs(x: Tensor, runs: Sequence[tuple[int, int]]) -> Tensor:
    """``x[..., columns]`` for columns given as contiguous ``(start, stop)`` runs: one copy per run,
    and a backward pass that adds each block into one zero tensor."""
    if len(runs) == 1 and runs[0] == (0, x.shape[-1]):
        return x
    if not (torch.is_grad_enabled() and x.requires_grad):
        return _cat_runs(x, runs)
    return _SelectRuns.apply(x, list(runs))


def _cat_runs(x: Tensor, runs: Sequence[tuple[int, int]]) -> Tensor:
    return torch.cat([x[..., a:b] for a, b in runs], dim=-1)


def view_gram(base_gram: Scaled, a: Table, b: Table) -> Scaled:
    """The Gram of ``a`` and ``b`` (each a view of one base table, or the base itself) from the
    base's Gram ``(B, W, W)``: its rows at ``a``'s columns, its columns at ``b``'s.

    Views of at most :data:`MAX_RUNS` contiguous runs are copied block by block and their gradient
    added back block by block; others are gathered (a scatter in the backward pass).
    """
    (_, cols_a, runs_a), (_, cols_b, runs_b) = a.as_view(), b.as_view()
    if max(len(runs_a), len(runs_b)) <= MAX_RUNS:
        return base_gram.map(
            lambda v: select_runs(select_runs(v, runs_b).transpose(-1, -2), runs_a).transpose(
                -1, -2
            )
        )
    return base_gram.map(lambda v: v[:, cols_a][:, :, cols_b])


def _contiguous_runs(columns: list[int]) -> Runs:
    """``[3, 4, 5, 0, 1]`` -> ``((3, 6), (0, 2))``."""
    runs: list[tuple[int, int]] = []
    for c in columns:
        if runs and runs[-1][1] == c:
            runs[-1] = (runs[-1][0], c + 1)
        else:
            runs.append((c, c + 1))
    return tuple(runs)


def base_of(table: Table) -> Table:
    """The table a view reads (the table itself otherwise): ``table.as_view()[0]``."""
    return table.as_view()[0]


class FeatureTable(Table):
    """``T[x] = [base[x, c_1]^{p_1}, ..., base[x, c_K]^{p_K}]`` with powers ``p ∈ {0, 1, 2}``.

    The polynomial features that write TransE's ``-||s + r - o||²`` as a circuit.
    """

    def __init__(self, base: Table, columns: list[int], powers: list[int]) -> None:
        if len(columns) != len(powers) or any(p not in (0, 1, 2) for p in powers):
            raise ValueError("FeatureTable needs one power in {0, 1, 2} per column")
        super().__init__(base.num_values, len(columns))
        self.base = base
        self.register_buffer("columns", torch.as_tensor(columns, dtype=torch.long))
        self.register_buffer("powers", torch.as_tensor(powers, dtype=torch.long))

    def parameter_table(self) -> Table:
        return self.base.parameter_table()

    def rows(self, index: Tensor) -> Tensor:
        x = self.base.rows(index)[..., self.columns]
        return torch.where(
            self.powers == 0, torch.ones_like(x), torch.where(self.powers == 1, x, x * x)
        )

    def chunks(self, chunk_size: int = DEFAULT_CHUNK) -> Iterator[Tensor]:
        for c in self.base.chunks(chunk_size):
            x = c[:, self.columns]
            yield torch.where(
                self.powers == 0, torch.ones_like(x), torch.where(self.powers == 1, x, x * x)
            )


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
        return (a.unsqueeze(-1) * b.unsqueeze(-2)).flatten(-2)

    def log_rows(self, index: Tensor) -> Tensor:
        a, b = self.left.log_rows(index), self.right.log_rows(index)
        return (a.unsqueeze(-1) + b.unsqueeze(-2)).flatten(-2)


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
