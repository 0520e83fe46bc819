"""Figures: training loss curves and reliability diagrams (matplotlib, an optional extra).

Both functions return a :class:`matplotlib.figure.Figure` built without ``pyplot`` (no global
state, no GUI backend needed); save it with ``fig.savefig("loss.png")``. matplotlib is imported
only when a function is called: ``pip install 'circuitkg[plots]'``.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping
from typing import Any

from circuitkg.errors import MissingExtraError

__all__ = ["plot_loss", "plot_reliability"]


def _figure(**options: Any):
    try:
        from matplotlib.figure import Figure
    except ImportError:
        raise MissingExtraError(
            "circuitkg.eval.plots needs matplotlib: pip install 'circuitkg[plots]'"
        ) from None
    return Figure(**options)


def _records(history: Any) -> list[Mapping[str, Any]]:
    """``history`` as a list of per-epoch records (dicts with ``epoch``, ``loss``, ...)."""
    state = getattr(history, "state", None)  # a TrainResult
    history = getattr(state if state is not None else history, "history", history)  # a TrainState
    records = list(history) if isinstance(history, Iterable) else None
    if records is None:
        raise TypeError(f"expected a training history, got {type(history).__name__}")
    if all(isinstance(r, (int, float)) for r in records):
        return [{"epoch": i + 1, "loss": float(r)} for i, r in enumerate(records)]
    if not all(isinstance(r, Mapping) and "loss" in r for r in records):
        raise TypeError(
            "expected per-epoch records with a 'loss' (a TrainState's history) or losses"
        )
    return [{"epoch": r.get("epoch", i + 1), **r} for i, r in enumerate(records)]


def plot_loss(history: Any, title: str | None = None):
    """Training loss per epoch, with the validation MRR on a second axis when recorded.

    ``history`` is a :class:`~circuitkg.train.TrainResult`, its ``state``, the ``state.history``
    list of records (``{"epoch", "loss", "valid_mrr"?}``) or a plain sequence of losses.
    """
    records = _records(history)
    if not records:
        raise ValueError("the history is empty: nothing to plot")
    fig = _figure(figsize=(6, 4), layout="constrained")
    ax = fig.add_subplot()
    epochs = [r["epoch"] for r in records]
    ax.plot(epochs, [r["loss"] for r in records], marker="o", markersize=3, label="training loss")
    ax.set_xlabel("epoch")
    ax.set_ylabel("loss")
    ax.grid(True, alpha=0.3)
    evaluated = [(r["epoch"], r["valid_mrr"]) for r in records if r.get("valid_mrr") is not None]
    handles, labels = ax.get_legend_handles_labels()
    if evaluated:
        twin = ax.twinx()
        xs, ys = zip(*evaluated, strict=True)
        twin.plot(xs, ys, color="tab:orange", marker="s", markersize=3, label="validation MRR")
        twin.set_ylabel("validation MRR")
        more_handles, more_labels = twin.get_legend_handles_labels()
        handles, labels = handles + more_handles, labels + more_labels
    ax.legend(handles, labels, loc="best")
    ax.set_title(title or "training")
    return fig


def plot_reliability(table, title: str | None = None):
    """A reliability diagram of a :class:`~circuitkg.eval.calibration.ReliabilityTable`.

    Top: the fraction of positives per probability bin against the diagonal of perfect
    calibration, with the expected calibration error in the title. Bottom: how many predictions
    fall in each bin. Empty bins are left blank.
    """
    lower = [float(x) for x in table.lower]
    upper = [float(x) for x in table.upper]
    count = [int(x) for x in table.count]
    frequency = [float(x) for x in table.frequency]
    mean = [float(x) for x in table.mean_probability]
    widths = [u - lo for lo, u in zip(lower, upper, strict=True)]
    fig = _figure(figsize=(5, 6), layout="constrained")
    top, bottom = fig.subplots(2, 1, sharex=True, gridspec_kw={"height_ratios": (3, 1)})
    filled = [i for i, n in enumerate(count) if n > 0 and not math.isnan(frequency[i])]
    top.bar(
        [lower[i] for i in filled],
        [frequency[i] for i in filled],
        width=[widths[i] for i in filled],
        align="edge",
        edgecolor="black",
        alpha=0.7,
        label="fraction positive",
    )
    top.plot(
        [mean[i] for i in filled],
        [frequency[i] for i in filled],
        "o",
        color="tab:red",
        markersize=4,
        label="at the bin's mean probability",
    )
    top.plot([0, 1], [0, 1], "--", color="gray", label="perfect calibration")
    top.set_xlim(min(lower, default=0.0), max(upper, default=1.0))
    top.set_ylim(0, 1)
    top.set_ylabel("fraction of positives")
    top.legend(loc="upper left")
    ece = table.expected_calibration_error if sum(count) else float("nan")
    top.set_title(f"{title or 'reliability'} (ECE {ece:.4f})")
    bottom.bar(lower, count, width=widths, align="edge", edgecolor="black", color="tab:gray")
    bottom.set_xlabel("predicted probability")
    bottom.set_ylabel("count")
    return fig
