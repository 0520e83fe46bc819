"""Drawing from categorical distributions given by log-weights, and validating ``given`` evidence.

:func:`draw` is the one sampling primitive of the package. Row ``u`` of ``log_weights`` (shape
``(U, X)``) is a distribution ``p_u(x) ∝ exp(log_weights[u, x])``; sample ``i`` draws from row
``rows[i]`` by inverting the CDF: ``x_i = #{x : F_u(x) <= U_i}`` with ``F_u`` the cumulative sum
(float64) and one uniform ``U_i ~ U[0, 1)`` per sample. The ``U`` CDFs are laid end to end, shifted
by their row index, in one sorted vector, so a single ``searchsorted`` serves all samples whatever
their row: cost ``O(U X + N log(U X))``, memory ``O(U X)`` (callers bound ``U X`` by chunking).
"""

from __future__ import annotations

import torch
from torch import Tensor

from circuitkg.errors import EvidenceError
from circuitkg.evidence import validated

#: default bound on the entries of the largest intermediate tensor (rows x values) of a sampler
MAX_ENTRIES = 1 << 24


def uniform(n: int, generator: torch.Generator | None, device: torch.device) -> Tensor:
    """``n`` float64 uniforms on ``[0, 1)``, drawn on the generator's device, moved to ``device``."""
    source = generator.device if generator is not None else device
    return torch.rand(n, generator=generator, device=source, dtype=torch.float64).to(device)


def draw(
    log_weights: Tensor, rows: Tensor | None = None, generator: torch.Generator | None = None
) -> Tensor:
    """``x_i ~ p(x) ∝ exp(log_weights[rows[i], x])``; ``rows=None`` draws one sample per row.

    Raises :class:`EvidenceError` when a row that is sampled from has no mass (all ``-inf``): the
    evidence that produced it has probability zero.
    """
    log_weights = log_weights.detach().to(torch.float64)
    num_rows, size = log_weights.shape
    if rows is None:
        rows = torch.arange(num_rows, device=log_weights.device)
    total = torch.logsumexp(log_weights, dim=1, keepdim=True)
    used = torch.zeros(num_rows, dtype=torch.bool, device=rows.device)
    used[rows] = True
    if bool((~torch.isfinite(total[used])).any()):
        raise EvidenceError(
            "cannot sample: the given values have probability zero (or the weights are not finite)"
        )
    cdf = torch.cumsum(torch.exp(log_weights - total.nan_to_num(neginf=0.0)), dim=1)
    cdf = cdf / cdf[:, -1:].clamp_min(torch.finfo(torch.float64).tiny)  # last entry exactly 1
    offsets = torch.arange(num_rows, dtype=torch.float64, device=cdf.device).unsqueeze(1)
    flat = (cdf + offsets).reshape(-1)
    keys = rows.to(torch.float64) + uniform(rows.numel(), generator, rows.device)
    position = torch.searchsorted(flat, keys, right=True)
    return (position - rows * size).clamp_(0, size - 1)


def normalise_given(
    variables: list[str],
    domains: dict[str, int],
    given: dict[str, int | Tensor] | None,
    num_samples: int,
    device: torch.device,
) -> dict[str, Tensor]:
    """Validated evidence (:func:`circuitkg.evidence.validated`): each given variable as a long
    tensor of shape ``(1,)`` (shared by every sample) or ``(N,)`` (one value a sample)."""
    evidence, _ = validated(
        given or {}, variables, domains, device, batch=num_samples, broadcast=False
    )
    return {v: i for v, i in evidence.items() if i is not None}
