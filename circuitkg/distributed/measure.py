"""Measurements behind ``docs/scaling.md``: ``python -m circuitkg.distributed.measure``.

``step``: data-parallel training steps (the trainer's ``_step``: ``--objective`` of a ``--form``
model, by default squared PLL, plus N3 and Adam) of a model over ``--entities`` entities and 200
relations on uniform random triples, global batch ``--batch``, in ``--nproc`` processes
(``--sharded``: the entity tables split over them, :mod:`~circuitkg.distributed.sharded_training`,
instead of replicated); prints
the median step time (wall and this process's CPU), the median time of the gradient all-reduce
alone, the payload bytes per step handed to collectives, the parameter bytes and the peak RSS of
each process.

``query``: the sharded queries of :class:`~circuitkg.distributed.ShardedCircuit` (``log Z``
with the Gram cache cleared first, ``log p`` of ``--batch`` triples, per-shard conditionals and
top-10 of 64 queries, 1,000 samples) in ``--nproc`` processes; median wall and CPU times and
payload bytes.

Every process runs one torch thread; ``--nproc 1`` runs the same code in one process of a group of
one (its collectives are no-ops), the baseline.
"""

from __future__ import annotations

import argparse
import resource
import statistics
import time
from collections.abc import Callable

import torch

from circuitkg.compilers import create_model
from circuitkg.distributed.data_parallel import DataParallel
from circuitkg.distributed.launch import spawn
from circuitkg.distributed.sharded import ShardedCircuit, shard_model
from circuitkg.distributed.sharded_training import EntitySharded
from circuitkg.distributed.world import TRAFFIC, World
from circuitkg.train import TrainConfig, Trainer

RELATIONS = 200


def _timed(fn: Callable[[], object], repeats: int, world: World) -> tuple[float, float, int]:
    """Median wall and CPU seconds of ``fn`` in this process after one warm-up call (ranks start
    each repeat together), and the payload bytes of one call. CPU time is this process's work,
    unaffected by other processes on the cores (wall time is not, on a shared machine)."""
    fn()
    walls, cpus, before = [], [], TRAFFIC["bytes"]
    for _ in range(repeats):
        world.barrier()
        wall, cpu = time.perf_counter(), time.process_time()
        fn()
        walls.append(time.perf_counter() - wall)
        cpus.append(time.process_time() - cpu)
    payload = (TRAFFIC["bytes"] - before) // repeats
    return statistics.median(walls), statistics.median(cpus), payload


def _triples(n: int, size: int) -> torch.Tensor:
    generator = torch.Generator().manual_seed(0)
    columns = [torch.randint(0, k, (size,), generator=generator) for k in (n, RELATIONS, n)]
    return torch.stack(columns, dim=1)


def _peak_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def measure_step(world: World, args: argparse.Namespace) -> dict[str, float]:
    torch.manual_seed(0)
    config = TrainConfig(model=args.model, rank=args.rank, batch_size=args.batch,
                         form=args.form, objective=args.objective)  # fmt: skip
    model = create_model(args.model, args.entities, RELATIONS, args.rank, args.form)
    if args.sharded:
        model, parallel = shard_model(model, world), EntitySharded()
    else:
        parallel = DataParallel(world)
    trainer = Trainer(config, None, model, progress=False, log=lambda _: None, parallel=parallel)
    batch = _triples(args.entities, args.batch)
    step, step_cpu, step_bytes = _timed(lambda: trainer._step(batch, 1, 0), args.repeats, world)
    reduce, reduce_cpu, _ = _timed(
        lambda: trainer.parallel.reduce_gradients(trainer.params), args.repeats, world
    )
    params = sum(p.numel() * p.element_size() for p in trainer.params)
    return {"step_ms": 1e3 * step, "step_cpu_ms": 1e3 * step_cpu, "reduce_ms": 1e3 * reduce,
            "reduce_cpu_ms": 1e3 * reduce_cpu, "bytes_per_step": step_bytes,
            "params_mb": params / 2**20, "peak_rss_mb": _peak_mb()}  # fmt: skip


def measure_query(world: World, args: argparse.Namespace) -> dict[str, float]:
    torch.manual_seed(0)
    model = create_model(args.model, args.entities, RELATIONS, args.rank, "squared")
    sharded = ShardedCircuit(model, world)
    del model
    triples = _triples(args.entities, args.batch)
    queries = triples[:64]
    out: dict[str, float] = {}

    def log_z() -> None:
        sharded.compiled.grams.clear()
        sharded.log_partition()

    runs = {
        "log_z": log_z,
        "log_prob": lambda: sharded.log_prob(triples),
        "conditional_shard": lambda: sharded.log_conditional_shard(
            "o", s=queries[:, 0], r=queries[:, 1]
        ),
        "topk": lambda: sharded.topk("o", 10, s=queries[:, 0], r=queries[:, 1]),
        "sample_1000": lambda: sharded.sample(1000),
    }
    for name, fn in runs.items():
        wall, cpu, payload = _timed(fn, args.repeats, world)
        out[f"{name}_ms"], out[f"{name}_cpu_ms"] = 1e3 * wall, 1e3 * cpu
        out[f"{name}_bytes"] = payload
    out["peak_rss_mb"] = _peak_mb()
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("what", choices=("step", "query"))
    parser.add_argument("--nproc", type=int, default=2)
    parser.add_argument("--model", default="cp")
    parser.add_argument("--entities", type=int, default=100_000)
    parser.add_argument("--rank", type=int, default=64)
    parser.add_argument("--batch", type=int, default=1000)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--form", default="squared", help="step: the model's form")
    parser.add_argument("--objective", default="pll", help="step: the training objective")
    parser.add_argument(
        "--sharded", action="store_true", help="step: entity tables sharded, not replicated"
    )
    args = parser.parse_args()
    fn = measure_step if args.what == "step" else measure_query
    results = spawn(fn, args.nproc, args, timeout=590, collective_timeout=300)
    for rank, figures in enumerate(results):
        shown = ", ".join(
            f"{k} {v:.1f}" if isinstance(v, float) else f"{k} {v:,}" for k, v in figures.items()
        )
        print(f"{args.what} nproc={args.nproc} rank={rank}: {shown}")


if __name__ == "__main__":
    main()
