"""Paper 002's binary 1-vs-all loss against independent computations (torch's BCE, brute-force
minimisation over the credal set)."""

import math

import pytest
import torch
import torch.nn.functional as F
from hypothesis import given, settings
from hypothesis import strategies as st

import circuitkg as ckg
from circuitkg.errors import FormError
from circuitkg.train import TrainConfig
from circuitkg.train.binary import bce_loss, binary_one_vs_all
from circuitkg.train.objectives import make_objective

logits_and_targets = st.integers(1, 4).flatmap(
    lambda b: st.integers(2, 6).flatmap(
        lambda n: st.tuples(
            st.lists(st.floats(-8, 8), min_size=b * n, max_size=b * n).map(
                lambda v: torch.tensor(v, dtype=torch.float64).reshape(b, n)
            ),
            st.lists(st.integers(0, n - 1), min_size=b, max_size=b).map(torch.tensor),
        )
    )
)


@settings(max_examples=40, deadline=None)
@given(data=logits_and_targets, alpha=st.floats(0.05, 0.5))
def test_bce_and_label_smoothing_equal_torchs_binary_cross_entropy(data, alpha):
    logits, targets = data
    onehot = F.one_hot(targets, logits.shape[1]).double()
    want = F.binary_cross_entropy_with_logits(logits, onehot)
    assert binary_one_vs_all(logits, targets).item() == pytest.approx(want.item(), rel=1e-12)
    smoothed = onehot * (1 - alpha / 2) + (1 - onehot) * (alpha / 2)  # the paper's p^s
    want = F.binary_cross_entropy_with_logits(logits, smoothed)
    got = binary_one_vs_all(logits, targets, "label_smoothing", alpha)
    assert got.item() == pytest.approx(want.item(), rel=1e-12)


@settings(max_examples=40, deadline=None)
@given(data=logits_and_targets, alpha=st.floats(0.05, 0.5))
def test_label_relaxation_is_the_smallest_kl_over_the_credal_set(data, alpha):
    """Per binary event: min over q(observed) in [1 - α, 1] of KL(q || ŷ), by a fine grid."""
    logits, targets = data
    p_yes = torch.sigmoid(logits)
    grid = torch.linspace(1 - alpha, 1 - 1e-12, 20001, dtype=torch.float64)
    total = 0.0
    for b in range(logits.shape[0]):
        for i in range(logits.shape[1]):
            p = p_yes[b, i] if i == targets[b] else 1 - p_yes[b, i]  # the observed outcome's
            kl = grid * torch.log(grid / p) + (1 - grid) * torch.log((1 - grid) / (1 - p))
            total += float(kl.min())
    want = total / logits.numel()
    got = binary_one_vs_all(logits, targets, "label_relaxation", alpha).item()
    assert got == pytest.approx(want, rel=1e-5, abs=1e-9)


def test_bce_objective_scores_both_directions_and_refuses_normalised_forms():
    torch.manual_seed(0)
    model = ckg.models.create_model("distmult", 7, 3, 4, form="score").double()
    compiled = ckg.compile(model)
    triples = torch.tensor([[0, 1, 2], [3, 0, 6], [5, 2, 5]])
    s, r, o = triples.unbind(1)
    table, relations = model.entity.weight, model.relation.weight
    scores_o = (table[s] * relations[r]) @ table.T  # DistMult by hand
    scores_s = (table[o] * relations[r]) @ table.T
    want = F.binary_cross_entropy_with_logits(scores_o, F.one_hot(o, 7).double())
    want = want + F.binary_cross_entropy_with_logits(scores_s, F.one_hot(s, 7).double())
    assert bce_loss(compiled, triples).item() == pytest.approx(want.item(), rel=1e-10)
    objective = make_objective("bce", loss="label_relaxation", alpha=0.1)
    assert math.isfinite(objective(compiled, triples).item())
    squared = ckg.compile(ckg.models.create_model("distmult", 7, 3, 4, form="squared"))
    with pytest.raises(FormError, match="bce"):
        bce_loss(squared, triples)
    assert TrainConfig(model="distmult", form="score", objective="bce").objective == "bce"
