"""Kronecker tables and the Kronecker models (paper 002) against explicit reconstructions."""

import itertools

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

import circuitkg as ckg
from circuitkg.numerics import Scaled
from circuitkg.params import ConstantTable, FreeTable, KroneckerTable, PositiveTable
from circuitkg.params import kronecker as kron_module
from circuitkg.params.kronecker import balanced_factors
from circuitkg.testing import (
    all_assignments,
    assert_conditionals_consistent,
    assert_marginals_consistent,
    assert_matches_interpreter,
    assert_normalised,
    evaluate_naive,
)

FORMS = ("two", "square", "ones-left", "ones-right")
NORMALISED = ("monotone", "squared")


def make_table(form: str, positive: bool, n: int, a: int, b: int, seed: int) -> KroneckerTable:
    torch.manual_seed(seed)

    def factor(width: int):
        if positive:
            return PositiveTable(n, width, init_std=1.0).double()
        return FreeTable(n, width).double()

    if form == "two":
        return KroneckerTable(factor(a), factor(b))
    if form == "square":
        return KroneckerTable.square(factor(a))
    if form == "ones-left":
        return KroneckerTable.broadcast(factor(b), a)
    return KroneckerTable.broadcast(factor(a), b, side="right")


def factor_row(table, width: int, x: int) -> torch.Tensor:
    if table is None:
        return torch.ones(width, dtype=torch.float64)
    return table.rows(torch.tensor([x]))[0]


def explicit(t: KroneckerTable) -> torch.Tensor:
    """The table built row by row with ``torch.kron`` (detached)."""
    return torch.stack(
        [
            torch.kron(factor_row(t.left, t.left_width, x), factor_row(t.right, t.right_width, x))
            for x in range(t.num_values)
        ]
    ).detach()


tables = st.builds(
    make_table,
    form=st.sampled_from(FORMS),
    positive=st.booleans(),
    n=st.integers(1, 9),
    a=st.integers(1, 4),
    b=st.integers(1, 4),
    seed=st.integers(0, 2**16),
)


@settings(max_examples=30)
@given(tables)
def test_rows_are_the_kronecker_product_of_factor_rows(t):
    full = explicit(t)
    index = torch.arange(t.num_values)
    assert t.width == full.shape[1]
    assert torch.equal(t.rows(index), full)
    assert torch.equal(t.full(), full)
    factors = [f for f in (t.left, t.right) if f is not None]
    assert t.nonnegative == all(f.nonnegative for f in factors)
    if t.nonnegative:
        assert torch.allclose(t.log_rows(index), torch.log(full), rtol=1e-12, atol=1e-12)
    assert float(t.abs_max()) >= float(full.abs().max()) * (1 - 1e-12)
    if t.left is t.right:
        assert torch.allclose(t.abs_max(), full.abs().max())


def check_reductions(t: KroneckerTable, other: KroneckerTable, batch: int, seed: int) -> None:
    """Every reduction equals the same reduction of the materialised table."""
    gen = torch.Generator().manual_seed(seed)
    full, full_other = ConstantTable(explicit(t)), ConstantTable(explicit(other))

    def close(x, y):
        assert torch.allclose(x, y, rtol=1e-9, atol=1e-12), (x - y).abs().max()

    close(t.gram().dense(), full.gram().dense())
    close(t.gram(other).dense(), full.gram(full_other).dense())
    close(t.gram(full_other).dense(), full.gram(full_other).dense())
    weights = torch.rand(batch, t.num_values, generator=gen, dtype=torch.float64)
    close(t.gram(other, weights=weights).dense(), full.gram(full_other, weights=weights).dense())
    close(t.column_sum().dense(), full.column_sum().dense())
    close(t.weighted_sum(weights).dense(), full.weighted_sum(weights).dense())
    coef = Scaled.of(torch.randn(batch, t.width, generator=gen, dtype=torch.float64))
    close(t.contract(coef).dense(), full.contract(coef).dense())
    if t.nonnegative:
        log_coef = torch.randn(batch, t.width, generator=gen, dtype=torch.float64)
        close(t.log_contract(log_coef), full.log_contract(log_coef))
        close(t.log_column_sum(), full.log_column_sum())
        close(t.log_weighted_sum(torch.log(weights)), full.log_weighted_sum(torch.log(weights)))


@settings(max_examples=40)
@given(
    tables,
    st.sampled_from(FORMS),
    st.integers(1, 4),
    st.integers(1, 4),
    st.sampled_from([1, 2, 40]),
    st.booleans(),
    st.integers(0, 2**16),
)
def test_reductions_equal_the_materialised_table(t, other_form, a2, b2, batch, tiny_chunks, seed):
    other = make_table(other_form, t.nonnegative, t.num_values, a2, b2, seed)
    if tiny_chunks:  # one or two values per chunk: the chunk loops and their accumulation
        with pytest.MonkeyPatch.context() as mp:
            mp.setattr(kron_module, "CHUNK_ELEMENTS", 16)
            check_reductions(t, other, batch, seed)
    else:
        check_reductions(t, other, batch, seed)


@pytest.mark.parametrize(("a", "b"), [(3, 2), (2, 3)])
@pytest.mark.parametrize("batch", [1, 7])
def test_contract_orders_agree(a, b, batch):
    """Both contraction orders and the reconstructed-rows GEMM give ``coef @ Tᵀ``."""
    t = make_table("two", False, 6, a, b, seed=1)
    coef = torch.randn(batch, a * b, dtype=torch.float64)
    expected = coef @ explicit(t).T
    assert torch.allclose(t.contract(Scaled.of(coef)).dense(), expected, rtol=1e-10)


def test_scales_stay_finite_for_tiny_and_huge_factors():
    t = make_table("square", False, 5, 3, 3, seed=2)
    other = make_table("ones-left", False, 5, 3, 3, seed=3)
    for scale in (1e-30, 1e30):
        with torch.no_grad():
            t.left.weight.mul_(scale)
        g = t.gram(other)
        assert torch.isfinite(g.value).all() and torch.isfinite(g.log_scale).all()
        with torch.no_grad():
            t.left.weight.div_(scale)


def test_factor_validation():
    a, b = FreeTable(4, 2), FreeTable(5, 2)
    with pytest.raises(ValueError, match="different numbers of values"):
        KroneckerTable(a, b)
    with pytest.raises(ValueError, match="at least one factor"):
        KroneckerTable(None, None, 2, 2)
    with pytest.raises(ValueError, match="needs its width"):
        KroneckerTable(None, a)
    with pytest.raises(ValueError, match="side"):
        KroneckerTable.broadcast(a, 3, side="middle")


def test_balanced_factors():
    assert balanced_factors(16) == (4, 4)
    assert balanced_factors(12) == (3, 4)
    assert balanced_factors(7) == (1, 7)


# --- models -----------------------------------------------------------------------------------
def reference_score(model, s, r, o):
    """Paper 002's score functions, written from eqs. 8 and 9."""
    if model.name == "kd-distmult":  # Σ_ij h_i h_j r_i r_j t_j = (h·r)(h·(r∘t))
        h, w, t = model.entity.rows(s), model.relation.rows(r), model.entity.rows(o)
        return (h * w).sum(-1) * (h * w * t).sum(-1)
    w = model.relation.rows(r)
    rr = torch.stack([torch.kron(row, row) for row in w])
    return (model.entity.rows(s) * rr * model.entity.rows(o)).sum(-1)


@pytest.mark.parametrize("name", ["kd-distmult", "kd-rel-distmult"])
@pytest.mark.parametrize("form", ["score", "monotone", "squared"])
def test_kd_models_compute_the_published_score(name, form):
    torch.manual_seed(0)
    model = ckg.models.create_model(name, 5, 3, 3, form=form).double()
    x = torch.tensor(list(itertools.product(range(5), range(3), range(5))))
    expected = reference_score(model, x[:, 0], x[:, 1], x[:, 2])
    assert torch.allclose(ckg.compile(model).score(x), expected, rtol=1e-10, atol=1e-14)


@pytest.mark.parametrize(
    ("name", "n", "m", "k", "expected"),
    [
        ("kd-distmult", 135, 92, 16, (135 + 92) * 16),
        ("kd-rel-distmult", 135, 92, 17, 135 * 289 + 92 * 17),
    ],
)
def test_parameter_counts(name, n, m, k, expected):
    model = ckg.models.create_model(name, n, m, k, form="score")
    assert model.num_parameters() == expected
    assert model.circuit_width == k * k


def model_cases():
    """(name, kronecker, form): the named KD models, and the option on the other models.

    ComplEx's monotone tables (``[Re | Im | Re(1-σ)]``) are not free or positive tables.
    """
    cases = [(n, None, f) for n in ("kd-distmult", "kd-rel-distmult") for f in NORMALISED]
    for name, which, form in itertools.product(
        ("cp", "distmult", "complex", "rescal", "tucker"),
        ("entity", "relation", "both"),
        NORMALISED,
    ):
        if not (name == "complex" and form == "monotone"):
            cases.append((name, which, form))
    return cases


@settings(max_examples=40)
@given(
    st.sampled_from(model_cases()),
    st.integers(1, 4),
    st.integers(1, 3),
    st.integers(1, 3),
    st.integers(0, 2**16),
)
def test_kronecker_models_match_enumeration(case, n, m, rank, seed):
    name, which, form = case
    torch.manual_seed(seed)
    model = ckg.models.create_model(name, n, m, rank, form=form, kronecker=which).double()
    if form == "monotone":
        with torch.no_grad():
            for p in model.parameters():
                p.add_(torch.randn(p.shape, dtype=p.dtype) * 0.5)
    compiled = ckg.compile(model)
    assert_matches_interpreter(compiled)
    assert_normalised(compiled)
    assert_marginals_consistent(compiled)
    assert_conditionals_consistent(compiled)


@pytest.mark.parametrize("name", ["kd-distmult", "kd-rel-distmult"])
def test_score_form_ranks_with_its_own_scores(name):
    torch.manual_seed(0)
    model = ckg.models.create_model(name, 6, 3, 2, form="score").double()
    compiled = ckg.compile(model)
    phi = evaluate_naive(compiled.circuit, all_assignments(compiled.circuit)).reshape(6, 3, 6)
    s, r = torch.meshgrid(torch.arange(6), torch.arange(3), indexing="ij")
    got = compiled.score_all("o", s=s.reshape(-1), r=r.reshape(-1))
    assert torch.allclose(got, phi.reshape(-1, 6), rtol=1e-9, atol=1e-12)
    got_s = compiled.score_all("s", r=r.reshape(-1), o=s.reshape(-1))
    assert torch.allclose(got_s, phi.permute(2, 1, 0).reshape(-1, 6), rtol=1e-9, atol=1e-12)


# --- gradients -----------------------------------------------------------------------------------
def rows_with_gradient(p: torch.Tensor) -> set[int]:
    return set(torch.nonzero(p.grad.abs().sum(dim=1)).flatten().tolist())


@pytest.mark.parametrize("form", ["score", "monotone", "squared"])
def test_gradients_reach_only_the_factor_rows_used(form):
    torch.manual_seed(0)
    model = ckg.models.KDDistMult(7, 4, 3, form=form).double()
    compiled = ckg.compile(model)
    x = torch.tensor([[0, 1, 2], [5, 1, 0]])
    compiled.score(x).sum().backward()
    assert {id(p) for p in compiled.parameters()} == {id(p) for p in model.parameters()}
    entity, relation = list(model.entity.parameters())[0], list(model.relation.parameters())[0]
    assert rows_with_gradient(entity) == {0, 2, 5}
    assert rows_with_gradient(relation) == {1}


def test_kronecker_option_replaces_the_tables_by_their_factors():
    torch.manual_seed(0)
    model = ckg.models.create_model("distmult", 8, 3, 4, form="squared", kronecker="both")
    assert isinstance(model.entity, KroneckerTable) and isinstance(model.relation, KroneckerTable)
    assert model.num_parameters() == 8 * 2 + 3 * 2  # width 4 = 2 ⊗ 2, self form
    compiled = ckg.compile(model.double())
    compiled.log_prob(torch.tensor([[1, 2, 3]])).sum().backward()
    for p in model.parameters():  # log Z touches every row
        assert p.grad is not None and torch.isfinite(p.grad).all()
    model.zero_grad()
    compiled.score(torch.tensor([[1, 2, 3]])).sum().backward()
    assert rows_with_gradient(model.entity.left.weight) == {1, 3}
    assert rows_with_gradient(model.relation.left.weight) == {2}


def test_kronecker_option_keeps_the_table_scale_and_kind():
    torch.manual_seed(0)
    plain = ckg.models.create_model("cp", 50, 3, 16, form="monotone")
    kron = ckg.models.create_model("cp", 50, 3, 16, form="monotone", kronecker="entity")
    assert kron.subject.nonnegative and kron.object.nonnegative
    assert not isinstance(kron.relation, KroneckerTable)
    log_plain = plain.subject.log_rows(torch.arange(50))
    log_kron = kron.subject.log_rows(torch.arange(50))
    assert abs(float((log_plain.mean() - log_kron.mean()).detach())) < 0.05


def test_kronecker_option_errors():
    model = ckg.models.create_model("cp", 4, 2, 4)
    with pytest.raises(ValueError, match="kronecker must be one of"):
        model.with_kronecker("objects")
    model.circuit()
    with pytest.raises(ValueError, match="before the circuit is built"):
        model.with_kronecker("entity")
    with pytest.raises(TypeError, match="free and positive tables"):
        ckg.models.create_model("complex", 4, 2, 2, form="monotone", kronecker="entity")


def test_squared_log_partition_gradcheck():
    torch.manual_seed(0)
    model = ckg.models.KDDistMult(3, 2, 2, form="squared").double()
    compiled = ckg.compile(model)
    tables = (model.entity, model.relation)

    def fn(*values):
        originals = [t._parameters["weight"] for t in tables]
        for t, v in zip(tables, values, strict=True):
            t._parameters["weight"] = v
        try:
            return compiled.log_partition()
        finally:
            for t, v in zip(tables, originals, strict=True):
                t._parameters["weight"] = v

    inputs = tuple(t.weight.detach().clone().requires_grad_(True) for t in tables)
    assert torch.autograd.gradcheck(fn, inputs, eps=1e-6, atol=1e-6, rtol=1e-4)
