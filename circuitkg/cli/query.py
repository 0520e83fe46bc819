"""``circuitkg evaluate``, ``predict`` and ``sample``: queries on a checkpoint, by name.

Each loads the checkpoint with :func:`~circuitkg.cli.common.load_for_queries` (its dataset, a new
graph with ``--graph``, its schema or ``--schema``) on ``--device``. ``predict`` prints the top-k
completions of ``(s, r, ?)`` or ``(?, r, o)`` with their probabilities (cost: one all-entity
conditional, ``O(Kn)``), or, given the whole triple, its conditionals, ``log p`` and ``P(true)``.
"""

from __future__ import annotations

import argparse
import sys
import time

import torch

from circuitkg.cli.common import (
    LoadedCheckpoint,
    Queryable,
    UsageError,
    check_allowed,
    describe_checkpoint,
    load_for_queries,
    parse_given,
)
from circuitkg.cli.samples import write_samples_tsv
from circuitkg.compilers.base import KG_VARIABLES
from circuitkg.eval.runner import evaluate as evaluate_split
from circuitkg.eval.runner import triple_probabilities
from circuitkg.workflow import resolve_given, topk


def evaluate(args: argparse.Namespace) -> int:
    """Print ranking, log-likelihood and calibration metrics of a checkpoint on one split."""
    if args.graph_test is not None and args.graph is None:
        raise UsageError("--graph-test goes with --graph FILE (the graph its triples are on)")
    loaded = load_for_queries(
        args.checkpoint, args.data_root, args.schema, args.graph, args.graph_test, args.device
    )
    report = evaluate_split(
        loaded.circuit, loaded.kg, args.split, calibration=not args.no_calibration
    )
    print(describe_checkpoint(loaded))
    print(report)
    return 0


def predict(args: argparse.Namespace) -> int:
    """Print the top-k completions of (s, r, ?) or (?, r, o), or the probabilities of (s, r, o)."""
    if args.s is None and args.o is None:
        raise UsageError("predict needs --s, --o or both (with --r)")
    if args.k < 1:
        raise UsageError(f"-k must be positive, got {args.k}")
    loaded = load_for_queries(
        args.checkpoint, args.data_root, args.schema, args.graph, device=args.device
    )
    names = {"s": args.s, "r": args.r, "o": args.o}
    ids = resolve_given(loaded.kg, {v: name for v, name in names.items() if name is not None})
    check_allowed(loaded.circuit, ids, names)
    with torch.no_grad():
        if args.s is not None and args.o is not None:
            _print_triple(loaded, ids)
        else:
            _print_top_k(loaded, ids, args.k)
    return 0


def sample(args: argparse.Namespace) -> int:
    """Write exact samples of a checkpoint's distribution as name triples (TSV) to --out or stdout;
    a one-line summary goes to stderr."""
    if args.n < 0:
        raise UsageError(f"-n must be non-negative, got {args.n}")
    given = parse_given(args.given or [])
    loaded = load_for_queries(
        args.checkpoint, args.data_root, args.schema, args.graph, device=args.device
    )
    if loaded.circuit.form == "score":
        raise UsageError(
            f"checkpoint {loaded.checkpoint.path} holds a score-form model, which is unnormalised "
            "and cannot be sampled; train it with --form squared or --form monotone"
        )
    generator = torch.Generator(device=loaded.device).manual_seed(args.seed)
    to_stdout = args.out in (None, "-")
    start = time.perf_counter()
    write_samples_tsv(
        loaded.circuit, loaded.kg, args.n, sys.stdout if to_stdout else args.out, given, generator
    )
    seconds = time.perf_counter() - start
    rate = args.n / seconds if seconds > 0 else float("inf")
    where = "" if to_stdout else f" to {args.out}"
    under = f" under the schema {loaded.schema}" if loaded.schema else ""
    print(
        f"sampled {args.n} triples in {seconds:.2f} s ({rate:.0f} samples/s){where}{under}",
        file=sys.stderr,
    )
    return 0


def _kind(circuit: Queryable) -> str:
    """What the printed numbers are: probabilities, or softmaxes of scores (score form)."""
    return "p" if circuit.form != "score" else "softmax of scores"


def _print_top_k(loaded: LoadedCheckpoint, ids: dict[str, int], k: int) -> None:
    kg, circuit = loaded.kg, loaded.circuit
    target = "o" if "s" in ids else "s"
    top = [(p.id, p.probability) for p in topk(circuit, kg, target, k, **ids)]
    known = {tuple(t) for t in kg.known_triples().tolist()}
    rel = kg.id_to_relation[ids["r"]]
    anchor = kg.id_to_entity[ids["s" if target == "o" else "o"]]
    query = f"({anchor}, {rel}, ?)" if target == "o" else f"(?, {rel}, {anchor})"
    note = ""
    if loaded.schema is not None:
        note = f" under the schema {loaded.schema}"
        note += f" (only {len(top)} allowed)" if len(top) < k else ""
    print(
        f"top {len(top)} for {query}; {_kind(circuit)}({target} | ...){note}; * = known true triple"
    )
    for rank, (e, p) in enumerate(top, 1):
        triple = (ids["s"], ids["r"], e) if target == "o" else (e, ids["r"], ids["o"])
        mark = "*" if triple in known else " "
        print(f"{rank:>4}. {p:.4f} {mark} {kg.id_to_entity[e]}")


def _print_triple(loaded: LoadedCheckpoint, ids: dict[str, int]) -> None:
    kg, circuit, kind = loaded.kg, loaded.circuit, _kind(loaded.circuit)
    s, r, o = (torch.tensor([ids[v]], device=loaded.device) for v in KG_VARIABLES)
    names = (kg.id_to_entity[ids["s"]], kg.id_to_relation[ids["r"]], kg.id_to_entity[ids["o"]])
    under = f" under the schema {loaded.schema}" if loaded.schema is not None else ""
    print(f"triple ({', '.join(names)}){under}")
    p_o = circuit.log_conditional_of("o", o, s=s, r=r).exp().item()
    p_s = circuit.log_conditional_of("s", s, r=r, o=o).exp().item()
    print(f"  {kind}(o | s, r) = {p_o:.4g}")
    print(f"  {kind}(s | r, o) = {p_s:.4g}")
    triple = torch.stack([s, r, o], dim=1)
    if circuit.form != "score":
        print(f"  log p(s, r, o) = {circuit.log_prob(triple).item():.4f}")
    print(f"  P(true) = {triple_probabilities(circuit, triple).item():.4f}")
