"""Block-wise products of Gram views against explicit gathers, with first and second derivatives."""

import torch
from hypothesis import given
from hypothesis import strategies as st

from circuitkg.executor.blocks import BlockView, block_product
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
