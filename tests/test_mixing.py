"""Nested 0/1 mixtures (``circuitkg.mixing``) against the dense product, values and gradients."""

import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from circuitkg.mixing import could_pay, mixed_rows, nested_sums


@st.composite
def zero_one_mixes(draw):
    """A 0/1 ``(B, C)`` mixture whose rows are partly nested (supersets of earlier rows), partly
    repeated and partly arbitrary, as a schema's signature groups are."""
    parts = draw(st.integers(1, 9))
    rows = []
    for _ in range(draw(st.integers(1, 12))):
        kind = draw(st.sampled_from(["free", "superset", "repeat"]))
        row = [draw(st.booleans()) for _ in range(parts)]
        if kind != "free" and rows:
            earlier = rows[draw(st.integers(0, len(rows) - 1))]
            row = (
                earlier if kind == "repeat" else [a or b for a, b in zip(earlier, row, strict=True)]
            )
        rows.append(row)
    return torch.tensor(rows, dtype=torch.float64)


@settings(max_examples=60, deadline=None)
@given(mix=zero_one_mixes(), width=st.integers(1, 5), seed=st.integers(0, 2**16))
def test_nested_sums_equal_the_dense_product_and_its_gradient(mix, width, seed):
    gen = torch.Generator().manual_seed(seed)
    x = torch.randn(mix.shape[1], width, generator=gen, dtype=torch.float64, requires_grad=True)
    plan = nested_sums(mix)
    assert plan is not None
    upstream = torch.randn(mix.shape[0], width, generator=gen, dtype=torch.float64)
    got = plan.apply(x, mix.shape[0])
    (grad,) = torch.autograd.grad((got * upstream).sum(), x)
    torch.testing.assert_close(got, mix @ x, rtol=1e-12, atol=1e-12)
    torch.testing.assert_close(grad, mix.T @ upstream, rtol=1e-12, atol=1e-12)


def test_a_mixture_with_other_weights_has_no_nested_plan():
    assert nested_sums(torch.tensor([[1.0, 0.5], [0.0, 1.0]])) is None


def test_nested_rows_cost_one_addition_per_new_part():
    # each row a superset of the previous one: 4 parts added once each, plus one parent per row
    mix = torch.tril(torch.ones(4, 4))
    plan = nested_sums(mix)
    assert plan.parents == (-1, 0, 1, 2) and plan.copies == ()
    assert plan.additions == 4 + 4


def test_repeated_rows_are_made_once_and_copied():
    mix = torch.tensor([[1.0, 0.0], [1.0, 1.0], [1.0, 0.0]])
    plan = nested_sums(mix)
    assert plan.rows == (0, 1) and plan.copies == ((2, 0),)


def test_mixed_rows_takes_the_plan_only_where_it_pays():
    # 64 rows, each a superset of the one before: 64 additions against 64 x 64 dense rows
    mix = torch.tril(torch.ones(64, 64, dtype=torch.float64))
    plan = nested_sums(mix)
    assert plan.pays(64, 64, width=100_000) and not plan.pays(64, 64, width=4)
    for width in (4, 100_000):
        x = torch.randn(64, width, dtype=torch.float64)
        torch.testing.assert_close(mixed_rows(mix, x, plan), mix @ x)


@settings(max_examples=60, deadline=None)
@given(mix=zero_one_mixes(), width=st.sampled_from([1, 16, 256, 4096, 1 << 16, 1 << 20]))
def test_could_pay_is_a_lower_bound_of_every_plans_cost(mix, width):
    # the query skips building a plan where could_pay is false: no plan may pay there
    plan = nested_sums(mix)
    if plan.pays(mix.shape[0], mix.shape[1], width):
        assert could_pay(mix.shape[1], width)


def test_could_pay_is_tight_for_a_mixture_of_copies():
    # 100 equal rows of one part: one step and 99 copies, close to the bound of one per row
    mix = torch.zeros(100, 9, dtype=torch.float64)
    mix[:, 0] = 1
    plan = nested_sums(mix)
    assert plan.additions == 101 and plan.pays(100, 9, width=1 << 16)
    assert could_pay(9, 1 << 16)
