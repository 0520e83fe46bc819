"""Batch normalisation over whole tables (paper 002's BN) and the batch-normalised KD models."""

import pytest
import torch
import torch.nn.functional as F
from circuitkg.compilers.kronecker import BatchNormDistMult
from hypothesis import given, settings
from hypothesis import strategies as st

import circuitkg as ckg
from circuitkg.errors import FormError
from circuitkg.params import FreeTable, KroneckerTable
from circuitkg.params.kronecker import BatchNormTable
from circuitkg.testing import (
    assert_conditionals_consistent,
    assert_matches_interpreter,
    assert_normalised,
)

FORMS = ("free", "two", "square", "ones-left", "ones-right")


def make_base(form: str, n: int, a: int, b: int, seed: int):
    """A base table and a function giving its rows the slow way (``torch.kron`` row by row)."""
    torch.manual_seed(seed)
    if form == "free":
        t = FreeTable(n, a * b).double()
        return t, lambda: t.weight
    left, right = FreeTable(n, a).double(), FreeTable(n, b).double()

    def kron(f, g):
        return lambda: torch.stack([torch.kron(f(x), g(x)) for x in range(n)])

    def row(table):
        return lambda x: table.weight[x]

    def ones(width):
        return lambda x: torch.ones(width, dtype=torch.float64)

    if form == "two":
        return KroneckerTable(left, right), kron(row(left), row(right))
    if form == "square":
        return KroneckerTable.square(left), kron(row(left), row(left))
    if form == "ones-left":
        return KroneckerTable.broadcast(right, a), kron(ones(a), row(right))
    return KroneckerTable.broadcast(left, b, side="right"), kron(row(left), ones(b))


def randomise_affine(bn: BatchNormTable) -> None:
    with torch.no_grad():
        bn.weight.normal_()
        bn.bias.normal_()


@settings(max_examples=40, deadline=None)
@given(
    st.sampled_from(FORMS),
    st.integers(2, 9),
    st.integers(1, 4),
    st.integers(1, 4),
    st.integers(1, 5),
    st.integers(0, 2**16),
)
def test_table_is_batch_norm_of_the_reconstructed_rows(form, n, a, b, batch, seed):
    base, slow = make_base(form, n, a, b, seed)
    bn = BatchNormTable(base)
    randomise_affine(bn)
    expected = F.batch_norm(slow(), None, None, bn.weight, bn.bias, training=True, eps=bn.eps)
    torch.testing.assert_close(bn.full(), expected)
    # the table does not depend on which rows are asked for: no batch statistics
    index = torch.randint(0, n, (batch,))
    torch.testing.assert_close(bn.rows(index), expected[index])
    # gradients flow through the statistics as in training-mode BatchNorm
    weights = torch.randn(batch, bn.width, dtype=torch.float64)
    ours = torch.autograd.grad((bn.rows(index) * weights).sum(), list(bn.parameters()))
    theirs = torch.autograd.grad((expected[index] * weights).sum(), list(bn.parameters()))
    for g, h in zip(ours, theirs, strict=True):
        torch.testing.assert_close(g, h)


def model_cases():
    return [
        ("kd-distmult", "squared"),
        ("kd-rel-distmult", "squared"),
        ("distmult", "squared"),
        ("kd-distmult", "score"),
        ("kd-rel-distmult", "score"),
    ]


def make_model(name: str, n: int, m: int, rank: int, form: str):
    if name == "distmult":
        return BatchNormDistMult(n, m, rank, form=form)
    return ckg.models.create_model(name, n, m, rank, form=form, batch_norm=True)


@settings(max_examples=30, deadline=None)
@given(
    st.sampled_from(model_cases()),
    st.integers(2, 4),
    st.integers(1, 3),
    st.integers(1, 3),
    st.integers(0, 2**16),
)
def test_batch_normalised_models_match_enumeration(case, n, m, rank, seed):
    """A squared model with BN is still an exact distribution (brute force over the domain)."""
    name, form = case
    torch.manual_seed(seed)
    model = make_model(name, n, m, rank, form).double()
    for module in model.modules():
        if isinstance(module, BatchNormTable):
            randomise_affine(module)
    compiled = ckg.compile(model)
    assert_matches_interpreter(compiled)
    if form == "squared":
        assert_normalised(compiled)
        assert_conditionals_consistent(compiled)


@pytest.mark.parametrize(
    ("name", "n", "m", "k", "plain", "with_bn"),
    [
        # UMLS widths of paper 002; BN adds 2 layers of 2·width affine parameters
        ("kd-distmult", 135, 92, 16, 3632, 3632 + 4 * 16),
        ("kd-rel-distmult", 135, 92, 17, 40579, 40579 + 4 * 289),
        ("distmult", 135, 92, 289, 65603, 65603 + 4 * 289),
    ],
)
def test_batch_norm_parameter_counts(name, n, m, k, plain, with_bn):
    assert ckg.models.create_model(name, n, m, k, form="score").num_parameters() == plain
    assert make_model(name, n, m, k, "score").num_parameters() == with_bn


def test_batch_norm_refuses_the_monotone_form():
    with pytest.raises(FormError, match="monotone"):
        ckg.models.create_model("kd-distmult", 5, 2, 2, form="monotone", batch_norm=True)
    with pytest.raises(FormError, match="monotone"):
        BatchNormDistMult(5, 2, 3, form="monotone")
