"""Relational attention encoder: speed against PyG's GATConv, and WN11 OOKB accuracy figures.

    python benchmarks/bench_attention.py speed [--split both-5000] [--width 100] [--heads 4]
    python benchmarks/bench_attention.py accuracy --encoder attention --model transe --split head-1000

``speed``: one forward + backward of the encoder over the split's graph with aux edges, against
``torch_geometric.nn.GATConv`` of the same width and heads with relation features added as edge
features (``edge_dim``) over the same ``2E`` directed pairs (inverse edges included), in one
process; median of ``--reps`` runs, ratio printed.

``accuracy``: trains the encoder with a decoder on the split's training graph (TransE: margin
objective; squared forms: PLL), then triple classification on ``model.on(split.graph_with_aux())``
with per-relation dev thresholds; for squared forms also the accuracy of ``log p(o | s, r)`` and
the mean test log-likelihood ``log p(s, r, o)`` of the true test triples. One JSON line per run.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import time
from pathlib import Path

import torch

import circuitkg as ckg
from circuitkg.train.objectives import make_objective, pll_loss

ROOT = os.environ.get(
    "CIRCUITKG_DATA", str(Path(__file__).resolve().parents[2] / "shared" / "data")
)


def load(split: str):
    setting, size = split.split("-")
    return ckg.data.load_ookb("wn11", setting=setting, size=int(size), root=ROOT)


def speed(args) -> dict:
    from torch_geometric.nn import GATConv

    split = load(args.split)
    graph = split.graph_with_aux()
    torch.manual_seed(0)
    model = ckg.models.create("transe", split.train, rank=args.width, form="score",
                              encoder="attention", heads=args.heads)  # fmt: skip
    bound = model.on(graph)
    table = bound.encoded_table
    encoder, decoder = table.encoder, table.decoder

    def ours():
        encoder.encode(graph, decoder).square().sum().backward()

    heads, width = args.heads, args.width
    conv = GATConv(width, width // heads, heads=heads, edge_dim=width, add_self_loops=False)
    x = torch.randn(graph.num_nodes, width, requires_grad=True)
    relations = torch.nn.Parameter(torch.randn(2 * graph.num_relations, width))
    centre, neighbour, rel = ckg.encoders.neighbourhood_pairs(graph)
    edge_index = torch.stack([neighbour, centre])  # messages flow neighbour -> centre

    def pyg():
        conv(x, edge_index, edge_attr=relations[rel]).square().sum().backward()

    out = {"split": args.split, "width": width, "heads": heads, "pairs": len(centre)}
    for name, fn in (("attention", ours), ("gatconv", pyg)):
        fn()  # warm-up
        times = []
        for _ in range(args.reps):
            start = time.perf_counter()
            fn()
            times.append(time.perf_counter() - start)
        out[f"{name}_s"] = statistics.median(times)
    out["ratio"] = out["attention_s"] / out["gatconv_s"]
    return out


def accuracy(args) -> dict:
    torch.manual_seed(args.seed)
    split = load(args.split)
    form = "score" if args.model == "transe" else "squared"
    options = {"heads": args.heads} if args.encoder == "attention" else {}
    model = ckg.models.create(args.model, split.train, rank=args.rank, form=form,
                              encoder=args.encoder, **options)  # fmt: skip
    compiled = ckg.compile(model)
    objective = (
        make_objective("margin", margin=args.margin, seed=args.seed)
        if form == "score"
        else (lambda c, t: pll_loss(c, t))
    )
    optimiser = torch.optim.Adam(model.parameters(), lr=args.lr)
    triples = split.train.train
    generator = torch.Generator().manual_seed(args.seed)
    start = time.perf_counter()
    model.train()
    for _ in range(args.epochs):
        order = torch.randperm(len(triples), generator=generator)
        for index in torch.split(order, args.batch_size):
            optimiser.zero_grad()
            loss = objective(compiled, triples[index])
            loss.backward()
            optimiser.step()
    train_s = time.perf_counter() - start
    model.eval()
    evaluation = ckg.eval.evaluate_ookb(model, split)
    out = {
        "split": args.split, "encoder": args.encoder, "model": args.model, "form": form,
        "rank": args.rank, "heads": args.heads, "epochs": args.epochs, "lr": args.lr,
        "accuracy": evaluation.score.accuracy, "dev_accuracy": evaluation.score.dev_accuracy,
        "final_loss": float(loss.detach()), "train_s": train_s,
    }  # fmt: skip
    if evaluation.conditional is not None:
        out["accuracy_conditional"] = evaluation.conditional.accuracy
        out["test_log_likelihood"] = evaluation.test_log_likelihood
        out["unseen_test_log_likelihood"] = evaluation.unseen_log_likelihood
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("mode", choices=["speed", "accuracy"])
    parser.add_argument("--split", default=None)
    parser.add_argument("--width", type=int, default=100)
    parser.add_argument("--heads", type=int, default=4)
    parser.add_argument("--reps", type=int, default=5)
    parser.add_argument("--encoder", default="attention", choices=["attention", "mean"])
    parser.add_argument("--model", default="transe")
    parser.add_argument("--rank", type=int, default=100)
    parser.add_argument("--epochs", type=int, default=10)
    parser.add_argument("--batch-size", type=int, default=2048)
    parser.add_argument("--lr", type=float, default=1e-2)
    parser.add_argument("--margin", type=float, default=1.0)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--threads", type=int, default=1)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    if args.split is None:
        args.split = "both-5000" if args.mode == "speed" else "head-1000"
    print(json.dumps(speed(args) if args.mode == "speed" else accuracy(args)), flush=True)


if __name__ == "__main__":
    main()
