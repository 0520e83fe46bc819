"""Sampling throughput of ComplEx² at FB15k-237 sizes, and KTD of trained models on UMLS.

Run from the repository root::

    python benchmarks/bench_sampling.py throughput --rank 200 --num-samples 10000 --stages s \
        --baselines floor,chain --baseline-samples 1000 --threads 1
    python benchmarks/bench_sampling.py throughput --entities 1000000 --rank 200 \
        --num-samples 1000 --stages s --baselines chain --baseline-samples 1000 --threads 1
    python benchmarks/bench_sampling.py ktd --dataset umls --rank 50 --epochs 20
    CIRCUITKG_DATA=../shared/data/kg python benchmarks/bench_sampling.py ktd --dataset fb15k-237 \
        --rank 50 --epochs 1 --batch-size 1000 --threads 1

``throughput`` uses **random parameters** (the default squared initialisation): throughput does not
depend on training. It times the sampler stage by stage through the public API:

* ``o``: ``sample(given={s, r})`` with ``N`` random ``(s, r)``: one ``p(o | s, r)`` each;
* ``r``: ``sample(given={s})`` with ``N`` random ``s``: ``p(r | s)`` per distinct ``s``, then ``o``;
* ``s``: ``sample()`` unconditionally, all three variables drawn.

``--baselines`` times, in the same process and on the same parameters, against what circuitkg is
compared with, and prints circuitkg's rate divided by theirs:

* ``chain``: the previous path, :func:`circuitkg.sampling.sample_sequential` (the chain rule in
  ``s, r, o`` order over one all-values ``log_conditional`` row per distinct prefix), on
  ``--baseline-samples`` samples;
* ``floor``: a hand-written ComplEx² chain rule in plain torch (:func:`floor_sample`): ``p(s)``
  from Gram matrices, ``p(r | s)`` by one GEMM per batch of subjects, ``p(o | s, r)`` by one GEMM
  over all entities; unconditional (stage ``s``) only.

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
from circuitkg.sampling import draw, sample, sample_sequential
from circuitkg.sampling.categorical import normalise_given

FB15K237 = {"num_entities": 14541, "num_relations": 237}


def _timed(fn):
    wall, cpu = time.perf_counter(), time.process_time()
    out = fn()
    return out, time.perf_counter() - wall, time.process_time() - cpu


def _report(**fields) -> None:
    fields["max_rss_gb"] = round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20, 2)
    print(json.dumps(fields), flush=True)


def floor_sample(entity: torch.Tensor, relation: torch.Tensor, n: int, gen, chunk: int = 64):
    """Hand-written exact ComplEx² sampling, ``(n, 3)`` triples ``(s, r, o)``.

    ``entity`` ``(n_e, 2K)`` and ``relation`` ``(m, 2K)`` hold ``[Re | Im]``;
    ``φ = Re <e_s, w_r, conj(e_o)> = c(s, r) · e_o`` with ``c = [x a - y b, x b + y a]``.
    ``p(s) ∝ e_s Q e_sᵀ`` (``Q`` from the entity and relation Grams, once), ``p(r | s) ∝
    c G cᵀ`` for all ``r`` by one GEMM per subject, ``p(o | s, r) ∝ (c · e_o)²`` by one GEMM over
    all entities per chunk of samples.
    """
    k = entity.shape[1] // 2
    g = entity.T @ entity  # (2K, 2K)
    gxx, gxy, gyy = g[:k, :k], g[:k, k:], g[k:, k:]
    a, b = relation[:, :k], relation[:, k:]
    saa, sab, sbb = a.T @ a, a.T @ b, b.T @ b
    # Σ_r c G cᵀ as a quadratic form in e_s = [x, y], from the relation Grams
    qxx = saa * gxx + 2 * sab * gxy + sbb * gyy
    qxy = -sab * gxx + 2 * saa * gxy + sab.T * gyy
    qyx = -sab.T * gxx - 2 * sbb * gxy + sab * gyy
    qyy = sbb * gxx - 2 * sab.T * gxy + saa * gyy
    q = torch.cat([torch.cat([qxx, qxy], 1), torch.cat([qyx, qyy], 1)], 0)
    p_s = ((entity @ q) * entity).sum(1).clamp_min(0)
    s = draw(torch.log(p_s).unsqueeze(0), torch.zeros(n, dtype=torch.long), gen)
    distinct, inverse = torch.unique(s, return_inverse=True)

    def coefficients(e: torch.Tensor, rel: torch.Tensor) -> torch.Tensor:
        x, y, ra, rb = e[..., :k], e[..., k:], rel[..., :k], rel[..., k:]
        return torch.cat([x * ra - y * rb, x * rb + y * ra], dim=-1)

    r = torch.empty_like(s)
    for start in range(0, distinct.numel(), chunk):
        e = entity[distinct[start : start + chunk]]
        c = coefficients(e.unsqueeze(1), relation.unsqueeze(0))  # (S, m, 2K)
        mass = ((c @ g) * c).sum(-1).clamp_min(0)  # one GEMM per subject
        rows = (inverse >= start) & (inverse < start + chunk)
        r[rows] = draw(torch.log(mass), inverse[rows] - start, gen)
    o = torch.empty_like(s)
    for start in range(0, n, chunk):
        c = coefficients(entity[s[start : start + chunk]], relation[r[start : start + chunk]])
        o[start : start + chunk] = draw(torch.log((c @ entity.T).square()), None, gen)
    return torch.stack([s, r, o], dim=1)


def throughput(args: argparse.Namespace) -> None:
    torch.manual_seed(0)
    torch.set_num_threads(args.threads)
    n, m = args.entities, FB15K237["num_relations"]
    model = ckg.models.ComplEx(n, m, args.rank, form=args.form)
    compiled = ckg.compile(model, batch_chunk=args.batch_chunk)
    gen = torch.Generator().manual_seed(1)
    s = torch.randint(n, (args.num_samples,), generator=gen)
    r = torch.randint(m, (args.num_samples,), generator=gen)
    givens = {"o": {"s": s, "r": r}, "r": {"s": s}, "s": {}}
    baselines = [b for b in args.baselines.split(",") if b]
    entity = compiled.expansions.bases("s")[0].full().detach()
    relation = compiled.expansions.bases("r")[0].full().detach()
    for stage in args.stages.split(","):
        given = givens[stage]
        with torch.no_grad():
            _, wall, cpu = _timed(
                lambda given=given: sample(compiled, args.num_samples, given=given, generator=gen)
            )
            rate = args.num_samples / wall
            ratios = {}
            for name in baselines:
                b = args.baseline_samples
                if name == "floor" and stage == "s" and args.form == "squared":
                    _, b_wall, _ = _timed(lambda b=b: floor_sample(entity, relation, b, gen))
                elif name == "chain":
                    sub = {v: x[:b] for v, x in given.items()}
                    ev = normalise_given(
                        compiled.variables, compiled.domains, sub, b, compiled.device
                    )
                    _, b_wall, _ = _timed(
                        lambda b=b, ev=ev: sample_sequential(compiled, b, ev, gen)
                    )
                else:
                    continue
                ratios[f"{name}_samples_per_s"] = round(b / b_wall, 2)
                ratios[f"circuitkg_over_{name}"] = round(rate * b_wall / b, 2)
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
            samples_per_s=round(rate, 2),
            **ratios,
            baseline_samples=args.baseline_samples if ratios else None,
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
    t.add_argument("--entities", type=int, default=FB15K237["num_entities"])
    t.add_argument("--rank", type=int, default=200)
    t.add_argument("--form", default="squared", choices=["squared", "monotone"])
    t.add_argument("--num-samples", type=int, default=256)
    t.add_argument("--stages", default="o,r,s", help="comma-separated subset of o,r,s")
    t.add_argument("--batch-chunk", type=int, default=1024, help="CompiledCircuit batch_chunk")
    t.add_argument("--baselines", default="", help="comma-separated subset of floor,chain")
    t.add_argument("--baseline-samples", type=int, default=1000)
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
