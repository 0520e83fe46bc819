"""Entity prediction with unseen entities: Head-R / Tail-R splits of FB15k-237 (paper 003, section 5.1).

Builds the split (:func:`circuitkg.data.unseen_entity_split`, deterministic for ``--seed``), trains
an encoder and a decoder on its training graph with the library's :class:`~circuitkg.train.Trainer`
(TransE: margin objective; squared forms: PLL), binds the model to the graph with aux edges and
ranks every test triple's hidden (unseen) entity against all entities, filtered by every known true
triple (:func:`circuitkg.eval.evaluate_unseen_ranking`). One JSON line per run::

    python benchmarks/unseen_ranking.py --side head --ratio 0.05 --encoder mean --model transe
    python benchmarks/unseen_ranking.py --side tail --ratio 0.1 --encoder attention \\
        --model distmult --form squared --objective pll

Not part of the test suite.
"""

from __future__ import annotations

import argparse
import json
import os
import time
from pathlib import Path

import torch

import circuitkg as ckg
from circuitkg.data import load, unseen_entity_split
from circuitkg.eval import evaluate_unseen_ranking
from circuitkg.train import TrainConfig, Trainer

ROOT = os.environ.get(
    "CIRCUITKG_DATA", str(Path(__file__).resolve().parents[2] / "shared" / "data" / "kg")
)


def run(args: argparse.Namespace) -> dict:
    kg = load(args.dataset, ROOT)
    split = unseen_entity_split(kg, args.side, args.ratio, seed=args.seed)
    torch.manual_seed(args.seed)
    options = {"heads": args.heads} if args.encoder == "attention" else {}
    model = ckg.models.create(args.model, split.train, rank=args.rank, form=args.form,
                              encoder=args.encoder, **options)  # fmt: skip
    config = TrainConfig(
        dataset=split.name, model=args.model, form=args.form, rank=args.rank,
        objective=args.objective, epochs=args.epochs, batch_size=args.batch_size, lr=args.lr,
        eval_every=0, seed=args.seed,
    )  # fmt: skip
    start = time.perf_counter()
    result = Trainer(config, split.train, model, progress=False, log=lambda _: None).fit()
    train_s = time.perf_counter() - start
    result.model.eval()
    ranking = evaluate_unseen_ranking(result.model, split)
    return {
        **split.statistics(), "encoder": args.encoder, "model": args.model, "form": args.form,
        "objective": args.objective, "rank": args.rank, "epochs": args.epochs,
        "batch_size": args.batch_size, "lr": args.lr, "train_s": train_s, **ranking.metrics(),
    }  # fmt: skip


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--dataset", default="fb15k-237")
    parser.add_argument("--side", default="head", choices=["head", "tail"])
    parser.add_argument("--ratio", type=float, default=0.05)
    parser.add_argument("--encoder", default="mean", choices=["mean", "attention", "refactor"])
    parser.add_argument("--model", default="transe")
    parser.add_argument("--form", default="score")
    parser.add_argument("--objective", default="margin")
    parser.add_argument("--rank", type=int, default=100)
    parser.add_argument("--heads", type=int, default=4)
    parser.add_argument("--epochs", type=int, default=4)
    parser.add_argument("--batch-size", type=int, default=8192)
    parser.add_argument("--lr", type=float, default=0.01)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--threads", type=int, default=1)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    print(json.dumps(run(args)), flush=True)


if __name__ == "__main__":
    main()
