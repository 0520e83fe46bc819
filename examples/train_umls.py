"""Train ComplEx² (squared ComplEx, a generative KGE circuit) on UMLS with PLL, then query it.

Runs in about a minute on one CPU core:

    python examples/train_umls.py --out runs/umls-complex2

It prints the training progress, the test metrics (filtered MRR/Hits, test log-likelihood, ECE) and
the five most probable objects of one query with their exact probabilities p(o | s, r).
"""

from __future__ import annotations

import argparse

import torch

from circuitkg.data import load
from circuitkg.train import TrainConfig, evaluate, load_checkpoint, train


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--out", default=None, help="run folder for checkpoints")
    parser.add_argument("--epochs", type=int, default=30)
    args = parser.parse_args()

    kg = load("umls")
    config = TrainConfig(
        dataset="umls", model="complex", form="squared", rank=100, objective="pll",
        epochs=args.epochs, lr=1e-2, batch_size=256, reg="n3", reg_weight=1e-2, eval_every=5,
    )  # fmt: skip
    result = train(config, kg, out=args.out)
    print(evaluate(result.compiled, kg, "test"))

    compiled = result.compiled.eval()
    s, r = kg.entity_id("virus"), kg.relation_id("causes")
    with torch.no_grad():
        p_o = compiled.log_conditional("o", s=torch.tensor([s]), r=torch.tensor([r]))[0].exp()
    top = torch.topk(p_o, 5)
    print("p(o | s=virus, r=causes):")
    for p, o in zip(top.values.tolist(), top.indices.tolist(), strict=True):
        print(f"  {p:.3f}  {kg.id_to_entity[o]}")

    if args.out is not None:  # the best checkpoint reloads to the same model
        reloaded = load_checkpoint(args.out)
        print(f"reloaded {reloaded.spec.name} ({reloaded.spec.form}) from {reloaded.path}")


if __name__ == "__main__":
    main()
