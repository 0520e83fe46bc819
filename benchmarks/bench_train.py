"""Training-step speed: circuitkg's trainer against a hand-written PLL loop in plain torch, one process.

Part 1, the PLL step (squared CP, ComplEx and DistMult, float32, CPU unless --device): one call of
``Trainer._step`` (``pll_loss`` with weights (1, 1, 1), plus λ N3 with λ = 1e-2, the NaN guards,
backward, an Adam step) against the floor: the best simple torch for the same work,

* one gather per table per step (DistMult's and ComplEx's entity table: one gather of ``[s; o]``);
* ``log p(v | rest) = 2 log|φ| - log N_v`` with ``φ`` computed once for the three terms;
* ``N_v = qᵀ G_v q`` from a Gram ``G_v = XᵀX`` (one-matmul backward ``X (g + gᵀ)``), each Gram
  computed once per step (the entity Gram serves s and o), or ``Σ_x (q · x)²`` over all values
  when that costs fewer flops (``B |X| W < |X| W² + B W²``: the relation term at m = 237 may);
* ComplEx's quadratic forms at width 2K: ``q`` is the coefficient of ``[x_re | x_im]`` in ``φ``;
* the same N3 (ComplEx: on the moduli), ``loss.item()`` and the same Adam step.

Entities and relations are those of FB15k-237 (14,505 entities, 237 relations) and 100k entities;
the triples are uniform random ids (the data set is not shipped), which costs the same as real ones.
Before timing, both compute the loss and gradients of the same parameters: they must agree.
Times are medians of interleaved repeats. ``s/epoch`` is ms/step times the steps of one FB15k-237
epoch (272,115 training triples). ``peak MB`` is the resident-set growth of one step (after the timed ones) run in a
forked child (``ru_maxrss`` minus the RSS at the fork; glibc caches make it approximate), next
to the size of parameters plus Adam state.

Part 2, a 1-vs-all epoch in score form (UMLS ComplEx, rank 100, ``ce`` objective, batch 256, N3,
Adam): ``Trainer.train_epoch`` against a plain real-arithmetic loop (``q @ E.T`` and
``cross_entropy`` for (s, r, ?) and (?, r, o)) over the same batch order.

    python benchmarks/bench_train.py                      # full grid (a few minutes)
    python benchmarks/bench_train.py --quick              # FB15k-237 size, K = 100, B = 1000 only
    python benchmarks/bench_train.py --grid 14505:100:1000,100000:200:1000 --models cp
    python benchmarks/bench_train.py --no-pll             # only the 1-vs-all epoch
"""

from __future__ import annotations

import argparse
import contextlib
import ctypes
import os
import resource
import statistics
import time
from collections.abc import Callable

import torch
import torch.nn.functional as F
from floor_ops import gram

import circuitkg as ckg
from circuitkg.data.kg import KnowledgeGraph
from circuitkg.train.config import TrainConfig
from circuitkg.train.trainer import Trainer

FB_TRAIN = 272_115
REG = 1e-2
LR = 1e-2


def complex_coefficients(es, wr, eo):
    """Coefficients (B, 2K) of ``[s_re|s_im]``, ``[r_re|r_im]``, ``[o_re|o_im]`` in
    ``φ = Re <s, r, conj o> = Σ sr rr or + sr ri oi + si rr oi - si ri or``."""
    k = es.shape[1] // 2
    sr, si, rr, ri, orr, oi = es[:, :k], es[:, k:], wr[:, :k], wr[:, k:], eo[:, :k], eo[:, k:]
    q_s = torch.cat([rr * orr + ri * oi, rr * oi - ri * orr], dim=1)
    q_r = torch.cat([sr * orr + si * oi, sr * oi - si * orr], dim=1)
    q_o = torch.cat([sr * rr - si * ri, sr * ri + si * rr], dim=1)
    return q_s, q_r, q_o


class FloorPLL:
    """Hand-written squared PLL + N3 for ``model`` over its tables (see the module docstring)."""

    def __init__(self, model: str, tables: dict[str, torch.Tensor]):
        self.model = model
        self.tables = tables
        self.plans: dict[str, str] = {}

    def log_norm(self, name: str, q: torch.Tensor, grams: dict) -> torch.Tensor:
        """``log Σ_x (q · x)²`` over the rows ``x`` of table ``name``, by the cheaper plan."""
        table = self.tables[name]
        rows, width = table.shape
        batch = q.shape[0]
        gram_cost = (0 if name in grams else rows * width * width) + batch * width * width
        if batch * rows * width < gram_cost:
            self.plans[name] = "all"
            return (q @ table.T).square().sum(1).log()
        self.plans[name] = "gram"
        if name not in grams:
            grams[name] = gram(table)
        return ((q @ grams[name]) * q).sum(1).log()

    def loss(self, t: torch.Tensor) -> torch.Tensor:
        s, r, o = t[:, 0], t[:, 1], t[:, 2]
        T = self.tables
        grams: dict[str, torch.Tensor] = {}
        if self.model == "cp":
            es, wr, eo = T["subject"][s], T["relation"][r], T["object"][o]
            q_s, q_r, q_o = wr * eo, es * eo, es * wr
            names = ("subject", "relation", "object")
            factors = (es, wr, eo)
        else:
            both = T["entity"][torch.cat([s, o])]
            es, eo = both[: len(s)], both[len(s) :]
            wr = T["relation"][r]
            names = ("entity", "relation", "entity")
            if self.model == "distmult":
                q_s, q_r, q_o = wr * eo, es * eo, es * wr
                factors = (es, wr, eo)
            else:
                q_s, q_r, q_o = complex_coefficients(es, wr, eo)

                def modulus(x):
                    re, im = x.chunk(2, dim=-1)
                    return torch.sqrt(re * re + im * im + 1e-20)

                factors = (modulus(es), modulus(wr), modulus(eo))
        phi = (q_o * eo).sum(-1)
        log_phi2 = 2 * phi.abs().log()
        log_p = 3 * log_phi2
        for name, q in zip(names, (q_s, q_r, q_o), strict=True):
            log_p = log_p - self.log_norm(name, q, grams)
        n3 = sum(f.abs().pow(3).sum() for f in factors) / len(t)
        return -log_p.mean() + REG * n3


def synthetic_kg(n: int, m: int, triples: torch.Tensor) -> KnowledgeGraph:
    ents = [f"e{i}" for i in range(n)]
    rels = [f"r{i}" for i in range(m)]
    return KnowledgeGraph.from_vocabularies(
        f"random-{n}-{m}",
        ents,
        rels,
        {"train": triples, "valid": triples[:10], "test": triples[:10]},
    )


def tables_of(model: str, kge) -> dict[str, torch.Tensor]:
    if model == "cp":
        return {
            "subject": kge.subject.weight,
            "relation": kge.relation.weight,
            "object": kge.object.weight,
        }
    return {"entity": kge.entity.weight, "relation": kge.relation.weight}


def peak_mb(fn: Callable[[], None]) -> float:
    """Resident-set growth (MB) of one call of ``fn`` in a forked child; nan if fork fails."""
    with contextlib.suppress(OSError):
        ctypes.CDLL("libc.so.6").malloc_trim(0)
    read, write = os.pipe()
    pid = os.fork()
    if pid == 0:  # child
        os.close(read)
        try:
            with open("/proc/self/statm") as f:
                start = int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE") / 2**20
            fn()
            peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
            os.write(write, f"{peak - start}".encode())
        finally:
            os._exit(0)
    os.close(write)
    with os.fdopen(read) as f:
        text = f.read()
    os.waitpid(pid, 0)
    return float(text) if text else float("nan")


def run_interleaved(contenders: dict[str, Callable[[], None]], repeats: int) -> dict[str, float]:
    for fn in contenders.values():
        fn()  # warm-up
    samples: dict[str, list[float]] = {k: [] for k in contenders}
    for _ in range(repeats):
        for name, fn in contenders.items():
            start = time.perf_counter()
            fn()
            samples[name].append(time.perf_counter() - start)
    return {k: statistics.median(v) for k, v in samples.items()}


def check_pll(model: str, kge, batch: torch.Tensor, n: int, m: int, K: int) -> None:
    """circuitkg's objective + N3 and the floor's loss agree, value and gradients, in float64 (in
    float32, rounding in ``1/φ`` at tiny ``φ`` alone moves the gradients by up to 1e-3)."""
    from circuitkg.train.objectives import pll_loss

    ours = ckg.models.create_model(model, n, m, K, form="squared").to(batch.device)
    ref = ckg.models.create_model(model, n, m, K, form="squared").to(batch.device)
    ours.load_state_dict(kge.state_dict())
    ref.load_state_dict(kge.state_dict())
    ours, ref = ours.double(), ref.double()
    loss = pll_loss(ckg.compile(ours), batch) + REG * ckg_n3(ours, batch)
    grads = torch.autograd.grad(loss, list(tables_of(model, ours).values()))
    tables = tables_of(model, ref)
    ref_loss = FloorPLL(model, tables).loss(batch)
    ref_grads = torch.autograd.grad(ref_loss, list(tables.values()))
    compare(f"{model} PLL", loss, ref_loss, grads, ref_grads, list(tables), 1e-9)


def compare(what, loss, ref_loss, grads, ref_grads, names, tol) -> None:
    if abs(loss.item() - ref_loss.item()) > tol * max(1.0, abs(ref_loss.item())):
        raise AssertionError(f"{what}: loss {loss.item()} vs {ref_loss.item()}")
    for name, a, b in zip(names, grads, ref_grads, strict=True):
        err = ((a - b).norm() / b.norm()).item()
        if not err <= tol:
            raise AssertionError(f"{what}: gradient of {name}: relative error {err}")


def bench_pll(model, n, m, K, B, repeats, device, memory):
    torch.manual_seed(0)
    gen = torch.Generator().manual_seed(1)
    size = max(B * (repeats + 2), 10)
    triples = torch.stack(
        [
            torch.randint(0, n, (size,), generator=gen),
            torch.randint(0, m, (size,), generator=gen),
            torch.randint(0, n, (size,), generator=gen),
        ],
        dim=1,
    )
    kge = ckg.models.create_model(model, n, m, K, form="squared").to(device)
    floor_kge = ckg.models.create_model(model, n, m, K, form="squared").to(device)
    floor_kge.load_state_dict(kge.state_dict())
    batches = [triples[i * B : (i + 1) * B].to(device) for i in range(size // B)]
    check_pll(model, kge, batches[0], n, m, K)
    config = TrainConfig(
        model=model, form="squared", rank=K, objective="pll", reg="n3", reg_weight=REG, lr=LR,
        batch_size=B, eval_every=0,
    )  # fmt: skip
    trainer = Trainer(
        config, synthetic_kg(n, m, triples), kge, progress=False, log=lambda _: None, device=device
    )
    tables = tables_of(model, floor_kge)
    floor = FloorPLL(model, tables)
    floor_params = list(tables.values())
    floor_opt = torch.optim.Adam(floor_params, lr=LR)

    counter = {"ckg": 0, "floor": 0}

    def ckg_step():
        i = counter["ckg"] = (counter["ckg"] + 1) % len(batches)
        trainer._step(batches[i], 0, i)

    def floor_step():
        i = counter["floor"] = (counter["floor"] + 1) % len(batches)
        floor_opt.zero_grad(set_to_none=True)
        loss = floor.loss(batches[i])
        loss.backward()
        floor_opt.step()
        loss.item()

    times = run_interleaved({"floor": floor_step, "circuitkg": ckg_step}, repeats)
    mem = {}
    if memory:  # after the warm-up: library code and Adam's state are resident already
        mem = {"floor": peak_mb(floor_step), "circuitkg": peak_mb(ckg_step)}
    state_mb = 3 * sum(p.numel() for p in floor_params) * 4 / 2**20  # params + Adam's two moments
    return {"times": times, "mem": mem, "state_mb": state_mb, "plans": dict(floor.plans)}


def bench_crossover(model, n, m, K, B, repeats, device):
    """circuitkg's PLL step (+ N3, Adam) with every term summed out by the Gram plan, by the
    all-values plan, and by the plan :mod:`circuitkg.executor.summation` picks (``auto``)."""
    from circuitkg.executor import training_step
    from circuitkg.train.objectives import pll_loss

    torch.manual_seed(0)
    gen = torch.Generator().manual_seed(1)
    batches = [
        torch.stack([torch.randint(0, k, (B,), generator=gen) for k in (n, m, n)], 1).to(device)
        for _ in range(4)
    ]
    kge = ckg.models.create_model(model, n, m, K, form="squared").to(device)
    compiled = ckg.compile(kge)
    opt = torch.optim.Adam(kge.parameters(), lr=LR)
    counter = {"i": 0}

    def step(plan):
        def run():
            counter["i"] = i = (counter["i"] + 1) % len(batches)
            opt.zero_grad(set_to_none=True)
            compiled.summation_plan = plan
            with training_step():
                loss = pll_loss(compiled, batches[i]) + REG * ckg_n3(kge, batches[i])
            loss.backward()
            opt.step()

        return run

    return run_interleaved({p: step(p) for p in ("gram", "values", "auto")}, repeats)


def ckg_n3(kge, batch):
    from circuitkg.train.regularisers import n3

    return n3(kge, batch)


def bench_one_vs_all(repeats: int, device: str) -> dict[str, float]:
    from circuitkg.data import load

    kg = load("umls")
    config = TrainConfig(
        dataset="umls", model="complex", form="score", rank=100, objective="ce", reg="n3",
        reg_weight=REG, lr=LR, batch_size=256, eval_every=0,
    )  # fmt: skip
    torch.manual_seed(0)
    kge = ckg.models.create_model("complex", kg.num_entities, kg.num_relations, 100, form="score")
    floor_kge = ckg.models.create_model(
        "complex", kg.num_entities, kg.num_relations, 100, form="score"
    )
    floor_kge.load_state_dict(kge.state_dict())
    trainer = Trainer(config, kg, kge, progress=False, log=lambda _: None, device=device)
    floor_kge.to(device)
    E, W = floor_kge.entity.weight, floor_kge.relation.weight
    opt = torch.optim.Adam([E, W], lr=LR)
    train = kg.train.to(device)
    gen = torch.Generator().manual_seed(0)

    def modulus(x):
        re, im = x.chunk(2, dim=-1)
        return torch.sqrt(re * re + im * im + 1e-20)

    def floor_loss(t):
        s, r, o = t[:, 0], t[:, 1], t[:, 2]
        both = E[torch.cat([s, o])]
        es, eo = both[: len(t)], both[len(t) :]
        wr = W[r]
        q_s, _, q_o = complex_coefficients(es, wr, eo)
        loss = F.cross_entropy(q_o @ E.T, o) + F.cross_entropy(q_s @ E.T, s)
        n3 = sum(f.pow(3).sum() for f in (modulus(es), modulus(wr), modulus(eo))) / len(t)
        return loss + REG * n3

    batch = train[:256]
    ours = trainer.objective(trainer.compiled, batch) + REG * ckg_n3(kge, batch)
    ours_g = torch.autograd.grad(ours, [kge.entity.weight, kge.relation.weight])
    ref = floor_loss(batch)
    ref_g = torch.autograd.grad(ref, [E, W])
    compare("UMLS 1-vs-all", ours, ref, ours_g, ref_g, ["entity", "relation"], 1e-4)

    def floor_epoch():
        order = torch.randperm(len(train), generator=gen).to(device)
        total = 0.0
        for index in torch.split(order, 256):
            t = train[index]
            opt.zero_grad(set_to_none=True)
            loss = floor_loss(t)
            loss.backward()
            opt.step()
            total += loss.item() * len(t)
        return total

    epoch = {"i": 0}

    def ckg_epoch():
        epoch["i"] += 1
        trainer.train_epoch(epoch["i"])

    return run_interleaved({"floor": floor_epoch, "circuitkg": ckg_epoch}, repeats)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--models", default="cp,complex,distmult")
    parser.add_argument("--relations", type=int, default=237)
    parser.add_argument("--grid", default=None, help="n:K:B triples, e.g. 14505:100:1000")
    parser.add_argument("--no-memory", action="store_true")
    parser.add_argument("--no-pll", action="store_true")
    parser.add_argument("--no-ova", action="store_true", help="skip the 1-vs-all epoch")
    parser.add_argument(
        "--crossover", action="store_true",
        help="time circuitkg's step on the Gram plan, the all-values plan and its own pick, per grid cell",
    )  # fmt: skip
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    grid = [(14505, 100, 1000), (14505, 200, 1000), (14505, 100, 4000), (100000, 200, 1000)]
    if args.quick:
        grid = [(14505, 100, 1000)]
    if args.grid:
        grid = [tuple(int(v) for v in cell.split(":")) for cell in args.grid.split(",")]
    print(f"torch {torch.__version__}, {args.threads} threads, device {args.device}")
    if args.crossover:
        print(
            f"{'model':9} {'n':>6} {'K':>4} {'B':>5} {'gram ms':>9} {'values ms':>9} {'auto ms':>9}"
        )
        for n, K, B in grid:
            for model in args.models.split(","):
                t = bench_crossover(model, n, args.relations, K, B, args.repeats, args.device)
                print(
                    f"{model:9} {n:>6} {K:>4} {B:>5} {1e3 * t['gram']:9.1f} "
                    f"{1e3 * t['values']:9.1f} {1e3 * t['auto']:9.1f}",
                    flush=True,
                )
        return
    if not args.no_pll:
        print(
            f"{'model':9} {'n':>6} {'K':>4} {'B':>5} {'floor ms':>9} {'ckg ms':>9} {'ckg/floor':>9}"
            f" {'floor s/ep':>10} {'ckg s/ep':>9} {'state MB':>9} {'floor pk MB':>11}"
            f" {'ckg pk MB':>9}  floor plans"
        )
        for n, K, B in grid:
            for model in args.models.split(","):
                row = bench_pll(
                    model, n, args.relations, K, B, args.repeats, args.device, not args.no_memory
                )
                t, mem = row["times"], row["mem"]
                steps = -(-FB_TRAIN // B)
                print(
                    f"{model:9} {n:>6} {K:>4} {B:>5} {1e3 * t['floor']:9.1f} "
                    f"{1e3 * t['circuitkg']:9.1f} {t['circuitkg'] / t['floor']:9.2f} "
                    f"{steps * t['floor']:10.1f} {steps * t['circuitkg']:9.1f} "
                    f"{row['state_mb']:9.0f} {mem.get('floor', float('nan')):11.0f} "
                    f"{mem.get('circuitkg', float('nan')):9.0f}  "
                    + ",".join(f"{k}:{v}" for k, v in sorted(row["plans"].items())),
                    flush=True,
                )
    if not args.no_ova:
        t = bench_one_vs_all(args.repeats, args.device)
        print(
            f"UMLS ComplEx score-form 1-vs-all epoch (ce, K=100, B=256): floor "
            f"{t['floor']:.3f} s, circuitkg {t['circuitkg']:.3f} s, "
            f"ckg/floor {t['circuitkg'] / t['floor']:.2f}",
            flush=True,
        )


if __name__ == "__main__":
    main()
