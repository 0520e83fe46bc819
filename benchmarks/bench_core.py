"""Core executor speed: circuitkg vs the hand-written torch floor vs libcirkit, in one process.

Rows (squared models, float32, CPU unless --device):
  (a) log Z forward+backward                      n ∈ {2k, 15k}, m = 200, K ∈ {100, 1000}
  (b) mean log p of 4096 triples (+ log Z), fwd+bwd
  (c) log p(o | s, r) for 64 queries over all entities (no grad)

The floor is what one would write by hand for exactly this model: Gram matrices and their
Hadamard product for Z, gathers for scores, one matmul for conditionals. All three implementations
hold the same parameter values (checked before timing). Times are medians of interleaved repeats;
the ratios are what matters on a noisy machine.

    # in an env with libcirkit: benchmarks/.venv-peers (see benchmarks/peers/cirkit_kge.py)
    python benchmarks/bench_core.py                # full grid
    python benchmarks/bench_core.py --quick        # n=2k, K=100 only
    python benchmarks/bench_core.py --no-cirkit    # floor vs circuitkg only
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from collections.abc import Callable
from pathlib import Path

import torch

import circuitkg as ckg

sys.path.insert(0, str(Path(__file__).resolve().parent))

SIGNS = (1.0, 1.0, 1.0, -1.0)


def floor_fns(model: str, params: dict[str, torch.Tensor]) -> dict[str, Callable]:
    """Hand-written torch for the three queries of a squared CP or ComplEx model."""
    if model == "cp":
        S, R, O = params["subject"], params["relation"], params["object"]

        def log_z():
            return torch.log((S.T @ S * (R.T @ R) * (O.T @ O)).sum())

        def phi(t):
            return (S[t[:, 0]] * R[t[:, 1]] * O[t[:, 2]]).sum(-1)

        def cond(s, r):
            scores = 2 * torch.log((S[s] * R[r] @ O.T).abs())
            return scores - torch.logsumexp(scores, 1, keepdim=True)

    else:
        E, W = params["entity"], params["relation"]
        k = E.shape[1] // 2
        # term t reads block (s, r, o) of [Re | Im]: ReReRe, ReImIm, ImReIm, ImImRe
        blocks = ((0, 0, 0), (0, 1, 1), (1, 0, 1), (1, 1, 0))

        def log_z():
            ge, gw = E.T @ E, W.T @ W

            def blk(g, i, j):
                return g[i * k : (i + 1) * k, j * k : (j + 1) * k]

            total = 0.0
            for a, (sa, ra, oa) in zip(SIGNS, blocks, strict=True):
                for b, (sb, rb, ob) in zip(SIGNS, blocks, strict=True):
                    total = (
                        total + a * b * (blk(ge, sa, sb) * blk(gw, ra, rb) * blk(ge, oa, ob)).sum()
                    )
            return torch.log(total)

        def phi(t):
            es, wr, eo = E[t[:, 0]], W[t[:, 1]], E[t[:, 2]]
            sr, si, rr, ri, orr, oi = (
                es[:, :k],
                es[:, k:],
                wr[:, :k],
                wr[:, k:],
                eo[:, :k],
                eo[:, k:],
            )
            return (sr * rr * orr + sr * ri * oi + si * rr * oi - si * ri * orr).sum(-1)

        def cond(s, r):
            es, wr = E[s], W[r]
            sr, si, rr, ri = es[:, :k], es[:, k:], wr[:, :k], wr[:, k:]
            q = torch.cat(
                [sr * rr - si * ri, sr * ri + si * rr], dim=1
            )  # coefficient of [o_re | o_im]
            scores = 2 * torch.log((q @ E.T).abs())
            return scores - torch.logsumexp(scores, 1, keepdim=True)

    return {"log_z": log_z, "phi": phi, "cond": cond}


def timed(fn: Callable[[], None]) -> float:
    start = time.perf_counter()
    fn()
    return time.perf_counter() - start


def run_row(contenders: dict[str, Callable[[], None]], repeats: int) -> dict[str, float]:
    for fn in contenders.values():
        fn()  # warm-up
    samples: dict[str, list[float]] = {k: [] for k in contenders}
    for _ in range(repeats):
        for name, fn in contenders.items():
            samples[name].append(timed(fn))
    return {k: statistics.median(v) for k, v in samples.items()}


def bench(
    model: str, n: int, m: int, K: int, repeats: int, use_cirkit: bool, device: str
) -> list[dict]:
    torch.manual_seed(0)
    kge = ckg.models.create_model(model, n, m, K, form="squared").to(device)
    c = ckg.compile(kge)
    if model == "cp":
        params = {
            "subject": kge.subject.weight,
            "relation": kge.relation.weight,
            "object": kge.object.weight,
        }
    else:
        params = {"entity": kge.entity.weight, "relation": kge.relation.weight}
    floor = floor_fns(model, params)
    peer = None
    if use_cirkit:
        from peers.cirkit_kge import build_cirkit

        peer = build_cirkit(model, n, m, K, device=device, semiring="sum-product")
        if model == "cp":
            peer.set_embeddings({k: v.detach() for k, v in params.items()})
        else:
            e, w = params["entity"].detach(), params["relation"].detach()
            peer.set_embeddings(
                {
                    "entity_re": e[:, :K],
                    "entity_im": e[:, K:],
                    "relation_re": w[:, :K],
                    "relation_im": w[:, K:],
                }
            )
    gen = torch.Generator().manual_seed(1)
    triples = torch.stack(
        [
            torch.randint(0, n, (4096,), generator=gen),
            torch.randint(0, m, (4096,), generator=gen),
            torch.randint(0, n, (4096,), generator=gen),
        ],
        dim=1,
    ).to(device)
    s, r = triples[:64, 0], triples[:64, 1]

    # same numbers before timing anything
    with torch.no_grad():
        ref = floor["log_z"]().item()
        ours = c.log_partition().item()
        checks = {"log Z": (ours, ref)}
        if peer is not None:
            checks["log Z (cirkit)"] = (peer.log_partition().item(), ref)
        cond_ref = floor["cond"](s, r)
        # compare probabilities: log|x| of near-zero scores amplifies float32 rounding
        diff = (c.log_conditional("o", s=s, r=r).exp() - cond_ref.exp()).abs().max()
        checks["p(o|s,r)"] = (float(diff), 0.0)
    for what, (a, b) in checks.items():
        if abs(a - b) > 1e-3 * max(1.0, abs(b)):
            raise AssertionError(f"{model} n={n} K={K}: {what} disagrees: {a} vs {b}")

    def zero_grads():
        for p in list(kge.parameters()) + (list(peer.parameters()) if peer is not None else []):
            p.grad = None

    def step(fn):
        def run():
            zero_grads()
            fn().backward()

        return run

    rows = []
    log_z_c = {"floor": step(floor["log_z"]), "circuitkg": step(c.log_partition)}
    log_p_c = {
        "floor": step(
            lambda: (2 * torch.log(floor["phi"](triples).abs()) - floor["log_z"]()).mean()
        ),
        "circuitkg": step(lambda: c.log_prob(triples).mean()),
    }
    cond_c = {
        "floor": lambda: floor["cond"](s, r),
        "circuitkg": lambda: c.log_conditional("o", s=s, r=r),
    }
    if peer is not None:
        log_z_c["cirkit"] = step(peer.log_partition)
        log_p_c["cirkit"] = step(lambda: peer.log_prob(triples).mean())
        cond_c["cirkit"] = lambda: peer.log_conditional_o(s, r)
    for label, contenders, grad in (
        ("(a) log Z fwd+bwd", log_z_c, True),
        ("(b) log p 4096 + Z fwd+bwd", log_p_c, True),
        ("(c) p(o|s,r) 64 x all", cond_c, False),
    ):
        with torch.set_grad_enabled(grad):
            times = run_row(contenders, repeats)
        rows.append({"model": model, "n": n, "K": K, "query": label, **times})
    return rows


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--no-cirkit", action="store_true")
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--models", default="cp,complex")
    parser.add_argument("--sizes", default=None, help="n:K pairs, e.g. 2000:100,15000:1000")
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    grid = [(2000, 100)] if args.quick else [(2000, 100), (2000, 1000), (15000, 100), (15000, 1000)]
    if args.sizes:
        grid = [tuple(int(v) for v in pair.split(":")) for pair in args.sizes.split(",")]
    header = f"{'model':8} {'n':>6} {'K':>5}  {'query':28} {'floor ms':>9} {'ckg ms':>9} {'ckg/floor':>9}"
    header += "" if args.no_cirkit else f" {'cirkit ms':>10} {'cirkit/ckg':>10}"
    print(f"torch {torch.__version__}, {args.threads} threads, device {args.device}")
    print(header)
    for model in args.models.split(","):
        for n, K in grid:
            for row in bench(model, n, 200, K, args.repeats, not args.no_cirkit, args.device):
                line = (
                    f"{row['model']:8} {row['n']:>6} {row['K']:>5}  {row['query']:28} {1e3 * row['floor']:9.2f} "
                    f"{1e3 * row['circuitkg']:9.2f} {row['circuitkg'] / row['floor']:9.2f}"
                )
                if "cirkit" in row:
                    line += f" {1e3 * row['cirkit']:10.2f} {row['cirkit'] / row['circuitkg']:10.1f}"
                print(line, flush=True)


if __name__ == "__main__":
    main()
