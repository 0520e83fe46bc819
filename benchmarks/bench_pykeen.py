"""Training speed against PyKEEN on the same work: ComplEx, d = 100, 1-vs-all, batch 256, Adam, UMLS.

Both libraries train in this one process on one torch thread: ComplEx with 100 complex dimensions
(200 reals per embedding), the "symmetric" 1-vs-all cross-entropy (PyKEEN's
``SymmetricLCWATrainingLoop``: the softmax over all heads plus the softmax over all tails of each
training triple; circuitkg's ``ce`` objective), mini-batches of 256 in a shuffled order, Adam at the
same learning rate, the same initialisation N(0, 1e-3²) (circuitkg's default for score forms), no
regulariser (so the loops do the same
arithmetic). Epochs of the runs are interleaved so that changes in machine load hit all of them
alike. It prints seconds per epoch (wall clock and process CPU time, medians over the epochs after
the first), their ratio, the filtered test MRR of each (both computed by
circuitkg's ``evaluate_ranking``, realistic ties, both directions, the same filter), and the epoch
time of circuitkg's ComplEx² trained with PLL.

Run in the benchmark environment (PyKEEN and circuitkg installed)::

    benchmarks/.venv-peers/bin/python benchmarks/bench_pykeen.py --epochs 20 \
        --save benchmarks/results/speed.json

(``results_table.py --write`` puts the saved figures into docs/results.md.)
"""

from __future__ import annotations

import argparse
import functools
import json
import statistics
import time
from collections.abc import Callable
from pathlib import Path

import torch

from circuitkg.data import KnowledgeGraph, load
from circuitkg.eval import evaluate_ranking, keyword_scorer
from circuitkg.train import TrainConfig, Trainer


class Run:
    """One training run: ``epoch()`` trains one epoch, ``score_all`` ranks; times are recorded.

    ``train_one_epoch`` may return its own ``(wall, cpu)`` timing of the epoch (PyKEEN: from the
    first batch to the end of the epoch, leaving out the set-up of each ``train()`` call), which
    replaces the timing around the call.
    """

    def __init__(
        self, name: str, train_one_epoch: Callable[[], tuple[float, float] | None], score_all
    ) -> None:
        self.name, self._train_one_epoch, self.score_all = name, train_one_epoch, score_all
        self.wall: list[float] = []
        self.cpu: list[float] = []

    def epoch(self) -> None:
        w, c = time.perf_counter(), time.process_time()
        inner = self._train_one_epoch()
        wall, cpu = (
            inner if inner is not None else (time.perf_counter() - w, time.process_time() - c)
        )
        self.wall.append(wall)
        self.cpu.append(cpu)

    def seconds_per_epoch(self, clock: str) -> float:
        """Median over the epochs after the first (warm-up)."""
        values = getattr(self, clock)
        return statistics.median(values[1:] or values)


def circuitkg_run(name: str, kg: KnowledgeGraph, args, form: str, objective: str) -> Run:
    config = TrainConfig(
        dataset=kg.name, model="complex", form=form, rank=args.dim, objective=objective,
        reg="none", optimizer="adam", lr=args.lr, batch_size=args.batch_size, epochs=args.epochs,
        eval_every=0, seed=args.seed,
    )  # fmt: skip
    trainer = Trainer(config, kg, progress=False, log=lambda line: None)
    counter = iter(range(1, args.epochs + 1))

    def epoch() -> None:
        trainer.compiled.train()
        trainer.train_epoch(next(counter))
        trainer.compiled.eval()

    return Run(name, epoch, keyword_scorer(trainer.compiled.score_all))


def pykeen_run(kg: KnowledgeGraph, args) -> Run:
    from pykeen.training.callbacks import TrainingCallback

    class EpochClock(TrainingCallback):
        """(wall, cpu) seconds from the first batch of an epoch to its end."""

        def __init__(self) -> None:
            super().__init__()
            self.times: list[tuple[float, float]] = []
            self.start: tuple[float, float] | None = None

        def pre_batch(self, **kwargs) -> None:
            if self.start is None:
                self.start = (time.perf_counter(), time.process_time())

        def post_epoch(self, epoch: int, epoch_loss: float, **kwargs) -> None:
            wall, cpu = self.start
            self.times.append((time.perf_counter() - wall, time.process_time() - cpu))
            self.start = None

    from pykeen.losses import CrossEntropyLoss
    from pykeen.models import ComplEx
    from pykeen.training import SymmetricLCWATrainingLoop
    from pykeen.triples import TriplesFactory

    factory = TriplesFactory(
        mapped_triples=kg.train,
        entity_to_id=kg.entity_to_id,
        relation_to_id=kg.relation_to_id,
        create_inverse_triples=False,
    )
    init = functools.partial(torch.nn.init.normal_, std=args.init_std)
    torch.manual_seed(args.seed)
    model = ComplEx(
        triples_factory=factory, embedding_dim=args.dim, loss=CrossEntropyLoss(),
        entity_initializer=init, relation_initializer=init, regularizer=None, random_seed=args.seed,
    )  # fmt: skip
    optimizer = torch.optim.Adam(model.parameters(), lr=args.lr)
    loop = SymmetricLCWATrainingLoop(model=model, triples_factory=factory, optimizer=optimizer)

    clock = EpochClock()

    def epoch() -> tuple[float, float]:
        loop.train(
            triples_factory=factory, num_epochs=len(clock.times) + 1, batch_size=args.batch_size,
            use_tqdm=False, use_tqdm_batch=False, continue_training=bool(clock.times),
            callbacks=[clock],
        )  # fmt: skip
        model.eval()
        return clock.times[-1]

    def score_all(target: str, anchor: torch.Tensor, relation: torch.Tensor) -> torch.Tensor:
        if target == "o":
            return model.score_t(torch.stack([anchor, relation], dim=1))
        return model.score_h(torch.stack([relation, anchor], dim=1))

    return Run("PyKEEN ComplEx (SymmetricLCWA)", epoch, score_all)


def test_mrr(run: Run, kg: KnowledgeGraph) -> float:
    known = kg.known_triples()
    return evaluate_ranking(
        run.score_all, kg.test, known_triples=known, num_entities=kg.num_entities
    ).mrr


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--dataset", default="umls")
    parser.add_argument("--epochs", type=int, default=20)
    parser.add_argument("--dim", type=int, default=100)
    parser.add_argument("--batch-size", type=int, default=256)
    parser.add_argument("--lr", type=float, default=1e-2)
    parser.add_argument("--init-std", type=float, default=1e-3)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--skip-pykeen", action="store_true")
    parser.add_argument("--save", default=None, help="write the figures to this JSON file")
    args = parser.parse_args()
    torch.set_num_threads(1)
    kg = load(args.dataset)
    print(f"{kg!r}; ComplEx d={args.dim}, 1-vs-all both directions, batch {args.batch_size}, "
          f"Adam lr {args.lr}, {args.epochs} epochs, 1 thread")  # fmt: skip

    ours = circuitkg_run("circuitkg ComplEx (ce)", kg, args, "score", "ce")
    theirs = None if args.skip_pykeen else pykeen_run(kg, args)
    squared = circuitkg_run("circuitkg ComplEx² (PLL)", kg, args, "squared", "pll")
    runs = [r for r in (ours, theirs, squared) if r is not None]
    for _ in range(args.epochs):  # interleaved, so load changes on the machine hit all runs alike
        for run in runs:
            run.epoch()
    rows = {
        run.name: {
            "seconds_per_epoch_wall": run.seconds_per_epoch("wall"),
            "seconds_per_epoch_cpu": run.seconds_per_epoch("cpu"),
            "test_mrr": test_mrr(run, kg),
        }
        for run in runs
    }
    print(f"{'':32} {'s/epoch wall':>13} {'s/epoch CPU':>12} {'test MRR':>9}")
    for name, row in rows.items():
        print(
            f"{name:32} {row['seconds_per_epoch_wall']:13.4f} "
            f"{row['seconds_per_epoch_cpu']:12.4f} {row['test_mrr']:9.4f}"
        )
    ratios = {}
    if theirs is not None:
        for clock in ("wall", "cpu"):
            ratios[clock] = theirs.seconds_per_epoch(clock) / ours.seconds_per_epoch(clock)
            print(f"PyKEEN / circuitkg time per epoch ({clock} clock): {ratios[clock]:.2f}x")
    if args.save:
        setting = {k: v for k, v in vars(args).items() if k != "save"}
        record = {"setting": setting, "runs": rows, "pykeen_over_circuitkg": ratios}
        Path(args.save).write_text(json.dumps(record, indent=2))


if __name__ == "__main__":
    main()
