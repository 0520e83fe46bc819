"""Sampling throughput of ComplEx² at FB15k-237 sizes, and KTD of trained models on UMLS.

Run from the repository root::

    python benchmarks/bench_sampling.py throughput --rank 200 --num-samples 256 --stages o,r,s
    python benchmarks/bench_sampling.py ktd --dataset umls --rank 50 --epochs 20
    CIRCUITKG_DATA=../shared/data/kg python benchmarks/bench_sampling.py ktd --dataset fb15k-237 \
        --rank 50 --epochs 1 --batch-size 1000 --threads 1

``throughput`` uses **random parameters** (the default squared initialisation): throughput does not
depend on training. It times the chain-rule sampler stage by stage through the public API:

* ``o``: ``sample(given={s, r})`` with ``N`` random ``(s, r)``: one ``p(o | s, r)`` row each;
* ``r``: ``sample(given={s})`` with ``N`` random ``s``: ``p(r | s)`` per distinct ``s``, then ``o``;
* ``s``: ``sample()`` unconditionally: ``p(s)`` once, then the two stages above.

``--form monotone`` times ComplEx+ with the top-down sampler instead (same stages, same API).

``ktd`` trains, with :func:`circuitkg.train.train`, a score-form ComplEx (1-vs-all) as the feature
extractor and ComplEx² with PLL and with MLE, draws ``--num-samples`` triples from each (and
uniformly), and reports KTD against the test triples (mean ± std over subsets, see
:mod:`circuitkg.eval.ktd`), next to paper 004's FB15k-237 row (uniform .589, PLL .326, MLE .102).
Every result is printed as one JSON line.
"""

from __future__ import annotations

import argparse
import json
import resource
import time

import torch

import circuitkg as ckg
from circuitkg.eval.ktd import kernel_triple_distance, uniform_triples
from circuitkg.sampling import sample

FB15K237 = {"num_entities": 14541, "num_relations": 237}


def _timed(fn):
    wall, cpu = time.perf_counter(), time.process_time()
    out = fn()
    return out, time.perf_counter() - wall, time.process_time() - cpu


def _report(**fields) -> None:
    fields["max_rss_gb"] = round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20, 2)
    print(json.dumps(fields), flush=True)


def throughput(args: argparse.Namespace) -> None:
    torch.manual_seed(0)
    torch.set_num_threads(args.threads)
    n, m = FB15K237["num_entities"], FB15K237["num_relations"]
    model = ckg.models.ComplEx(n, m, args.rank, form=args.form)
    compiled = ckg.compile(model, batch_chunk=args.batch_chunk)
    gen = torch.Generator().manual_seed(1)
    s = torch.randint(n, (args.num_samples,), generator=gen)
    r = torch.randint(m, (args.num_samples,), generator=gen)
    givens = {"o": {"s": s, "r": r}, "r": {"s": s}, "s": {}}
    for stage in args.stages.split(","):
        given = givens[stage]
        _, wall, cpu = _timed(
            lambda given=given: sample(compiled, args.num_samples, given=given, generator=gen)
        )
        _report(
            bench="sampling_throughput",
            model="complex",
            form=args.form,
            params="random",
            n=n,
            m=m,
            rank=args.rank,
            stage=stage,
            given=sorted(given),
            num_samples=args.num_samples,
            wall_s=round(wall, 2),
            cpu_s=round(cpu, 2),
            samples_per_s=round(args.num_samples / wall, 2),
            threads=torch.get_num_threads(),
        )


def ktd(args: argparse.Namespace) -> None:
    from circuitkg.data import load
    from circuitkg.train import TrainConfig, train

    torch.set_num_threads(args.threads)
    kg = load(args.dataset)
    base = TrainConfig(
        dataset=args.dataset,
        model="complex",
        rank=args.rank,
        epochs=args.epochs,
        batch_size=args.batch_size,
    )
    quiet = {"progress": False, "log": lambda line: None}
    features = train(base.replace(form="score", objective="ce"), kg, **quiet).model
    gen = torch.Generator().manual_seed(2)
    test = kg.test
    subset = min(args.subset_size, len(test))
    rows = {"uniform": uniform_triples(kg.num_entities, kg.num_relations, args.num_samples, gen)}
    for objective in ("pll", "mle"):
        result, train_s, _ = _timed(
            lambda objective=objective: train(
                base.replace(form="squared", objective=objective), kg, **quiet
            )
        )
        samples, sample_s, _ = _timed(
            lambda result=result: sample(result.compiled, args.num_samples, generator=gen)
        )
        rows[f"complex2_{objective}"] = samples
        _report(
            bench="ktd_training",
            dataset=args.dataset,
            objective=objective,
            train_s=round(train_s, 1),
            sample_s=round(sample_s, 2),
        )
    for name, triples in rows.items():
        dist = kernel_triple_distance(
            features, triples, test, args.num_subsets, subset, generator=gen
        )
        _report(
            bench="ktd",
            dataset=args.dataset,
            row=name,
            ktd=round(dist.mean, 4),
            std=round(dist.std, 4),
            num_samples=args.num_samples,
            subsets=dist.num_subsets,
            subset_size=dist.subset_size,
            feature_model=f"complex score rank {args.rank}, {args.epochs} epochs",
        )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    sub = parser.add_subparsers(dest="command", required=True)
    t = sub.add_parser("throughput", help="samples/s of ComplEx² at FB15k-237 sizes (CPU)")
    t.add_argument("--rank", type=int, default=200)
    t.add_argument("--form", default="squared", choices=["squared", "monotone"])
    t.add_argument("--num-samples", type=int, default=256)
    t.add_argument("--stages", default="o,r,s", help="comma-separated subset of o,r,s")
    t.add_argument("--batch-chunk", type=int, default=1024, help="CompiledCircuit batch_chunk")
    t.add_argument("--threads", type=int, default=torch.get_num_threads())
    k = sub.add_parser("ktd", help="KTD of ComplEx² (PLL, MLE) and uniform sampling")
    k.add_argument("--dataset", default="umls")
    k.add_argument("--rank", type=int, default=50)
    k.add_argument("--epochs", type=int, default=20)
    k.add_argument("--batch-size", type=int, default=256)
    k.add_argument("--num-samples", type=int, default=10_000)
    k.add_argument("--num-subsets", type=int, default=10)
    k.add_argument("--subset-size", type=int, default=10_000)
    k.add_argument("--threads", type=int, default=torch.get_num_threads())
    args = parser.parse_args()
    throughput(args) if args.command == "throughput" else ktd(args)


if __name__ == "__main__":
    main()
