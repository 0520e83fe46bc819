"""Kernel triple distance: the unbiased MMD estimator, ComplEx features, and KTD itself."""

import itertools

import pytest
import torch

import circuitkg as ckg
from circuitkg.eval.ktd import (
    complex_triple_features,
    kernel_triple_distance,
    mmd2_unbiased,
    polynomial_kernel,
    uniform_triples,
)


def _brute_mmd2(x, y):
    """Gretton et al. (2012) eq. 3, written as explicit loops."""
    k = lambda a, b: (float(a @ b) + 1.0) ** 3  # noqa: E731
    m, n = len(x), len(y)
    xx = sum(k(x[i], x[j]) for i, j in itertools.product(range(m), repeat=2) if i != j)
    yy = sum(k(y[i], y[j]) for i, j in itertools.product(range(n), repeat=2) if i != j)
    xy = sum(k(x[i], y[j]) for i, j in itertools.product(range(m), range(n)))
    return xx / (m * (m - 1)) + yy / (n * (n - 1)) - 2 * xy / (m * n)


def test_estimator_matches_the_formula():
    gen = torch.Generator().manual_seed(0)
    x = torch.randn(7, 4, generator=gen, dtype=torch.float64)
    y = torch.randn(5, 4, generator=gen, dtype=torch.float64) + 0.5
    assert mmd2_unbiased(x, y) == pytest.approx(_brute_mmd2(x, y), rel=1e-12)
    with pytest.raises(ValueError, match="at least 2"):
        mmd2_unbiased(x[:1], y)


def test_estimator_is_unbiased():
    """Mean over many small replications ≈ the population MMD² (exact on a finite support)."""
    gen = torch.Generator().manual_seed(1)
    points = torch.randn(4, 3, generator=gen, dtype=torch.float64)
    points = points / points.norm(dim=1, keepdim=True)
    gram = polynomial_kernel(points, points)
    p = torch.tensor([0.4, 0.3, 0.2, 0.1], dtype=torch.float64)
    for q in (p, torch.tensor([0.1, 0.2, 0.3, 0.4], dtype=torch.float64)):
        true = float(p @ gram @ p + q @ gram @ q - 2 * p @ gram @ q)
        reps = 2000
        xi = torch.multinomial(p, reps * 5, replacement=True, generator=gen).reshape(reps, 5)
        yi = torch.multinomial(q, reps * 4, replacement=True, generator=gen).reshape(reps, 4)
        est = torch.tensor(
            [mmd2_unbiased(points[a], points[b]) for a, b in zip(xi, yi, strict=True)]
        )
        se = float(est.std()) / reps**0.5
        assert abs(float(est.mean()) - true) < 5 * se


def _model(n=30, m=4, rank=6):
    torch.manual_seed(0)
    return ckg.models.ComplEx(n, m, rank, form="score", init_std=1.0)


def test_features_are_the_four_complex_products():
    model = _model()
    triples = uniform_triples(30, 4, 50, torch.Generator().manual_seed(2))
    k = model.rank
    s, r, o = (
        model.entity.rows(triples[:, 0]),
        model.relation.rows(triples[:, 1]),
        model.entity.rows(triples[:, 2]),
    )
    raw = torch.cat(
        [
            s[:, :k] * r[:, :k] * o[:, :k],
            s[:, :k] * r[:, k:] * o[:, k:],
            s[:, k:] * r[:, :k] * o[:, k:],
            s[:, k:] * r[:, k:] * o[:, :k],
        ],
        dim=1,
    ).double()
    psi = complex_triple_features(model, triples)
    assert psi.shape == (50, 4 * k)
    assert torch.allclose(psi.norm(dim=1), torch.ones(50, dtype=torch.float64))
    assert torch.allclose(psi, raw / raw.norm(dim=1, keepdim=True))
    signs = torch.tensor([1.0, 1.0, 1.0, -1.0], dtype=torch.float64).repeat_interleave(k)
    score = ckg.compile(model).score(triples).double()
    assert torch.allclose((raw * signs).sum(dim=1), score, rtol=1e-5, atol=1e-6)
    with pytest.raises(TypeError, match="ComplEx"):
        complex_triple_features(ckg.models.CP(30, 4, 6), triples)


def test_ktd_is_near_zero_for_one_distribution_and_positive_for_two():
    model = _model()
    gen = torch.Generator().manual_seed(3)
    # a skewed distribution over triples: entities and relations with Zipf-like weights
    w_e = 1.0 / torch.arange(1, 31, dtype=torch.float64)
    w_r = torch.tensor([0.7, 0.1, 0.1, 0.1], dtype=torch.float64)

    def skewed(n):
        s = torch.multinomial(w_e, n, replacement=True, generator=gen)
        r = torch.multinomial(w_r, n, replacement=True, generator=gen)
        o = torch.multinomial(w_e.flip(0), n, replacement=True, generator=gen)
        return torch.stack([s, r, o], dim=1)

    a, b = skewed(3000), skewed(3000)
    same = kernel_triple_distance(model, a, b, num_subsets=5, subset_size=1000, generator=gen)
    other = uniform_triples(30, 4, 3000, gen)
    diff = kernel_triple_distance(model, a, other, num_subsets=5, subset_size=1000, generator=gen)
    assert abs(same.mean) < 3 * same.std + 1e-3
    assert diff.mean > 10 * max(abs(same.mean), same.std)
    assert diff.num_subsets == 5 and diff.subset_size == 1000
