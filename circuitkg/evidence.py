"""Evidence validation: one check of what a query is given, shared by every query surface.

A query names values of a circuit's variables: integer ids (a scalar, a list or a 1-D tensor of
``B`` rows), names (with a bound vocabulary, :mod:`circuitkg.executor.names`), or, where a query
sums over values, float weight rows ``(B, |X|)``. The compiled circuit, the schema-constrained
circuit, the samplers and the symbolic ``condition`` all read their evidence through
:func:`validated`, so a wrong variable, a bad dtype or shape, an out-of-domain id or a row count
that does not match the batch is the same :class:`~circuitkg.errors.EvidenceError` everywhere.
Cost: one pass over each given tensor (the range check).

This module imports only torch, so every layer of the package can use it.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from typing import Any

import torch
from torch import Tensor

from circuitkg.errors import EvidenceError

#: ``resolve(var, value) -> value``: names to ids (the identity where no vocabulary is bound)
Resolver = Callable[[str, Any], Any]


def check_variables(
    given: Sequence[str], variables: Sequence[str], target: str | None = None
) -> None:
    """Every given variable (and the target) is one of ``variables``; the target is not given."""
    unknown = set(given) - set(variables)
    if target is not None:
        if target not in variables:
            unknown.add(target)
        if target in given:
            raise EvidenceError(f"variable {target!r} is both the target and given")
    if unknown:
        raise EvidenceError(
            f"unknown variables {sorted(unknown)}; the circuit has {list(variables)}"
        )


def validated(
    given: Mapping[str, Any],
    variables: Sequence[str],
    domains: Mapping[str, int],
    device: torch.device,
    *,
    target: str | None = None,
    weights_dtype: torch.dtype | None = None,
    resolve: Resolver | None = None,
    batch: int | None = None,
    min_batch: int = 1,
    broadcast: bool = True,
) -> tuple[dict[str, Tensor | None], int]:
    """Per variable (in ``variables`` order), ``None`` (not given), long ids ``(B,)`` or, when
    ``weights_dtype`` is set, float weight rows ``(B, |X|)``; and the batch size ``B``.

    The batch is ``batch`` when given, else the largest row count (at least ``min_batch``).
    One-row evidence is broadcast to it (kept one row with ``broadcast=False``); any other count is
    an error. Without ``weights_dtype`` a float tensor is an error.
    """
    check_variables(list(given), variables, target)
    evidence: dict[str, Tensor | None] = {}
    for var in variables:
        value = given.get(var)
        if value is not None and resolve is not None:
            value = resolve(var, value)
        evidence[var] = (
            None if value is None else _value(var, value, domains[var], device, weights_dtype)
        )
    rows = {v.shape[0] for v in evidence.values() if v is not None}
    size = batch if batch is not None else max(rows | {min_batch})
    for var, value in evidence.items():
        if value is None or value.shape[0] == size:
            continue
        if value.shape[0] != 1:
            raise EvidenceError(
                f"variable {var!r} has {value.shape[0]} rows but the batch has {size}"
            )
        if broadcast:
            evidence[var] = value.expand((size, *value.shape[1:]))
    return evidence, size


def _value(
    var: str, value: Any, size: int, device: torch.device, weights_dtype: torch.dtype | None
) -> Tensor:
    if not isinstance(value, Tensor) or value.device != device:
        try:
            value = torch.as_tensor(value, device=device)
        except (TypeError, ValueError, RuntimeError) as err:
            raise EvidenceError(
                f"values of variable {var!r} must be integer ids, got {value!r} ({err})"
            ) from None
    if value.is_floating_point():
        if weights_dtype is None:
            raise EvidenceError(
                f"values of variable {var!r} must be integer ids here, got {value.dtype} "
                "(weight rows sum over values in the queries that take them)"
            )
        return _weights(var, value, size, weights_dtype)
    if value.dtype == torch.bool or value.is_complex():
        raise EvidenceError(
            f"values of variable {var!r} must be integer ids (or float weight rows), got {value.dtype}"
        )
    if value.ndim > 1:
        raise EvidenceError(
            f"ids of variable {var!r} must be a scalar or a 1-D tensor (B,), got shape "
            f"{tuple(value.shape)}; float weight rows (B, {size}) sum over values instead"
        )
    idx = value if value.dtype == torch.long and value.ndim == 1 else value.long().reshape(-1)
    if idx.numel() and not 0 <= idx.min().item() <= idx.max().item() < size:
        bad = idx[(idx < 0) | (idx >= size)][0].item()
        raise EvidenceError(f"value {bad} of variable {var!r} is outside its domain [0, {size})")
    return idx


def _weights(var: str, value: Tensor, size: int, dtype: torch.dtype) -> Tensor:
    weights = value.reshape(1, -1) if value.ndim == 1 else value
    if weights.ndim != 2 or weights.shape[1] != size:
        raise EvidenceError(
            f"weights for variable {var!r} must have shape (B, {size}), got {tuple(value.shape)}"
        )
    low, high = torch.aminmax(weights)  # one pass; NaN fails both comparisons
    if not bool((low >= 0) & (high < torch.inf)):
        raise EvidenceError(f"weights for variable {var!r} must be finite and non-negative")
    return weights.to(dtype)


def require_mass(evidence: Mapping[str, Tensor | None], target: str) -> None:
    """A conditional on weighted evidence needs mass in every row: an all-zero weight row of a
    given variable raises :class:`EvidenceError` (it gave a NaN row: 0 / 0)."""
    for var, value in evidence.items():
        if var == target or value is None or not value.is_floating_point() or not value.numel():
            continue
        empty = value.amax(dim=1) == 0
        if bool(empty.any()):
            row = int(empty.nonzero()[0, 0])
            raise EvidenceError(
                f"weights for variable {var!r}: row {row} is all zero (evidence of mass 0, "
                "which a conditional cannot condition on)"
            )
