"""Gram trees and sum trees against brute-force enumeration (chi-square at a fixed seed).

Every test draws 20,000 samples and fails only if the chi-square p-value is below 1e-6, so a
correct sampler fails with probability below 1e-6 per case. Leaves of one or two values make the
trees deep on tiny domains, so the descent itself is what is tested.
"""

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from scipy.stats import chi2

import circuitkg as ckg
from circuitkg.sampling import GramTree, SumTree, ancestral, choose_order, sample, sample_squared
from circuitkg.sampling.categorical import normalise_given
from circuitkg.testing import assert_samples_follow, kge_models

N = 20_000
ALPHA = 1e-6


def _gen(seed: int) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


def _p_value(counts: torch.Tensor, probs: torch.Tensor) -> float:
    """Pearson's test of per-row counts ``(R, n)`` against row distributions ``(R, n)``."""
    stat, dof = 0.0, 0
    for c, p in zip(counts.double(), probs.double(), strict=True):
        assert c[p == 0].sum() == 0, "a draw fell on a value of probability zero"
        expected = p * c.sum()
        keep = expected >= 5
        if keep.sum() < 2:
            continue
        small_c, small_e = c[~keep].sum(), expected[~keep].sum()
        cells_c = torch.cat([c[keep], small_c.reshape(1)]) if small_e > 0 else c[keep]
        cells_e = torch.cat([expected[keep], small_e.reshape(1)]) if small_e > 0 else expected[keep]
        stat += float(((cells_c - cells_e) ** 2 / cells_e).sum())
        dof += cells_c.numel() - 1
    return 1.0 if dof == 0 else float(chi2.sf(stat, dof))


def _counts(rows: torch.Tensor, x: torch.Tensor, num_rows: int, n: int) -> torch.Tensor:
    return torch.bincount(rows * n + x, minlength=num_rows * n).reshape(num_rows, n)


@settings(max_examples=15, deadline=None)
@given(
    st.integers(1, 13),
    st.integers(1, 4),
    st.sampled_from([1, 2, 3, 100]),
    st.integers(0, 2**31 - 1),
)
def test_gram_tree_draws_follow_squared_linear_forms(n, width, leaf_size, seed):
    torch.manual_seed(seed)
    rows = torch.randn(n, width, dtype=torch.float64)
    coef = torch.randn(3, width, dtype=torch.float64)
    tree = GramTree(
        lambda index: rows[index], n, leaf_size, max_entries=50
    )  # leaves built in chunks
    which = torch.arange(3).repeat_interleave(N // 3)
    probs = (coef @ rows.T) ** 2
    probs = probs / probs.sum(dim=1, keepdim=True)
    x = tree.draw(coef[which], _gen(seed % 1000))
    assert bool(((x >= 0) & (x < n)).all())
    assert _p_value(_counts(which, x, 3, n), probs) > ALPHA
    assert torch.allclose(tree.root, rows.T @ rows)


@settings(max_examples=15, deadline=None)
@given(st.integers(1, 13), st.integers(1, 4), st.sampled_from([1, 2, 5]), st.integers(0, 2**31 - 1))
def test_sum_tree_draws_follow_columns(n, width, leaf_size, seed):
    torch.manual_seed(seed)
    log_rows = torch.randn(n, width, dtype=torch.float64) * 2
    log_rows[torch.rand(n, width) < 0.2] = -torch.inf  # zeros in the table
    log_rows[0] = 0.0  # every column has mass
    tree = SumTree(lambda index: log_rows[index], n, leaf_size)
    units = torch.arange(width).repeat_interleave(N // width)
    x = tree.draw(units, _gen(seed % 1000))
    probs = torch.softmax(log_rows.T, dim=1)
    assert _p_value(_counts(units, x, width, n), probs) > ALPHA


@settings(max_examples=10, deadline=None)
@given(kge_models(names=["cp", "complex", "distmult"], forms=["squared"]), st.data())
def test_squared_models_sample_through_deep_trees(model, data):
    """Unconditional, ``given s`` and ``given r`` draws with one-value leaves: every variable goes through a
    Gram tree, the middle one through the virtual index of ``Q = UUᵀ`` when its domain is large."""
    compiled = ckg.compile(model)
    evidence = normalise_given(compiled.variables, compiled.domains, {}, N, compiled.device)
    x = sample_squared(compiled, N, evidence, _gen(1), leaf_size=1)
    assert_samples_follow(compiled, x)
    for var, size in (("s", model.num_entities), ("r", model.num_relations)):
        value = data.draw(st.integers(0, size - 1))
        given = {var: value}
        evidence = normalise_given(compiled.variables, compiled.domains, given, N, compiled.device)
        x = sample_squared(compiled, N, evidence, _gen(2), leaf_size=1)
        assert_samples_follow(compiled, x, given)


@pytest.mark.parametrize("name", ["cp", "complex", "rescal", "tucker"])
def test_squared_pair_mode_models_sample_through_deep_trees(name):
    """Models that are not CP-shaped take their quadratic forms from the pair pass."""
    torch.manual_seed(0)
    model = ckg.models.create_model(name, 7, 3, 2, form="squared").double()
    compiled = ckg.compile(model)
    evidence = normalise_given(compiled.variables, compiled.domains, {}, N, compiled.device)
    assert_samples_follow(compiled, sample_squared(compiled, N, evidence, _gen(3), leaf_size=2))


@settings(max_examples=10, deadline=None)
@given(kge_models(names=["cp", "complex", "tucker"], forms=["monotone"]))
def test_monotone_models_sample_through_deep_sum_trees(model):
    compiled = ckg.compile(model)
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(ancestral, "LEAF_SIZE", 1)  # every input draw descends a tree
        x = sample(compiled, N, generator=_gen(4))
    assert_samples_follow(compiled, x)


def test_the_order_puts_the_small_variable_first():
    """At FB15k-237 sizes the relation comes first: ``p(r)`` once, then one ``Q`` per relation."""
    compiled = ckg.compile(ckg.models.ComplEx(14541, 237, 4))
    order = choose_order(compiled, 10_000, {})
    assert order[0] == "r"
    assert choose_order(compiled, 10_000, {"r": torch.tensor([3])})[0] in ("s", "o")


def test_zero_mass_coefficients_are_an_error():
    from circuitkg.ir import Circuit, InputLayer, ProductLayer, SumLayer
    from circuitkg.params import ConstantTable, FixedWeight

    a = InputLayer("a", ConstantTable(torch.tensor([[1.0], [0.0]])))
    b = InputLayer("b", ConstantTable(torch.tensor([[1.0], [2.0], [3.0]])))
    circuit = Circuit(SumLayer([ProductLayer([a, b])], FixedWeight.ones(1)), ["a", "b"])
    compiled = ckg.compile(circuit, form="squared")
    with pytest.raises(ckg.EvidenceError, match="probability zero"):
        sample(compiled, 10, given={"a": 1})
