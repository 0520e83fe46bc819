"""circuitkg.eval.plots: loss curves and reliability diagrams render (Agg) from real inputs."""

import pytest
import torch

matplotlib = pytest.importorskip("matplotlib")
matplotlib.use("Agg")

from matplotlib.figure import Figure  # noqa: E402

from circuitkg.eval.calibration import reliability_table  # noqa: E402
from circuitkg.eval.plots import plot_loss, plot_reliability  # noqa: E402
from circuitkg.train import TrainState  # noqa: E402

HISTORY = [
    {"epoch": 1, "loss": 3.0, "seconds": 0.1},
    {"epoch": 2, "loss": 2.0, "seconds": 0.1, "valid_mrr": 0.3},
    {"epoch": 3, "loss": 1.5, "seconds": 0.1},
    {"epoch": 4, "loss": 1.2, "seconds": 0.1, "valid_mrr": 0.5},
]


def png_bytes(fig, tmp_path) -> int:
    path = tmp_path / "figure.png"
    fig.savefig(path)
    return path.stat().st_size


def test_plot_loss_from_records_state_and_floats(tmp_path):
    fig = plot_loss(HISTORY)
    assert isinstance(fig, Figure)
    loss_axis, mrr_axis = fig.axes
    assert list(loss_axis.lines[0].get_ydata()) == [3.0, 2.0, 1.5, 1.2]
    assert list(mrr_axis.lines[0].get_xdata()) == [2, 4]
    assert png_bytes(fig, tmp_path) > 1000

    state = TrainState(epoch=4, history=list(HISTORY))
    assert list(plot_loss(state).axes[0].lines[0].get_ydata()) == [3.0, 2.0, 1.5, 1.2]
    only = plot_loss([1.0, 0.5], title="two")
    assert len(only.axes) == 1 and only.axes[0].get_title() == "two"


def test_plot_loss_rejects_empty_and_malformed():
    with pytest.raises(ValueError, match="empty"):
        plot_loss([])
    with pytest.raises(TypeError):
        plot_loss([{"epoch": 1}])


def test_plot_reliability(tmp_path):
    generator = torch.Generator().manual_seed(0)
    p = torch.rand(500, generator=generator, dtype=torch.float64) * 0.7  # upper bins stay empty
    labels = (torch.rand(500, generator=generator, dtype=torch.float64) < p).double()
    table = reliability_table(p, labels, num_bins=10)
    fig = plot_reliability(table, title="toy")
    assert isinstance(fig, Figure)
    top, bottom = fig.axes
    assert f"{table.expected_calibration_error:.4f}" in top.get_title()
    filled = int((table.count > 0).sum())
    assert len(top.patches) == filled  # empty bins are blank
    assert [p.get_height() for p in bottom.patches] == table.count.tolist()
    assert png_bytes(fig, tmp_path) > 1000
