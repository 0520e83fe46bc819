"""float32 stays accurate: log Z against a float64 reference for scales 1e-4..1e2."""

import copy
import math

import pytest
import torch

import circuitkg as ckg
from circuitkg.testing import rescale


@pytest.mark.parametrize("name", ["cp", "complex", "distmult", "tucker", "rescal"])
@pytest.mark.parametrize("form", ["squared", "monotone"])
@pytest.mark.parametrize("scale", [1e-4, 1e-2, 1.0, 1e2])
def test_float32_log_partition_matches_float64(name, form, scale):
    torch.manual_seed(0)
    model = ckg.models.create_model(
        name, 200, 15, 6, form=form, init_std=1.0 if form == "squared" else None
    )
    compiled = ckg.compile(model)
    rescale(compiled.circuit, scale)
    log_z32 = compiled.log_partition().item()
    log_z64 = compiled.double().log_partition().item()
    assert math.isfinite(log_z32)
    assert abs(log_z32 - log_z64) <= 1e-4 * max(abs(log_z64), 1.0)


@pytest.mark.parametrize("scale", [1e-30, 1e30])
def test_extreme_scales_stay_finite(scale):
    """Per-row scaling keeps log p finite where plain float32 would underflow or overflow."""
    torch.manual_seed(0)
    model = ckg.models.CP(50, 5, 8, form="squared", init_std=1.0)
    compiled = ckg.compile(model)
    reference = compiled.log_prob(torch.tensor([[0, 1, 2], [3, 4, 5]])).double()
    rescale(compiled.circuit, scale)
    # p is invariant to rescaling every table by the same factor
    got = compiled.log_prob(torch.tensor([[0, 1, 2], [3, 4, 5]]))
    assert torch.isfinite(got).all()
    assert torch.allclose(got.double(), reference, atol=1e-4)


def test_zero_scores_give_finite_gradients():
    """A value with φ = 0 has p = 0; a softmax over it must not turn 0 · (1/0) into NaN."""
    model = ckg.models.CP(4, 2, 2, form="squared").double()
    with torch.no_grad():
        model.object.weight[3] = 0.0  # φ(s, r, o=3) = 0 for every s, r
    compiled = ckg.compile(model)
    loss = -compiled.log_conditional("o", s=torch.tensor([0, 1]), r=torch.tensor([1, 0]))[
        :, 0
    ].sum()
    loss.backward()
    assert all(torch.isfinite(p.grad).all() for p in model.parameters())


QUERIES = (("o", ("s", "r")), ("s", ("r", "o")), ("r", ("s", "o")))


@pytest.mark.parametrize("name", ["cp", "complex", "tucker"])
@pytest.mark.parametrize("scale", [1e-30, 1e-12, 1e12, 1e30])
@pytest.mark.parametrize("grad", [False, True])
def test_all_value_queries_at_extreme_scales_match_float64(name, scale, grad):
    """Conditionals and ``score_all`` over all values, where the unscaled float32 contraction
    underflows or overflows: the rerun with scaling must give the float64 numbers.
    ``φ`` is trilinear in the tables, so ``log φ²`` shifts by ``6 log scale``; ``p`` does not."""
    torch.manual_seed(0)
    compiled = ckg.compile(ckg.models.create_model(name, 40, 5, 6, form="squared", init_std=1.0))
    reference = copy.deepcopy(compiled).double()
    rescale(compiled.circuit, scale)
    ids = {
        "s": torch.tensor([0, 7, 39]),
        "r": torch.tensor([4, 0, 2]),
        "o": torch.tensor([5, 5, 1]),
    }
    for target, given in QUERIES:
        evidence = {v: ids[v] for v in given}
        with torch.no_grad():
            want = reference.log_conditional(target, **evidence)
            want_scores = reference.score_all(target, **evidence) + 6 * math.log(scale)
        with torch.set_grad_enabled(grad):
            got = compiled.log_conditional(target, **evidence).detach().double()
            got_scores = compiled.score_all(target, **evidence).detach().double()
        assert torch.isfinite(got).all() and torch.isfinite(got_scores).all()
        assert torch.allclose(got, want, atol=1e-4), (target, (got - want).abs().max())
        assert torch.allclose(got_scores, want_scores, rtol=1e-6, atol=1e-4), target
