"""ReFactor + DistMult on the GraIL inductive pairs: train on the training graph, test on the new one.

For each pair x layers x global term: a DistMult decoder (``--form score``, ``ce`` objective, by
default) over a ReFactor encoder with random features (``create(..., encoder="refactor")``) is
trained on the pair's training graph, validated every ``--eval-every`` epochs (filtered MRR on the
training graph's valid split; best parameters kept, early stopping after ``--patience``
evaluations without improvement, and at ``--max-minutes``), then bound to the inference graph
(``model.on(Graph.from_kg(split.inference))``) and evaluated on its test triples:

* full-ranking filtered MRR / Hits@10 (``circuitkg.eval.evaluate``, realistic ties);
* GraIL-protocol Hits@10 (``evaluate_sampled_ranking``: 49 sampled negatives per side);
* in a normalised form, the test log-likelihood beside ``uniform_log_likelihood``.

``--form squared --layer-objective softmax``: a squared DistMult decoder whose layers descend the
DistMult softmax objective (closed form). One JSON line per run goes to
``benchmarks/results/encoders_grail.jsonl``, with the wall time.

    python benchmarks/encoders_repro.py --pairs fb237_v1 --layers 3 6 --global-term on off
    python benchmarks/encoders_repro.py --pairs fb237_v1 --layers 6 --form squared \\
        --layer-objective softmax
"""

from __future__ import annotations

import argparse
import json
import platform
import shlex
import sys
import time
from pathlib import Path

import torch

import circuitkg as ckg
from circuitkg.compile import compile as compile_
from circuitkg.encoders import Graph
from circuitkg.eval.grail import evaluate_sampled_ranking, uniform_log_likelihood
from circuitkg.eval.ranking import keyword_scorer
from circuitkg.eval.runner import evaluate
from circuitkg.train import TrainConfig, Trainer
from circuitkg.train.tensor_state import load_parameters

RESULTS = Path(__file__).resolve().parent / "results" / "encoders_grail.jsonl"
GRAIL_ROOT = "/work/shared/data/inductive/grail"


def run(pair, layers, global_term, args):
    start = time.perf_counter()
    split = ckg.data.load_inductive(pair, root=None if pair == "fb237_v1" else GRAIL_ROOT)
    objective = args.objective or ("ce" if args.form == "score" else "pll")
    torch.manual_seed(args.seed)
    model = ckg.models.create(
        "distmult", split.train, rank=args.rank, form=args.form, encoder="refactor",
        layers=layers, global_term=global_term, objective=args.layer_objective,
        subgraph_batch=args.subgraph_batch, preconditioner=args.preconditioner,
        edge_dropout=args.edge_dropout, step_size=args.step_size, feature_std=args.feature_std,
        redraw_features=args.redraw_features, steps_per_layer=args.steps_per_layer,
        layer_n3=args.layer_n3,
    )  # fmt: skip
    config = TrainConfig(
        dataset=pair, model="distmult", form=args.form, rank=args.rank, objective=objective,
        reg_weight=args.reg_weight, lr=args.lr, batch_size=args.batch_size, epochs=args.epochs,
        eval_every=args.eval_every, patience=args.patience, seed=args.seed,
    )  # fmt: skip
    ckg.train.initialise(model, config.init)  # the squared forms' positive start, as train() does
    trainer = Trainer(config, split.train, model=model, progress=False, log=print)
    epochs_run, stopped = 0, "epochs"
    for epoch in range(1, args.epochs + 1):
        record = trainer.train_epoch(epoch)
        trainer.state.epoch = epochs_run = epoch
        if epoch % args.eval_every == 0 or epoch == args.epochs:
            record["valid_mrr"] = trainer.validation_mrr()
            stop = trainer._update_best(record["valid_mrr"], epoch)
            print(f"  {pair} L={layers} n[v]={global_term} epoch {epoch}: loss "
                  f"{record['loss']:.4f} valid MRR {record['valid_mrr']:.4f}", flush=True)  # fmt: skip
            if stop:
                stopped = "early stopping"
                break
        if (time.perf_counter() - start) / 60 > args.max_minutes:
            stopped = "time limit"
            break
    if trainer.best_params is not None:
        load_parameters(model, trainer.best_params, source="the best validation parameters")
    train_seconds = time.perf_counter() - start

    inference = model.on(Graph.from_kg(split.inference))
    compiled = compile_(inference)
    compiled.eval()
    kg = split.inference
    full = evaluate(compiled, kg, "test", calibration=False).as_dict()
    sampled = evaluate_sampled_ranking(
        keyword_scorer(compiled.score_all), kg.test, known_triples=kg.known_triples(),
        num_entities=kg.num_entities,
    ).metrics  # fmt: skip
    row = {
        "pair": pair, "layers": layers, "global_term": global_term, "rank": args.rank,
        "form": args.form, "objective": objective, "layer_objective": args.layer_objective,
        "lr": args.lr, "batch_size": args.batch_size, "reg_weight": args.reg_weight,
        "subgraph_batch": args.subgraph_batch, "preconditioner": args.preconditioner,
        "edge_dropout": args.edge_dropout, "step_size": args.step_size,
        "feature_std": args.feature_std, "redraw_features": args.redraw_features,
        "steps_per_layer": args.steps_per_layer, "layer_n3": args.layer_n3,
        "epochs_max": args.epochs,
        "epochs_run": epochs_run, "stopped": stopped, "best_epoch": trainer.state.best_epoch,
        "valid_mrr": trainer.state.best_metric,
        "test_mrr": full["mrr"], "test_hits@10": full["hits@10"],
        "grail_hits@10": sampled["hits@10"], "grail_mrr": sampled["mrr"],
        "test_log_likelihood": full["log_likelihood"],
        "uniform_log_likelihood": uniform_log_likelihood(kg.num_entities, kg.num_relations),
        "train_seconds": train_seconds, "wall_seconds": time.perf_counter() - start,
        "threads": torch.get_num_threads(), "torch": torch.__version__,
        "machine": platform.machine(),
        "command": shlex.join(["python", "benchmarks/encoders_repro.py", *sys.argv[1:]]),
    }  # fmt: skip
    print(json.dumps(row), flush=True)
    if not args.no_save:
        with Path(args.results).open("a") as f:
            f.write(json.dumps(row) + "\n")
    return row


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--pairs", nargs="+", default=["fb237_v1"])
    parser.add_argument("--layers", nargs="+", type=int, default=[6])
    parser.add_argument("--global-term", nargs="+", choices=("on", "off"), default=["on"])
    parser.add_argument("--rank", type=int, default=100)
    parser.add_argument("--epochs", type=int, default=40)
    parser.add_argument("--form", choices=("score", "squared", "monotone"), default="score")
    parser.add_argument(
        "--objective",
        choices=("ce", "pll", "mle"),
        default=None,
        help="decoder objective (default: ce in score form, pll otherwise)",
    )
    parser.add_argument("--layer-objective", choices=("decoder", "softmax"), default="decoder")
    parser.add_argument("--lr", type=float, default=1e-2)
    parser.add_argument("--batch-size", type=int, default=512)
    parser.add_argument("--reg-weight", type=float, default=0.0)
    parser.add_argument("--subgraph-batch", type=int, default=None)
    parser.add_argument(
        "--preconditioner",
        choices=("none", "degree"),
        default="none",
        help="ReFactor step: none (plain, η = N, the paper's) or degree",
    )
    parser.add_argument(
        "--edge-dropout", type=float, default=0.0,
        help="share of edges dropped from each training step's layer",
    )  # fmt: skip
    parser.add_argument(
        "--step-size", type=float, default=None,
        help="the layer's η (default: N for the plain step, 1 for degree)",
    )  # fmt: skip
    parser.add_argument("--feature-std", type=float, default=1.0, help="random features' σ")
    parser.add_argument("--layer-n3", type=float, default=0.0, help="N3 in the layer objective")
    parser.add_argument(
        "--redraw-features", action="store_true",
        help="fresh random features at every cache reset of training",
    )  # fmt: skip
    parser.add_argument(
        "--steps-per-layer", type=int, default=1,
        help="optimiser steps per layer depth (batches per epoch: the paper's schedule)",
    )  # fmt: skip
    parser.add_argument("--eval-every", type=int, default=5)
    parser.add_argument("--patience", type=int, default=3)
    parser.add_argument("--max-minutes", type=float, default=3.0)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--no-save", action="store_true")
    parser.add_argument("--results", default=str(RESULTS), help="the JSON-lines file appended to")
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    for pair in args.pairs:
        for layers in args.layers:
            for term in args.global_term:
                run(pair, layers, term == "on", args)


if __name__ == "__main__":
    main()
