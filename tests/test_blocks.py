"""Block-wise products of Gram views and of view rows against explicit gathers, with derivatives."""

from unittest.mock import patch

import pytest
import torch
from hypothesis import given
from hypothesis import strategies as st

import circuitkg as ckg
from circuitkg.executor import blocks
from circuitkg.executor.blocks import BlockView, ViewRows, block_product, row_product
from circuitkg.numerics import Scaled


@st.composite
def runs(draw, base_width: int, length: int):
    """Contiguous runs of ``[0, base_width)`` whose lengths add up to ``length``."""
    out, left = [], length
    while left:
        size = draw(st.integers(1, min(left, base_width)))
        start = draw(st.integers(0, base_width - size))
        out.append((start, start + size))
        left -= size
    return tuple(out)


def _columns(runs_: tuple[tuple[int, int], ...]) -> torch.Tensor:
    return torch.cat([torch.arange(a, b) for a, b in runs_])


@st.composite
def products(draw):
    rows, cols = draw(st.integers(1, 7)), draw(st.integers(1, 7))
    factors = []
    for _ in range(draw(st.integers(1, 3))):
        width_r, width_c = draw(st.integers(1, 5)), draw(st.integers(1, 5))
        batch = draw(st.sampled_from([1, 2]))
        base = torch.randn(batch, width_r, width_c, dtype=torch.float64, requires_grad=True)
        factors.append((base, draw(runs(width_r, rows)), draw(runs(width_c, cols))))
    return factors


@given(products())
def test_block_product_equals_gathered_product(factors):
    views = [
        BlockView(Scaled(b, torch.zeros(b.shape[0], dtype=b.dtype)), r, c) for b, r, c in factors
    ]
    got = block_product(views).dense()
    expected = None
    for base, r, c in factors:
        gathered = base[:, _columns(r)][:, :, _columns(c)]
        expected = gathered if expected is None else expected * gathered
    torch.testing.assert_close(got, expected.expand_as(got))


@given(products())
def test_block_product_first_and_second_derivatives(factors):
    bases = [b for b, _, _ in factors]

    def fn(*values):
        views = [
            BlockView(Scaled(v, torch.zeros(v.shape[0], dtype=v.dtype)), r, c)
            for v, (_, r, c) in zip(values, factors, strict=True)
        ]
        return block_product(views).value

    assert torch.autograd.gradcheck(fn, bases)
    assert torch.autograd.gradgradcheck(fn, bases)


@st.composite
def row_factors(draw):
    """Batch rows ``(B, W_base)`` with runs of length ``width`` (``None``: a plain full row)."""
    width = draw(st.integers(1, 8))
    factors = []
    for _ in range(draw(st.integers(1, 3))):
        batch = draw(st.sampled_from([1, 3]))
        if draw(st.booleans()):
            base = torch.randn(batch, width, dtype=torch.float64, requires_grad=True)
            factors.append((base, None))
            continue
        base_width = draw(st.integers(1, 5))
        base = torch.randn(batch, base_width, dtype=torch.float64, requires_grad=True)
        factors.append((base, draw(runs(base_width, width))))
    return factors


def _row_product(factors, values):
    operands = [
        Scaled.of(v) if r is None else ViewRows(Scaled.of(v), r)
        for v, (_, r) in zip(values, factors, strict=True)
    ]
    return row_product(operands).dense()


@pytest.mark.parametrize("blockwise", [True, False])
@given(factors=row_factors())
def test_row_product_equals_gathered_product_with_derivatives(blockwise, factors):
    """Both plans of :func:`row_product` (block by block, and copy-then-multiply) against gathers."""
    bases = [b for b, _ in factors]
    with patch.object(blocks, "BLOCKWISE_MIN_ENTRIES", 0 if blockwise else 2**62):
        got = _row_product(factors, bases)
        expected = None
        for base, r in factors:
            gathered = base if r is None else base[:, _columns(r)]
            expected = gathered if expected is None else expected * gathered
        torch.testing.assert_close(got, expected.expand_as(got))
        assert torch.autograd.gradcheck(lambda *v: _row_product(factors, v), bases)


def test_complex_queries_agree_across_row_product_plans():
    """ComplEx reads its tables through four-block views: log p, its gradients and conditionals
    are the same whether the forward pass multiplies view rows block by block or copies them."""
    torch.manual_seed(0)
    model = ckg.models.ComplEx(30, 4, 5, form="squared").double()
    compiled = ckg.compile(model)
    triples = torch.stack(
        [torch.randint(0, 30, (50,)), torch.randint(0, 4, (50,)), torch.randint(0, 30, (50,))], 1
    )
    results = []
    for threshold in (0, 2**62):
        with patch.object(blocks, "BLOCKWISE_MIN_ENTRIES", threshold):
            model.zero_grad()
            log_p = compiled.log_prob(triples)
            log_p.sum().backward()
            grads = [p.grad.clone() for p in model.parameters()]
            cond = compiled.log_conditional("o", s=triples[:, 0], r=triples[:, 1])
        results.append((log_p.detach(), grads, cond.detach()))
    (lp0, g0, c0), (lp1, g1, c1) = results
    torch.testing.assert_close(lp0, lp1)
    torch.testing.assert_close(c0, c1)
    for a, b in zip(g0, g1, strict=True):
        torch.testing.assert_close(a, b)
