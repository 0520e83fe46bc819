"""Transductive ReFactor (L = ∞) against the lookup table it replaces (paper 000, Table 1).

Both train a DistMult score-form decoder with the 1-vs-all cross-entropy on the same data and
budget; ReFactor's entity table is its node-state cache, one layer per step and never reset, so the
only learned parameters are the relation embeddings. Prints the filtered test MRR of each::

    python benchmarks/encoders_transductive.py --dataset umls --rank 100 --epochs 30

``--reg-weight`` is the trainer's N3 on the batch's rows (for ReFactor it reaches the relation
embeddings only: the node states are a cache); ``--layer-n3`` puts N3 on the node states inside
the ReFactor layer's objective, the lookup table's N3 for ``L = ∞``.
"""

from __future__ import annotations

import argparse
import json
import sys
import time

import torch

import circuitkg as ckg


def run(kg, encoder: bool, args: argparse.Namespace) -> dict:
    rank, epochs, lr, seed = args.rank, args.epochs, args.lr, args.seed
    torch.manual_seed(seed)
    options = {}
    if encoder:
        options = {"encoder": "refactor", "layers": None, "preconditioner": args.preconditioner}
        options |= {} if args.step_size is None else {"step_size": args.step_size}
        options |= {"layer_n3": args.layer_n3} if args.layer_n3 else {}
    model = ckg.models.create("distmult", kg, rank=rank, form="score", **options)
    config = ckg.train.TrainConfig(
        epochs=epochs, batch_size=args.batch_size, eval_every=5, patience=3, lr=lr,
        objective="ce", reg_weight=args.reg_weight, seed=seed,
    )  # fmt: skip
    start = time.perf_counter()
    result = ckg.train.train(config, kg, model=model, progress=False, log=lambda line: None)
    report = ckg.eval.evaluate(result.compiled, kg, "test", calibration=False)
    return {
        "dataset": kg.name, "entity_table": "refactor(L=inf)" if encoder else "lookup",
        "rank": rank, "lr": lr, **{k: str(v) for k, v in options.items() if k != "encoder"},
        "batch_size": args.batch_size, "reg_weight": args.reg_weight,
        "epochs_run": result.state.epoch, "best_epoch": result.state.best_epoch,
        "test_mrr": report.as_dict()["mrr"], "test_hits@10": report.as_dict()["hits@10"],
        "seconds": time.perf_counter() - start,
    }  # fmt: skip


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--dataset", default="umls")
    parser.add_argument("--rank", type=int, default=100)
    parser.add_argument("--epochs", type=int, default=30)
    parser.add_argument("--lr", type=float, default=0.01)
    parser.add_argument("--batch-size", type=int, default=512)
    parser.add_argument("--reg-weight", type=float, default=0.0, help="N3 weight (0: none)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--results", default=None, help="a JSON-lines file to append each row to")
    parser.add_argument("--preconditioner", choices=("degree", "none"), default="degree")
    parser.add_argument("--step-size", type=float, default=None, help="the layer's η (ReFactor)")
    parser.add_argument("--layer-n3", type=float, default=0.0, help="N3 in the ReFactor layer")
    parser.add_argument(
        "--tables", nargs="+", choices=("lookup", "refactor"), default=["lookup", "refactor"]
    )
    args = parser.parse_args()
    torch.set_num_threads(1)
    kg = ckg.data.load(args.dataset)
    for table in args.tables:
        row = run(kg, table == "refactor", args)
        print(json.dumps(row), flush=True)
        if args.results:
            row["command"] = "python benchmarks/encoders_transductive.py " + " ".join(sys.argv[1:])
            with open(args.results, "a") as f:
                f.write(json.dumps(row) + "\n")


if __name__ == "__main__":
    main()
