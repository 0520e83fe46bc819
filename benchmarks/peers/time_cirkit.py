"""Rough CPU timings of the cirkit peer (``peers.cirkit_kge``).

Run from ``benchmarks/`` inside ``.venv-peers``::

    python -m peers.time_cirkit [--threads 2] [--out results.jsonl]

Each configuration runs in its own subprocess (fresh memory, hard timeout).  Queries:

* ``logZ_fb``: log Z forward + backward;
* ``logprob_fb``: mean log p over 4096 random triples, Z included, forward + backward;
* ``cond64``: ``log_conditional_o`` for 64 random (s, r) over all n objects, forward only.

A query whose first run exceeds ``--limit`` seconds (default 60) is reported as infeasible;
otherwise it is repeated (up to 5 more runs within ~20 s) and the median is reported.
"""

import argparse
import json
import resource
import statistics
import subprocess
import sys
import time

CONFIGS = [
    (model, n, 200, K) for model in ("cp", "complex") for n in (2000, 15000) for K in (100, 1000)
]


def _time(fn, limit: float) -> dict:
    """Wall and process-CPU seconds (the machine may be shared: CPU time / threads is the less
    contention-sensitive figure)."""
    t0, c0 = time.perf_counter(), time.process_time()
    fn()
    first = time.perf_counter() - t0
    first_cpu = time.process_time() - c0
    if first > limit:
        return {"status": "infeasible(>limit)", "first_s": first, "first_cpu_s": first_cpu}
    runs, cpus = [], []
    budget = time.perf_counter() + 20.0
    while len(runs) < 5 and time.perf_counter() < budget:
        t0, c0 = time.perf_counter(), time.process_time()
        fn()
        runs.append(time.perf_counter() - t0)
        cpus.append(time.process_time() - c0)
    return {
        "status": "ok",
        "first_s": first,
        "median_s": statistics.median(runs),
        "min_s": min(runs),
        "median_cpu_s": statistics.median(cpus),
        "runs": len(runs),
    }


def run_one(model: str, n: int, m: int, K: int, semiring: str, threads: int, limit: float) -> dict:
    import torch

    from peers.cirkit_kge import build_cirkit

    torch.set_num_threads(threads)
    torch.manual_seed(0)
    row: dict = {"model": model, "n": n, "m": m, "K": K, "semiring": semiring}
    t0 = time.perf_counter()
    kge = build_cirkit(model, n, m, K, semiring=semiring, init_std=K**-0.5)
    row["build_s"] = time.perf_counter() - t0
    params = [p for p in kge.parameters() if p.requires_grad]

    def log_z_fb():
        kge.zero_grad(set_to_none=True)
        kge.log_partition().backward()

    triples = torch.stack(
        [torch.randint(n, (4096,)), torch.randint(m, (4096,)), torch.randint(n, (4096,))], -1
    )

    def log_prob_fb():
        kge.zero_grad(set_to_none=True)
        (-kge.log_prob(triples).mean()).backward()

    s, r = torch.randint(n, (64,)), torch.randint(m, (64,))

    def cond():
        with torch.no_grad():
            out = kge.log_conditional_o(s, r)
        assert torch.isfinite(out).all()

    for name, fn in (("logZ_fb", log_z_fb), ("logprob_fb", log_prob_fb)):
        row[name] = _time(fn, limit)
    # cond64 can take many minutes: extrapolate from 4 queries first and skip if hopeless.
    t0 = time.perf_counter()
    with torch.no_grad():
        kge.log_conditional_o(s[:4], r[:4])
    est = (time.perf_counter() - t0) * 16
    if est > 2 * limit:
        row["cond64"] = {"status": "infeasible(estimated)", "estimate_s": est}
    else:
        row["cond64"] = _time(cond, limit)
    row["n_params"] = sum(p.numel() for p in params)
    row["peak_rss_gb"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20
    return row


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--limit", type=float, default=60.0)
    ap.add_argument("--timeout", type=float, default=600.0)
    ap.add_argument("--semirings", default="complex-lse-sum,sum-product")
    ap.add_argument("--out", default=None)
    ap.add_argument("--one", nargs=5, metavar=("MODEL", "N", "M", "K", "SEMIRING"))
    args = ap.parse_args()
    if args.one:
        model, n, m, K, semiring = args.one
        print(
            json.dumps(run_one(model, int(n), int(m), int(K), semiring, args.threads, args.limit))
        )
        return
    for semiring in args.semirings.split(","):
        for model, n, m, K in CONFIGS:
            cmd = [
                sys.executable,
                "-m",
                "peers.time_cirkit",
                "--threads",
                str(args.threads),
                "--limit",
                str(args.limit),
                "--one",
                model,
                str(n),
                str(m),
                str(K),
                semiring,
            ]
            try:
                proc = subprocess.run(cmd, capture_output=True, text=True, timeout=args.timeout)
                lines = [ln for ln in proc.stdout.splitlines() if ln.startswith("{")]
                if proc.returncode == 0 and lines:
                    row = json.loads(lines[-1])
                else:
                    row = {
                        "model": model,
                        "n": n,
                        "m": m,
                        "K": K,
                        "semiring": semiring,
                        "error": f"rc={proc.returncode} {proc.stderr.strip()[-300:]}",
                    }
            except subprocess.TimeoutExpired:
                row = {
                    "model": model,
                    "n": n,
                    "m": m,
                    "K": K,
                    "semiring": semiring,
                    "error": f"timeout>{args.timeout}s",
                }
            line = json.dumps(row)
            print(line, flush=True)
            if args.out:
                with open(args.out, "a") as f:
                    f.write(line + "\n")


if __name__ == "__main__":
    main()
