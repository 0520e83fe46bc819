"""Weighted evidence: summing a variable out with weights (e.g. 0/1 masks) is exact."""

import pytest
import torch
from hypothesis import given
from hypothesis import strategies as st

import circuitkg as ckg
from circuitkg.errors import EvidenceError
from circuitkg.params.reductions import unique_rows
from circuitkg.testing import circuits, joint_table


@given(circuits(), st.data())
def test_weighted_marginals_and_conditionals_match_enumeration(circuit, data):
    form = "monotone" if circuit.has("monotone") else "squared"
    compiled = ckg.compile(circuit, form=form)
    table = joint_table(compiled)  # p(x), one axis per variable
    variables = circuit.variables
    seed = data.draw(st.integers(0, 2**16))
    gen = torch.Generator().manual_seed(seed)
    weighted = data.draw(st.lists(st.sampled_from(variables), min_size=1, unique=True))
    weights = {}
    for v in weighted:
        w = torch.rand(2, circuit.domains[v], generator=gen, dtype=torch.float64)
        if data.draw(st.booleans()):
            w = (w > 0.4).to(torch.float64)  # a 0/1 mask, as schemas produce
        weights[v] = w
    # brute force: Σ_x p(x) Π_v w_v[b, x_v], for each of the 2 batch rows
    expected = []
    for b in range(2):
        t = table
        for v in variables:
            if v in weights:
                shape = [1] * len(variables)
                shape[variables.index(v)] = -1
                t = t * weights[v][b].reshape(shape)
        expected.append(t.sum())
    expected = torch.stack(expected)
    got = compiled.log_marginal(**weights).exp()
    assert torch.allclose(got, expected, rtol=1e-9, atol=1e-12)

    target = data.draw(st.sampled_from(variables))
    given_w = {v: w for v, w in weights.items() if v != target}
    rows = []
    for b in range(2):
        t = table
        for v in variables:
            if v in given_w:
                shape = [1] * len(variables)
                shape[variables.index(v)] = -1
                t = t * given_w[v][b].reshape(shape)
        axis = variables.index(target)
        marg = t.sum(dim=[i for i in range(len(variables)) if i != axis])
        rows.append(marg / marg.sum())
    expected_rows = torch.stack(rows)
    ok = torch.isfinite(expected_rows).all(dim=1)
    if any(bool((w.amax(dim=1) == 0).any()) for w in given_w.values()):
        with pytest.raises(EvidenceError, match="is all zero"):  # mass 0: no conditional
            compiled.log_conditional(target, **given_w)
        return
    got_rows = compiled.log_conditional(target, **given_w).exp()
    if not given_w:
        got_rows = got_rows.expand(2, -1)
    assert torch.allclose(got_rows[ok], expected_rows[ok], rtol=1e-8, atol=1e-10)


def test_class_grouped_gram_equals_direct():
    torch.manual_seed(0)
    model = ckg.models.ComplEx(40, 3, 4).double()
    mask = (torch.arange(40) % 3 == 0).double().repeat(5, 1)
    mask[2, :20] = 1.0
    table = model.entity
    grouped = table.gram(weights=mask).dense()
    full = table.full()
    direct = torch.einsum("bx,xi,xj->bij", mask, full, full)
    assert torch.allclose(grouped, direct, rtol=1e-10, atol=1e-12)


def test_bad_weights_are_rejected():
    import pytest

    c = ckg.compile(ckg.models.CP(4, 2, 3))
    with pytest.raises(ckg.EvidenceError, match="shape"):
        c.log_marginal(s=torch.ones(3))
    with pytest.raises(ckg.EvidenceError, match="non-negative"):
        c.log_marginal(s=-torch.ones(4))


@given(
    st.integers(1, 12),
    st.integers(1, 6),
    st.integers(1, 4),
    st.randoms(use_true_random=False),
)
def test_unique_rows_groups_exactly_the_equal_rows(num_rows, width, distinct, rnd):
    """``unique_rows`` agrees with ``torch.unique(dim=0)`` up to the order of the distinct rows."""
    pool = torch.tensor(
        [[float(rnd.choice([0, 1, 2])) for _ in range(width)] for _ in range(distinct)]
    )
    x = pool[torch.tensor([rnd.randrange(distinct) for _ in range(num_rows)])]
    rows, inverse = unique_rows(x)
    expected, _ = torch.unique(x, dim=0, return_inverse=True)
    assert torch.equal(rows[inverse], x)
    assert rows.shape == expected.shape
    assert len({tuple(r) for r in rows.tolist()}) == rows.shape[0]
