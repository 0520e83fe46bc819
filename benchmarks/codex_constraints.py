"""CoDEx with its real entity types: MRR and Sem@k of ComplEx, ComplEx² and constrained ComplEx².

The schema is inferred from the training triples with the CoDEx entity types
(``codex-entity2types.json.gz``): for each relation, the types observed among its subjects and among
its objects. Models (``circuitkg.train``, Adam, N3, no early stopping):

* ``ComplEx``: score form, 1-vs-all cross-entropy;
* ``ComplEx²``: squared form, PLL;
* ``ComplEx² + schema``: the same trained parameters conditioned on the schema post hoc;
* ``D-ComplEx²``: squared form trained with PLL under the constraint (p ∝ φ²·c, paper 004).

Reported per rank: filtered MRR (both directions, realistic ties), Sem@1/10/100 (unfiltered top-k,
both directions; ``k``: the published definition, ``att``: denominators ``min(k, #allowed)``), the
training time, and the time of ``log Z`` forward+backward with and without the constraint (median
of repeats, same process).

    python benchmarks/codex_constraints.py --ranks 10 50 --epochs 10 --out codex.json
    python benchmarks/codex_constraints.py --dataset codex-m --ranks 200 --epochs 2 --out m.json

``--dataset`` is ``codex-s`` (default) or ``codex-m``; both read the same type file.
"""

from __future__ import annotations

import argparse
import gzip
import json
import statistics
import time
from pathlib import Path

import torch
from circuitkg.constraints import DomainSchema, constrain

import circuitkg as ckg
from circuitkg.data import load
from circuitkg.eval import semantic_at_k
from circuitkg.eval.ranking import evaluate_ranking, keyword_scorer
from circuitkg.train import TrainConfig, Trainer
from circuitkg.train.objectives import pll_loss

KS = (1, 10, 100)


def train_model(kg, bound, rank: int, form: str, objective: str, constrained: bool, args):
    """Train one model; ``constrained`` trains through the ConstrainedCircuit (D-ComplEx²)."""
    config = TrainConfig(
        dataset=kg.name, model="complex", form=form, rank=rank, objective=objective,
        lr=args.lr, batch_size=args.batch_size, epochs=args.epochs, eval_every=0,
        reg_weight=args.reg_weight, seed=args.seed,
    )  # fmt: skip
    trainer = Trainer(config, kg, progress=False, log=lambda line: print("   ", line, flush=True))
    if constrained:
        trainer.compiled = constrain(trainer.compiled, bound)
    start = time.perf_counter()
    result = trainer.fit()
    return trainer.compiled, result.model, time.perf_counter() - start


def evaluate(scorer, kg, bound) -> dict[str, float]:
    score_all = keyword_scorer(scorer.score_all)
    ranking = evaluate_ranking(
        score_all, kg.test, known_triples=kg.known_triples(), num_entities=kg.num_entities
    )
    out = {"mrr": ranking.mrr, "hits@10": ranking.hits_at(10)}
    for normalise, tag in (("k", ""), ("attainable", "att ")):
        sem = semantic_at_k(score_all, kg.test, bound, ks=KS, normalise=normalise).metrics()
        out |= {f"{tag}sem@{k}": sem[f"sem@{k}"] for k in KS}
    return out


def time_pair(plain, constrained, repeats: int) -> tuple[float, float]:
    """Median seconds of ``fn().backward()`` for both (after one warm-up call each), the two
    interleaved so that the machine's load falls on both alike; ``fn`` returns a scalar."""
    fns = (plain, constrained)
    times: tuple[list[float], list[float]] = ([], [])
    for fn in fns:
        fn().backward()
    for _ in range(repeats):
        for fn, out in zip(fns, times, strict=True):
            start = time.perf_counter()
            fn().backward()
            out.append(time.perf_counter() - start)
    return statistics.median(times[0]), statistics.median(times[1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--root", default="/work/shared/data/kg")
    parser.add_argument("--dataset", choices=("codex-s", "codex-m"), default="codex-s")
    parser.add_argument("--ranks", type=int, nargs="+", default=[10, 50])
    parser.add_argument("--epochs", type=int, default=10)
    parser.add_argument("--batch-size", type=int, default=1024)
    parser.add_argument("--lr", type=float, default=0.01)
    parser.add_argument("--reg-weight", type=float, default=1e-3)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", type=Path)
    parser.add_argument("--timing-only", action="store_true", help="only time log Z, no training")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)

    kg = load(args.dataset, root=args.root)
    with gzip.open(Path(args.root) / "codex-entity2types.json.gz") as f:
        entity_types = json.load(f)
    bound = DomainSchema.infer(kg, entity_types).bind(kg)
    print(kg, bound, bound.check(kg, ("train", "valid", "test")), sep="\n", flush=True)

    rows = []
    for rank in args.ranks:
        print(f"\n== rank {rank}", flush=True)
        torch.manual_seed(args.seed)
        probe = constrain(ckg.models.ComplEx(kg.num_entities, kg.num_relations, rank), bound)
        t_plain, t_constrained = time_pair(
            probe.compiled.log_partition, probe.log_partition, args.repeats
        )
        print(
            f"  log Z fwd+bwd: {t_plain * 1e3:.1f} ms, constrained {t_constrained * 1e3:.1f} ms "
            f"(ratio {t_constrained / t_plain:.1f})"
        )
        batch = kg.train[: args.batch_size]
        step_plain, step_constrained = time_pair(
            lambda c=probe.compiled, b=batch: pll_loss(c, b),
            lambda c=probe, b=batch: pll_loss(c, b),
            args.repeats,
        )
        print(
            f"  PLL step fwd+bwd (batch {len(batch)}): {step_plain * 1e3:.1f} ms, "
            f"constrained {step_constrained * 1e3:.1f} ms (ratio {step_constrained / step_plain:.1f})"
        )
        if args.timing_only:
            continue
        runs = [
            ("ComplEx", "score", "ce", False),
            ("ComplEx²", "squared", "pll", False),
            ("D-ComplEx²", "squared", "pll", True),
        ]
        for name, form, objective, constrained in runs:
            print(f"  training {name}", flush=True)
            scorer, model, seconds = train_model(
                kg, bound, rank, form, objective, constrained, args
            )
            scorer.eval()
            results = [(name, scorer)]
            if name == "ComplEx²":
                results.append(("ComplEx² + schema", constrain(scorer, bound)))
            for label, s in results:
                row = {"rank": rank, "model": label, "train_s": seconds, **evaluate(s, kg, bound)}
                row |= {"logZ_ms": t_plain * 1e3, "constrained_logZ_ms": t_constrained * 1e3}
                rows.append(row)
                print(
                    "   ",
                    {k: round(v, 4) if isinstance(v, float) else v for k, v in row.items()},
                    flush=True,
                )

    header = "| rank | model | MRR | Sem@1 | Sem@10 | Sem@100 | Sem@100 (att) | train s |"
    print("\n" + header + "\n|" + "---|" * 8)
    for r in rows:
        print(
            f"| {r['rank']} | {r['model']} | {r['mrr']:.3f} | {100 * r['sem@1']:.2f} | "
            f"{100 * r['sem@10']:.2f} | {100 * r['sem@100']:.2f} | {100 * r['att sem@100']:.2f} | "
            f"{r['train_s']:.0f} |"
        )
    if args.out:
        args.out.write_text(
            json.dumps({"args": vars(args) | {"out": str(args.out)}, "rows": rows}, indent=1)
        )


if __name__ == "__main__":
    main()
