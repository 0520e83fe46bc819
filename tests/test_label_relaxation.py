"""Label smoothing and label relaxation against their direct definitions."""

import pytest
import torch
import torch.nn.functional as F
from hypothesis import given, settings
from hypothesis import strategies as st

from circuitkg.train.label_relaxation import label_relaxation_loss, label_smoothing_cross_entropy

ALPHAS = st.sampled_from([0.05, 0.1, 0.2, 0.5, 0.9])


@st.composite
def batches(draw):
    """``(logits (B, n) float64, targets (B,))`` with logit spreads from flat to confident."""
    b, n = draw(st.integers(1, 6)), draw(st.integers(2, 8))
    scale = draw(st.sampled_from([0.1, 1.0, 5.0, 30.0]))
    gen = torch.Generator().manual_seed(draw(st.integers(0, 2**16)))
    logits = torch.randn(b, n, generator=gen, dtype=torch.float64) * scale
    targets = torch.randint(0, n, (b,), generator=gen)
    return logits, targets


def relaxed_target(p: torch.Tensor, targets: torch.Tensor, alpha: float) -> torch.Tensor:
    """``p^r``: ``1 - α`` on the true label, ``α p_k / Σ_{k'≠y} p_k'`` on the others."""
    onehot = F.one_hot(targets, p.shape[1]).bool()
    rest = p.masked_fill(onehot, 0.0)
    return torch.where(onehot, 1.0 - alpha, alpha * rest / rest.sum(dim=1, keepdim=True))


def direct_relaxation(logits, targets, alpha):
    p = torch.softmax(logits, dim=1)
    target = relaxed_target(p, targets, alpha).detach()
    kl = (target * (torch.log(target) - torch.log(p))).sum(dim=1)
    inside = p.gather(1, targets.unsqueeze(1))[:, 0] >= 1.0 - alpha
    return torch.where(inside, torch.zeros_like(kl), kl)


@settings(max_examples=60)
@given(batches(), ALPHAS)
def test_label_smoothing_is_cross_entropy_with_smoothed_targets(batch, alpha):
    logits, targets = batch
    n = logits.shape[1]
    q = (1.0 - alpha) * F.one_hot(targets, n).double() + alpha / n
    direct = -(q * torch.log_softmax(logits, dim=1)).sum(dim=1)
    got = label_smoothing_cross_entropy(logits, targets, alpha, reduction="none")
    assert torch.allclose(got, direct, rtol=1e-10, atol=1e-12)
    mean = label_smoothing_cross_entropy(logits, targets, alpha)
    assert torch.allclose(mean, F.cross_entropy(logits, targets, label_smoothing=alpha))


@settings(max_examples=60)
@given(batches(), ALPHAS)
def test_label_relaxation_matches_the_kl_to_the_relaxed_target(batch, alpha):
    logits, targets = batch
    p_true = torch.softmax(logits, dim=1).gather(1, targets.unsqueeze(1))[:, 0]
    ok = p_true < 1 - 1e-9  # where 1 - p_y is representable, so the direct formula is exact
    logits = logits.clone().requires_grad_(True)
    got = label_relaxation_loss(logits, targets, alpha, reduction="none")
    direct = direct_relaxation(logits, targets, alpha)
    assert torch.allclose(got[ok], direct[ok], rtol=1e-8, atol=1e-10)
    assert bool((got >= 0).all()) and bool(torch.isfinite(got).all())
    assert bool((got[p_true >= 1 - alpha] == 0).all())
    # the gradient is that of KL(p^r || p) with the target held fixed
    (g_got,) = torch.autograd.grad(got[ok].sum(), logits, retain_graph=True)
    (g_direct,) = torch.autograd.grad(direct[ok].sum(), logits)
    assert torch.allclose(g_got, g_direct, rtol=1e-7, atol=1e-9)


@settings(max_examples=30)
@given(batches(), ALPHAS, st.integers(0, 2**16))
def test_label_relaxation_is_the_minimum_over_the_credal_set(batch, alpha, seed):
    """No distribution ``q`` with ``q_y >= 1 - α`` is closer to ``p`` than the loss says."""
    logits, targets = batch
    p = torch.softmax(logits, dim=1)
    loss = label_relaxation_loss(logits, targets, alpha, reduction="none")
    gen = torch.Generator().manual_seed(seed)
    for _ in range(20):
        rest = torch.rand(p.shape, generator=gen, dtype=torch.float64)
        rest = rest.scatter(1, targets.unsqueeze(1), 0.0)
        q_true = 1.0 - alpha * torch.rand(p.shape[0], 1, generator=gen, dtype=torch.float64)
        q = rest / rest.sum(dim=1, keepdim=True) * (1 - q_true)
        q = q.scatter(1, targets.unsqueeze(1), q_true)
        kl = torch.where(q > 0, q * (torch.log(q) - torch.log(p)), torch.zeros_like(q)).sum(1)
        assert bool((kl >= loss - 1e-9).all())


def test_label_relaxation_is_stable_for_confident_models():
    logits = torch.tensor([[200.0, 0.0, -5.0], [-200.0, 0.0, 1.0]])
    targets = torch.tensor([0, 0])
    loss = label_relaxation_loss(logits, targets, 0.1, reduction="none")
    assert loss[0] == 0
    expected = 0.9 * (torch.log(torch.tensor(0.9)) + 200 + torch.logsumexp(logits[1, 1:], 0))
    expected = expected + 0.1 * torch.log(torch.tensor(0.1))  # log(1 - p_y) ≈ 0
    assert torch.allclose(loss[1], expected, rtol=1e-5)
    logits.requires_grad_(True)
    label_relaxation_loss(logits, targets, 0.1).backward()
    assert torch.isfinite(logits.grad).all()


@pytest.mark.parametrize("loss", [label_smoothing_cross_entropy, label_relaxation_loss])
def test_reductions_and_validation(loss):
    logits, targets = torch.randn(4, 5), torch.tensor([0, 1, 2, 3])
    each = loss(logits, targets, 0.2, reduction="none")
    assert torch.allclose(loss(logits, targets, 0.2, reduction="sum"), each.sum())
    assert torch.allclose(loss(logits, targets, 0.2), each.mean())
    with pytest.raises(ValueError, match="alpha"):
        loss(logits, targets, 0.0)
    with pytest.raises(ValueError, match="alpha"):
        loss(logits, targets, 1.0)
    with pytest.raises(ValueError, match="expected logits"):
        loss(logits, targets[:2], 0.1)
    with pytest.raises(ValueError, match="reduction"):
        loss(logits, targets, 0.1, reduction="median")
