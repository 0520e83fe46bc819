"""The ``circuitkg`` command: ``train``, ``evaluate``, ``predict`` and ``info``.

``circuitkg train --dataset umls --model complex --form squared`` trains with the defaults of
:class:`~circuitkg.train.TrainConfig`, prints the test metrics and, with ``--out DIR``, writes the
checkpoints ``DIR/best`` and ``DIR/last`` and ``DIR/metrics.json``. Unknown names (model, form,
dataset, entity, relation) and unusable checkpoints end with a one-line message and exit code 2;
a diverged run with exit code 1.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Sequence

import torch

from circuitkg.compile import compile as compile_
from circuitkg.compilers import MODELS, create_model
from circuitkg.data import EXTERNAL_DATASETS, SHIPPED_DATASETS, KnowledgeGraph, load
from circuitkg.errors import CircuitKGError
from circuitkg.eval.runner import evaluate, triple_probabilities
from circuitkg.train import (
    TrainConfig,
    Trainer,
    TrainingDivergedError,
    init_from_checkpoint,
    load_checkpoint,
)
from circuitkg.train.config import ConfigError, check_choice
from circuitkg.train.trainer import build_model

FORMS = ("score", "monotone", "squared")
#: CLI flags that map one-to-one onto TrainConfig fields
_TRAIN_FIELDS = {
    "dataset": "dataset",
    "data_root": "data_root",
    "model": "model",
    "form": "form",
    "rank": "rank",
    "epochs": "epochs",
    "batch_size": "batch_size",
    "lr": "lr",
    "optimizer": "optimizer",
    "objective": "objective",
    "seed": "seed",
    "eval_every": "eval_every",
    "patience": "patience",
    "loss": "loss",
    "alpha": "alpha",
    "init": "init",
}


#: torch's own thread count, used unless --threads is given
_DEFAULT_THREADS = torch.get_num_threads()
#: without --threads, graphs with fewer entities than this train on one thread: their ops are so
#: small that thread synchronisation dominates (UMLS ComplEx² epochs: 2 s on one thread, up to 26 s
#: on two when another process shares the cores)
SMALL_GRAPH = 5000


class UsageError(CircuitKGError):
    """A command-line option has an unusable value."""


def main(argv: Sequence[str] | None = None) -> int:
    """Run the command line ``argv`` (default ``sys.argv[1:]``); returns the exit code."""
    args = _parser().parse_args(argv)
    try:
        if args.threads is not None and args.threads < 1:
            raise UsageError(f"--threads must be positive, got {args.threads}")
        torch.set_num_threads(args.threads or _DEFAULT_THREADS)
        return args.handler(args)
    except TrainingDivergedError as err:
        print(f"circuitkg: {err}", file=sys.stderr)
        return 1
    except (CircuitKGError, FileNotFoundError) as err:
        print(f"circuitkg: error: {err}", file=sys.stderr)
        return 2


# --- commands ------------------------------------------------------------------------------------
def _train(args: argparse.Namespace) -> int:
    log = print if args.quiet else None
    if args.resume:
        kg = _load_dataset(load_checkpoint(args.resume).config.dataset, args.data_root)
        trainer = Trainer.resume(
            args.resume, kg, epochs=args.epochs, out=args.out, progress=not args.quiet, log=log
        )
        print(f"resuming {args.resume} after epoch {trainer.state.epoch}")
    else:
        config = _train_config(args)
        kg = _load_dataset(config.dataset, config.data_root)
        model = build_model(config, kg)
        if args.init_from:
            copied = init_from_checkpoint(model, args.init_from)
            print(f"initialised {', '.join(copied)} from {args.init_from}")
        print(
            f"training {config.model} ({config.form}, rank {config.rank}, "
            f"{model.num_parameters():,} parameters) on {kg!r} with {config.objective}"
        )
        trainer = Trainer(config, kg, model, out=args.out, progress=not args.quiet, log=log)
    result = trainer.fit()
    state = result.state
    seconds = sum(r["seconds"] for r in state.history)
    print(f"trained {state.epoch} epochs in {seconds:.1f} s of training steps")
    if state.best_epoch is not None:
        print(f"best validation MRR {state.best_metric:.4f} at epoch {state.best_epoch}")
    report = evaluate(result.compiled, kg, "test", batch_size=result.config.eval_batch_size)
    print(report)
    if result.out is not None:
        metrics = {"test": report.as_dict(), "best_valid_mrr": state.best_metric}
        metrics |= {"best_epoch": state.best_epoch, "epochs": state.epoch}
        (result.out / "metrics.json").write_text(json.dumps(metrics, indent=2))
        print(f"checkpoints in {result.out}/best and {result.out}/last")
    return 0


def _evaluate(args: argparse.Namespace) -> int:
    ckpt = load_checkpoint(args.checkpoint)
    kg = _load_dataset(ckpt.config.dataset, args.data_root or ckpt.config.data_root)
    report = evaluate(ckpt.model, kg, args.split, calibration=not args.no_calibration)
    print(f"{ckpt.spec.name} ({ckpt.spec.form}, rank {ckpt.spec.rank}) from {ckpt.path}")
    print(report)
    return 0


def _predict(args: argparse.Namespace) -> int:
    ckpt = load_checkpoint(args.checkpoint)
    kg = _load_dataset(ckpt.config.dataset, args.data_root or ckpt.config.data_root)
    compiled = compile_(ckpt.model).eval()
    r = torch.tensor([kg.relation_id(args.r)])
    s = torch.tensor([kg.entity_id(args.s)]) if args.s is not None else None
    o = torch.tensor([kg.entity_id(args.o)]) if args.o is not None else None
    kind = "p" if compiled.normalised else "softmax of scores"
    with torch.no_grad():
        if s is not None and o is not None:
            _print_triple(compiled, kg, s, r, o, kind)
        elif s is not None or o is not None:
            _print_top_k(compiled, kg, s, r, o, args.k, kind)
        else:
            raise UsageError("predict needs --s, --o or both (with --r)")
    return 0


def _info(args: argparse.Namespace) -> int:
    kg = _load_dataset(args.dataset, args.data_root)
    for key, value in kg.statistics().items():
        print(f"{key:>22}: {value}")
    if args.model is not None:
        check_choice("model", args.model.lower(), sorted(MODELS))
        forms = [args.form] if args.form else list(MODELS[args.model.lower()].forms)
        for form in forms:
            check_choice("form", form, FORMS)
            model = create_model(args.model, kg.num_entities, kg.num_relations, args.rank, form)
            print(f"{args.model} ({form}, rank {args.rank}): {model.num_parameters():,} parameters")
    return 0


# --- helpers -------------------------------------------------------------------------------------
def _train_config(args: argparse.Namespace) -> TrainConfig:
    values = {
        field: getattr(args, flag)
        for flag, field in _TRAIN_FIELDS.items()
        if getattr(args, flag) is not None
    }
    if args.reg is not None:
        name = args.reg[0]
        check_choice("reg", name, ("n3", "none"))
        values["reg"] = name
        if len(args.reg) > 2:
            raise UsageError("--reg takes a name and at most one weight, e.g. --reg n3 0.001")
        if len(args.reg) == 2:
            values["reg_weight"] = _float("--reg weight", args.reg[1])
    if args.pll_weights is not None:
        values["pll_weights"] = tuple(args.pll_weights)
    return TrainConfig(**values)


def _load_dataset(name: str, root: str | None) -> KnowledgeGraph:
    check_choice("dataset", name.lower(), SHIPPED_DATASETS + EXTERNAL_DATASETS)
    kg = load(name, root)
    if (
        torch.get_num_threads() == _DEFAULT_THREADS
        and _DEFAULT_THREADS > 1
        and kg.num_entities < SMALL_GRAPH
    ):
        torch.set_num_threads(1)  # see SMALL_GRAPH
    return kg


def _float(what: str, text: str) -> float:
    try:
        return float(text)
    except ValueError:
        raise ConfigError(f"{what} must be a number, got {text!r}") from None


def _print_top_k(compiled, kg: KnowledgeGraph, s, r, o, k: int, kind: str) -> None:
    target = "o" if s is not None else "s"
    given = {"s": s, "r": r} if target == "o" else {"r": r, "o": o}
    probs = compiled.log_conditional(target, **given)[0].exp()
    top = torch.topk(probs, min(k, len(probs)))
    known = {tuple(t) for t in kg.known_triples().tolist()}
    rel = kg.id_to_relation[int(r)]
    anchor = kg.id_to_entity[int(s if s is not None else o)]
    query = f"({anchor}, {rel}, ?)" if target == "o" else f"(?, {rel}, {anchor})"
    print(f"top {len(top.indices)} for {query}; {kind}({target} | ...); * = known true triple")
    for rank, (p, e) in enumerate(zip(top.values.tolist(), top.indices.tolist(), strict=True), 1):
        triple = (int(s), int(r), e) if target == "o" else (e, int(r), int(o))
        mark = "*" if triple in known else " "
        print(f"{rank:>4}. {p:.4f} {mark} {kg.id_to_entity[e]}")


def _print_triple(compiled, kg: KnowledgeGraph, s, r, o, kind: str) -> None:
    names = (kg.id_to_entity[int(s)], kg.id_to_relation[int(r)], kg.id_to_entity[int(o)])
    print(f"triple ({', '.join(names)})")
    p_o = compiled.log_conditional_of("o", o, s=s, r=r).exp().item()
    p_s = compiled.log_conditional_of("s", s, r=r, o=o).exp().item()
    print(f"  {kind}(o | s, r) = {p_o:.4g}")
    print(f"  {kind}(s | r, o) = {p_s:.4g}")
    triple = torch.stack([s, r, o], dim=1)
    if compiled.normalised:
        print(f"  log p(s, r, o) = {compiled.log_prob(triple).item():.4f}")
    print(f"  P(true) = {triple_probabilities(compiled, triple).item():.4f}")


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="circuitkg",
        description="KGE models as probabilistic circuits: train, evaluate, query.",
    )
    sub = parser.add_subparsers(dest="command", required=True)

    t = sub.add_parser("train", help="train a model and print its test metrics")
    d = TrainConfig()  # defaults, shown in the help

    def option(flag: str, help: str, **kwargs) -> None:
        field = _TRAIN_FIELDS.get(flag.lstrip("-").replace("-", "_"))
        value = getattr(d, field) if field else None
        default = f" (default: {value})" if value is not None else ""
        t.add_argument(flag, default=None, help=help + default, **kwargs)

    option("--dataset", ", ".join(SHIPPED_DATASETS + EXTERNAL_DATASETS))
    option("--data-root", "folder holding the external datasets (default: $CIRCUITKG_DATA)")
    option("--model", ", ".join(sorted(MODELS)))
    option("--form", "score, monotone or squared")
    option("--rank", "embedding size (ComplEx: complex dimensions)", type=int)
    option("--epochs", "maximum number of epochs", type=int)
    option("--batch-size", "training triples per step", type=int)
    option("--lr", "learning rate", type=float)
    option("--optimizer", "adam or adagrad")
    option("--objective", "pll, mle or ce (1-vs-all)")
    option("--pll-weights", f"w_s w_r w_o (default: {' '.join(map(str, d.pll_weights))})",
           type=float, nargs=3, metavar=("WS", "WR", "WO"))  # fmt: skip
    option("--reg", f"NAME [WEIGHT]: n3 WEIGHT or none (default: {d.reg} {d.reg_weight})",
           nargs="+", metavar="ARG")  # fmt: skip
    option("--loss", "loss of the ce objective: ce, label_smoothing or label_relaxation")
    option("--alpha", "label smoothing/relaxation alpha", type=float)
    option("--init", "initialisation: auto, model or positive")
    option("--seed", "seed of initialisation and batch order", type=int)
    option("--eval-every", "epochs between validations (0: none)", type=int)
    option("--patience", "validations without improvement before stopping (0: never)", type=int)
    t.add_argument("--out", default=None, help="run folder for checkpoints and metrics.json")
    t.add_argument(
        "--resume", default=None, metavar="CKPT", help="continue a run (folder or last/)"
    )
    t.add_argument(
        "--init-from", default=None, metavar="CKPT", help="copy a trained model's parameters"
    )
    t.add_argument(
        "--threads",
        type=int,
        default=None,
        help=f"torch CPU threads (default: 1 below {SMALL_GRAPH} entities, else torch's)",
    )
    t.add_argument("--quiet", action="store_true", help="no progress bar")
    t.set_defaults(handler=_train)

    e = sub.add_parser("evaluate", help="evaluate a checkpoint")
    e.add_argument("--checkpoint", required=True)
    e.add_argument("--split", default="test")
    e.add_argument("--data-root", default=None)
    e.add_argument("--no-calibration", action="store_true")
    e.add_argument("--threads", type=int, default=None)
    e.set_defaults(handler=_evaluate)

    p = sub.add_parser("predict", help="top-k completions of (s, r, ?) or (?, r, o) by name")
    p.add_argument("--checkpoint", required=True)
    p.add_argument("--s", default=None, help="subject name")
    p.add_argument("--r", required=True, help="relation name")
    p.add_argument("--o", default=None, help="object name")
    p.add_argument("-k", type=int, default=10)
    p.add_argument("--data-root", default=None)
    p.add_argument("--threads", type=int, default=None)
    p.set_defaults(handler=_predict)

    i = sub.add_parser("info", help="dataset statistics and model sizes")
    i.add_argument("--dataset", required=True)
    i.add_argument("--data-root", default=None)
    i.add_argument("--model", default=None)
    i.add_argument("--form", default=None)
    i.add_argument("--rank", type=int, default=100)
    i.add_argument("--threads", type=int, default=None)
    i.set_defaults(handler=_info)
    return parser


if __name__ == "__main__":
    sys.exit(main())
