"""Transductive ReFactor (L = ∞) against the lookup table it replaces (paper 000, Table 1).

Both train a DistMult score-form decoder with the 1-vs-all cross-entropy on the same data and
budget; ReFactor's entity table is its node-state cache, one layer per step and never reset, so the
only learned parameters are the relation embeddings. Prints the filtered test MRR of each::

    python benchmarks/encoders_transductive.py --dataset umls --rank 100 --epochs 30
"""

from __future__ import annotations

import argparse
import json
import time

import torch

import circuitkg as ckg


def run(kg, rank: int, epochs: int, encoder: bool, lr: float, seed: int) -> dict:
    torch.manual_seed(seed)
    options = {"encoder": "refactor", "layers": None} if encoder else {}
    model = ckg.models.create("distmult", kg, rank=rank, form="score", **options)
    config = ckg.train.TrainConfig(
        epochs=epochs, batch_size=512, eval_every=5, patience=3, lr=lr, objective="ce",
        reg_weight=0.0, seed=seed,
    )  # fmt: skip
    start = time.perf_counter()
    result = ckg.train.train(config, kg, model=model, progress=False, log=lambda line: None)
    report = ckg.eval.evaluate(result.compiled, kg, "test", calibration=False)
    return {
        "dataset": kg.name, "entity_table": "refactor(L=inf)" if encoder else "lookup",
        "rank": rank, "epochs_run": result.state.epoch, "best_epoch": result.state.best_epoch,
        "test_mrr": report.as_dict()["mrr"], "test_hits@10": report.as_dict()["hits@10"],
        "seconds": time.perf_counter() - start,
    }  # fmt: skip


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--dataset", default="umls")
    parser.add_argument("--rank", type=int, default=100)
    parser.add_argument("--epochs", type=int, default=30)
    parser.add_argument("--lr", type=float, default=0.01)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    torch.set_num_threads(1)
    kg = ckg.data.load(args.dataset)
    for encoder in (False, True):
        print(json.dumps(run(kg, args.rank, args.epochs, encoder, args.lr, args.seed)), flush=True)


if __name__ == "__main__":
    main()
