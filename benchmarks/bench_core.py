"""Core executor speed: circuitkg vs the hand-written torch floor vs libcirkit, in one process.

Rows (squared models, float32, CPU unless --device):
  (a) log Z forward+backward                      n ∈ {2k, 15k}, m = 200, K ∈ {100, 1000}
  (b) mean log p of 4096 triples (+ log Z), fwd+bwd
  (c) log p(o | s, r) for 64 queries over all entities (no grad)

The floor is the best simple torch one would write by hand for exactly this model: Gram matrices
with a one-matmul backward (``X (g + g.T)``) and their Hadamard product for Z (ComplEx's sixteen
block products folded to two K x K sums through its complex Grams), gathers for scores, and one
matmul plus a row 2-norm for conditionals (``log p = 2 log|phi| - log sum phi^2``). All three implementations
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

from floor_ops import gram  # noqa: E402


def complex_log_z(ge: torch.Tensor, gw: torch.Tensor) -> torch.Tensor:
    """log Z of squared ComplEx from the ``2K x 2K`` Grams of ``[Re | Im]``, folded to two ``K x K``
    sums: with ``z = sum_k s_k r_k conj(o_k)`` and ``phi = Re z``,
    ``Z = sum phi^2 = 1/2 sum |A|^2 Re B + 1/2 sum |P|^2 Re Q`` for the Hermitian Grams ``A`` (entities),
    ``B`` (relations) and the plain ones ``P``, ``Q``."""
    k = ge.shape[0] // 2
    err, eri, eii = ge[:k, :k], ge[:k, k:], ge[k:, k:]
    wrr, wii = gw[:k, :k], gw[k:, k:]
    # A = (Grr + Gii) + i (Gir - Gri); P = (Grr - Gii) + i (Gri + Gir); Gir = Gri.T
    a2 = (err + eii).square() + (eri.T - eri).square()
    p2 = (err - eii).square() + (eri + eri.T).square()
    return torch.log(0.5 * ((a2 * (wrr + wii)).sum() + (p2 * (wrr - wii)).sum()))


def complex_query(es, wr):
    """coefficient ``q`` (B, 2K) of ``[o_re | o_im]`` in ``phi(s, r, o) = q . o``."""
    k = es.shape[1] // 2
    sr, si, rr, ri = es[:, :k], es[:, k:], wr[:, :k], wr[:, k:]
    return torch.cat([sr * rr - si * ri, sr * ri + si * rr], dim=1)


def floor_fns(model: str, params: dict[str, torch.Tensor]) -> dict[str, Callable]:
    """Hand-written torch for the three queries of a squared CP or ComplEx model: the best simple
    one (one-matmul Gram backward, ComplEx's Z folded to K x K, row-norm conditionals)."""
    if model == "cp":
        S, R, O = params["subject"], params["relation"], params["object"]

        def log_z():
            return torch.log((gram(S) * gram(R) * gram(O)).sum())

        def phi(t):
            return (S[t[:, 0]] * R[t[:, 1]] * O[t[:, 2]]).sum(-1)

        def cond(s, r):
            scores = (S[s] * R[r]) @ O.T
            return 2 * (
                scores.abs().log() - torch.linalg.vector_norm(scores, dim=1, keepdim=True).log()
            )

    else:
        E, W = params["entity"], params["relation"]

        def log_z():
            return complex_log_z(gram(E), gram(W))

        def phi(t):
            return (complex_query(E[t[:, 0]], W[t[:, 1]]) * E[t[:, 2]]).sum(-1)

        def cond(s, r):
            scores = complex_query(E[s], W[r]) @ E.T
            return 2 * (
                scores.abs().log() - torch.linalg.vector_norm(scores, dim=1, keepdim=True).log()
            )

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
    # and the same gradients, of log Z and of the mean log p, in float64: in float32, rounding in
    # 1/phi at tiny phi alone moves the log p gradient by up to 2% (ComplEx, K = 1000)
    k64 = ckg.models.create_model(model, n, m, K, form="squared").to(device)
    k64.load_state_dict(kge.state_dict(), strict=False)
    k64 = k64.double()
    c64 = ckg.compile(k64)
    p64 = {name: dict(k64.named_parameters())[f"{name}.weight"] for name in params}
    f64 = floor_fns(model, p64)
    for what, ours_fn, ref_fn in (
        ("grad log Z", c64.log_partition, f64["log_z"]),
        (
            "grad log p",
            lambda: c64.log_prob(triples).mean(),
            lambda: (2 * torch.log(f64["phi"](triples).abs()) - f64["log_z"]()).mean(),
        ),
    ):
        grads = [torch.autograd.grad(fn(), list(p64.values())) for fn in (ours_fn, ref_fn)]
        for name, a, b in zip(params, *grads, strict=True):
            err = ((a - b).norm() / b.norm()).item()
            if not err <= 1e-9:
                raise AssertionError(
                    f"{model} n={n} K={K}: {what} ({name}) disagrees: relative error {err}"
                )

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
    parser.add_argument("--threads", type=int, default=1)
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
