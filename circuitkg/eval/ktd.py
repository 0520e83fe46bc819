"""Kernel triple distance (KTD, paper 004): how far sampled triples are from held-out ones.

KTD is the squared maximum mean discrepancy between the distribution of sampled triples ``P`` and
of held-out (test) triples ``Q``, measured through fixed triple features ``ψ``, like the kernel
inception distance of images (Bińkowski et al. 2018) with a KGE model in place of Inception:

* features: a trained ComplEx (score form) gives, for ``(s, r, o)``, the four real products of its
  score, ``ψ = [s_re r_re o_re, s_re r_im o_im, s_im r_re o_im, s_im r_im o_re] ∈ R^{4K}``
  (``φ = Σ ψ_1 + ψ_2 + ψ_3 - ψ_4``), L2-normalised;
* kernel: ``k(x, y) = (xᵀy + 1)³``;
* estimator: the unbiased ``MMD²_u = 1/(m(m-1)) Σ_{i≠j} k(x_i, x_j) + 1/(n(n-1)) Σ_{i≠j} k(y_i, y_j)
  - 2/(mn) Σ_{i,j} k(x_i, y_j)`` (Gretton et al. 2012, eq. 3); it can be slightly negative when
  ``P = Q``;
* subsets: paper 004 (slides) gives no subset scheme, so, as KID does, KTD here is the mean of
  ``MMD²_u`` over ``num_subsets = 10`` random subsets of ``subset_size = 10,000`` triples drawn
  without replacement from each set (all of a set when it is smaller), with its standard deviation.

Uniformly random triples (:func:`uniform_triples`) give the reference row of paper 004's table
(FB15k-237: uniform .589, ComplEx² PLL .326, MLE .102). Cost per subset: ``O((m + n)² d)`` for
``d = 4K`` features, in blocks of at most ``2^23`` kernel entries (float64).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor

from circuitkg.compilers.complex import ComplEx

__all__ = [
    "KernelDistance",
    "complex_triple_features",
    "kernel_triple_distance",
    "mmd2_unbiased",
    "polynomial_kernel",
    "uniform_triples",
]

_BLOCK_ENTRIES = 1 << 23


@dataclass(frozen=True)
class KernelDistance:
    """Mean and standard deviation of ``MMD²_u`` over ``num_subsets`` subsets."""

    mean: float
    std: float
    num_subsets: int
    subset_size: int


def complex_triple_features(model: ComplEx, triples: Tensor) -> Tensor:
    """L2-normalised ``ψ(s, r, o)`` of shape ``(N, 4K)`` (float64) from ComplEx's ``[Re | Im]`` tables."""
    if not isinstance(model, ComplEx) or model.form == "monotone":
        raise TypeError(
            "KTD features need a ComplEx model with [Re | Im] tables (score or squared form), got "
            f"{type(model).__name__} in form {getattr(model, 'form', '?')!r}"
        )
    k = model.rank
    triples = torch.as_tensor(triples, device=model.entity.device)
    with torch.no_grad():
        s = model.entity.rows(triples[:, 0]).double()
        r = model.relation.rows(triples[:, 1]).double()
        o = model.entity.rows(triples[:, 2]).double()
    (s_re, s_im), (r_re, r_im), (o_re, o_im) = (t.split(k, dim=1) for t in (s, r, o))
    psi = torch.cat(
        [s_re * r_re * o_re, s_re * r_im * o_im, s_im * r_re * o_im, s_im * r_im * o_re], 1
    )
    return psi / psi.norm(dim=1, keepdim=True).clamp_min(torch.finfo(psi.dtype).tiny)


def polynomial_kernel(x: Tensor, y: Tensor, degree: int = 3, offset: float = 1.0) -> Tensor:
    """``(x yᵀ + offset)^degree``, shape ``(len(x), len(y))``."""
    return (x @ y.T + offset) ** degree


def _kernel_sum(x: Tensor, y: Tensor, degree: int, offset: float) -> Tensor:
    """``Σ_{i,j} k(x_i, y_j)`` in row blocks of at most ``_BLOCK_ENTRIES`` kernel entries."""
    rows = max(1, _BLOCK_ENTRIES // max(1, y.shape[0]))
    return sum(
        polynomial_kernel(x[i : i + rows], y, degree, offset).sum()
        for i in range(0, x.shape[0], rows)
    )


def mmd2_unbiased(x: Tensor, y: Tensor, degree: int = 3, offset: float = 1.0) -> float:
    """The unbiased estimate of ``MMD²(P, Q)`` from ``x ~ P`` (m, d) and ``y ~ Q`` (n, d), float64.

    Kernel ``(xᵀy + offset)^degree``; the diagonals ``k(x_i, x_i)`` are left out of the within-set
    sums. Needs ``m, n ≥ 2``.
    """
    x, y = x.double(), y.double()
    m, n = x.shape[0], y.shape[0]
    if m < 2 or n < 2:
        raise ValueError(f"the unbiased MMD needs at least 2 samples per set, got {m} and {n}")
    xx = _kernel_sum(x, x, degree, offset) - (((x * x).sum(1) + offset) ** degree).sum()
    yy = _kernel_sum(y, y, degree, offset) - (((y * y).sum(1) + offset) ** degree).sum()
    xy = _kernel_sum(x, y, degree, offset)
    return float(xx / (m * (m - 1)) + yy / (n * (n - 1)) - 2 * xy / (m * n))


def uniform_triples(
    num_entities: int, num_relations: int, n: int, generator: torch.Generator | None = None
) -> Tensor:
    """``n`` triples with ``s, o`` uniform over entities and ``r`` uniform over relations."""
    s = torch.randint(num_entities, (n,), generator=generator)
    r = torch.randint(num_relations, (n,), generator=generator)
    o = torch.randint(num_entities, (n,), generator=generator)
    return torch.stack([s, r, o], dim=1)


def kernel_triple_distance(
    model: ComplEx,
    samples: Tensor,
    reference: Tensor,
    num_subsets: int = 10,
    subset_size: int = 10_000,
    generator: torch.Generator | None = None,
) -> KernelDistance:
    """KTD between ``samples`` and ``reference`` triples (``(N, 3)``, ``s, r, o`` ids).

    ``model`` is the trained feature extractor (ComplEx, score form in paper 004). Each subset
    draws ``min(subset_size, N)`` triples without replacement from each set.
    """
    x_all = complex_triple_features(model, samples)
    y_all = complex_triple_features(model, reference)
    values = []
    for _ in range(num_subsets):
        ix = torch.randperm(x_all.shape[0], generator=generator)[:subset_size]
        iy = torch.randperm(y_all.shape[0], generator=generator)[:subset_size]
        values.append(mmd2_unbiased(x_all[ix.to(x_all.device)], y_all[iy.to(y_all.device)]))
    v = torch.tensor(values, dtype=torch.float64)
    std = float(v.std()) if num_subsets > 1 else 0.0
    return KernelDistance(float(v.mean()), std, num_subsets, min(subset_size, x_all.shape[0]))
