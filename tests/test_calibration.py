"""Expected calibration error, reliability tables and mean log-likelihood."""

from __future__ import annotations

import math

import pytest
import torch
from hypothesis import given
from hypothesis import strategies as st

from circuitkg.eval import expected_calibration_error, mean_log_likelihood, reliability_table


@given(
    st.lists(
        st.tuples(st.floats(0.0, 1.0), st.booleans()),
        min_size=1,
        max_size=50,
    ),
    st.integers(1, 12),
)
def test_ece_matches_per_bin_definition(pairs, num_bins):
    probabilities = [p for p, _ in pairs]
    labels = [y for _, y in pairs]
    bins: dict[int, list[tuple[float, bool]]] = {}
    for p, y in pairs:
        bins.setdefault(min(int(p * num_bins), num_bins - 1), []).append((p, y))
    expected = sum(
        len(members)
        / len(pairs)
        * abs(sum(y for _, y in members) / len(members) - sum(p for p, _ in members) / len(members))
        for members in bins.values()
    )
    probabilities = torch.tensor(probabilities, dtype=torch.float64)
    ece = expected_calibration_error(probabilities, torch.tensor(labels), num_bins)
    assert ece == pytest.approx(expected, abs=1e-12)
    table = reliability_table(probabilities, torch.tensor(labels), num_bins)
    assert int(table.count.sum()) == len(pairs)
    assert table.count.tolist() == [len(bins.get(b, [])) for b in range(num_bins)]


def test_ece_extremes():
    assert expected_calibration_error(torch.tensor([0.9] * 4), torch.tensor([0] * 4)) == (
        pytest.approx(0.9)
    )
    assert expected_calibration_error(torch.tensor([0.25] * 4), torch.tensor([1, 0, 0, 0])) == 0.0
    assert expected_calibration_error(torch.tensor([1.0, 0.0]), torch.tensor([1, 0])) == 0.0


def test_reliability_table_fields_and_text():
    table = reliability_table(torch.tensor([0.05, 0.15, 0.95, 1.0]), torch.tensor([0, 1, 1, 1]), 10)
    assert table.count.tolist() == [1, 1, 0, 0, 0, 0, 0, 0, 0, 2]
    assert table.lower[9].item() == pytest.approx(0.9) and table.upper[9].item() == 1.0
    assert table.mean_probability[9].item() == pytest.approx(0.975)
    assert table.frequency[1].item() == 1.0 and math.isnan(table.frequency[5].item())
    assert "[0.90, 1.00]" in str(table)


def test_bad_calibration_inputs_raise():
    with pytest.raises(ValueError, match=r"\[0, 1\]"):
        expected_calibration_error(torch.tensor([1.5]), torch.tensor([1]))
    with pytest.raises(ValueError, match="0 or 1"):
        expected_calibration_error(torch.tensor([0.5]), torch.tensor([2]))
    with pytest.raises(ValueError, match="equally many"):
        expected_calibration_error(torch.tensor([0.5, 0.5]), torch.tensor([1]))
    with pytest.raises(ValueError, match="NaN"):
        expected_calibration_error(torch.tensor([math.nan]), torch.tensor([1]))


def test_mean_log_likelihood():
    assert mean_log_likelihood(torch.tensor([-1.0, -3.0])) == -2.0
    assert mean_log_likelihood(torch.tensor([-1.0, -math.inf])) == -math.inf
    with pytest.raises(ValueError, match="NaN"):
        mean_log_likelihood(torch.tensor([math.nan]))
    with pytest.raises(ValueError, match="no log-probabilities"):
        mean_log_likelihood(torch.tensor([]))
