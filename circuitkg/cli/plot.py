"""``circuitkg plot RUN_DIR``: PNG loss curves and a reliability diagram of a run.

Writes ``loss.png`` (:func:`~circuitkg.eval.plots.plot_loss` of the run's history, from ``last/``
when the folder has one: ``best/`` holds the history up to the best epoch only; training loss and
validation MRR per epoch) and ``reliability.png``
(:func:`~circuitkg.eval.plots.plot_reliability` of the split's triples against sampled
corruptions, :func:`circuitkg.workflow.reliability`). matplotlib is imported only here.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import torch

from circuitkg.cli.common import UsageError, load_for_queries
from circuitkg.eval.plots import plot_loss, plot_reliability
from circuitkg.workflow import reliability, run_history


def plot(args: argparse.Namespace) -> int:
    """Write the two figures; print their paths."""
    loaded = load_for_queries(args.run_dir, args.data_root, device=args.device)
    out = Path(args.out) if args.out is not None else Path(args.run_dir)
    out.mkdir(parents=True, exist_ok=True)
    spec = loaded.checkpoint.spec
    title = f"{spec.name} ({spec.form}, rank {spec.rank}) on {loaded.kg.name}"
    paths = [out / "loss.png", out / "reliability.png"]
    history = run_history(args.run_dir, loaded.checkpoint.state)
    if not history:
        raise UsageError(f"{args.run_dir}: the run has no trained epoch, so no loss to plot")
    with torch.no_grad():
        table = reliability(loaded.circuit, loaded.kg, args.split)
    try:
        plot_loss(history, title=title).savefig(paths[0], dpi=120)
        plot_reliability(table, title=f"{title}, {args.split}").savefig(paths[1], dpi=120)
    except ImportError as err:  # matplotlib missing: plots say how to install it
        raise UsageError(str(err)) from None
    for path in paths:
        print(f"wrote {path}")
    return 0
