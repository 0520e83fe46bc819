"""``circuitkg train``: options to a :class:`~circuitkg.train.TrainConfig`, the run, its report.

A new run builds its configuration from the flags (:func:`train_config`); ``--resume`` continues
a run with the checkpoint's own options (:func:`check_resume_options` refuses others). At the end
the test metrics are printed (and, for a GraIL pair, those on its inference graph) and, with
``--out``, written to ``OUT/metrics.json``.
"""

from __future__ import annotations

import argparse
import contextlib
import io
import json
from contextlib import nullcontext
from pathlib import Path

import numpy as np
import torch

from circuitkg.cli.common import (
    UsageError,
    dataset_reference,
    finite,
    load_data,
    parse_float,
)
from circuitkg.cli.parser import ENCODER_FLAGS, FEATURE_KINDS, TRAIN_FIELDS
from circuitkg.compile import compile as compile_
from circuitkg.data import InductiveSplit, KnowledgeGraph, OOKBSplit
from circuitkg.distributed import DataParallel, World, close_world, init_world, launched, relaunch
from circuitkg.encoders import ENCODERS, Graph, GraphError
from circuitkg.eval.grail import evaluate_sampled_ranking, uniform_log_likelihood
from circuitkg.eval.ookb import evaluate_ookb
from circuitkg.eval.ranking import keyword_scorer
from circuitkg.eval.runner import evaluate
from circuitkg.train import TrainConfig, Trainer, init_from_checkpoint, load_checkpoint
from circuitkg.train.config import check_choice
from circuitkg.train.preparation import build_model, resume_path

#: negatives per side and seed of the GraIL protocol reported for inductive datasets
GRAIL_NEGATIVES, GRAIL_SEED = 49, 0
#: train options that --resume takes (the rest are the checkpoint's: see check_resume_options)
RESUME_OPTIONS = ("epochs", "data_root")


def run(args: argparse.Namespace) -> int:
    """Train a model (or resume a run), print the test metrics, write checkpoints with --out.

    ``--nproc N`` (N > 1) runs the same command under torchrun in N processes; a process started
    by torchrun (``WORLD_SIZE > 1``) joins the group and trains data-parallel, and only rank 0
    prints, writes checkpoints and evaluates the test split."""
    if args.nproc is not None and args.nproc < 1:
        raise UsageError(f"--nproc must be positive, got {args.nproc}")
    if not launched():
        if args.nproc is not None and args.nproc > 1:
            return relaunch(args.nproc, without_nproc(args.argv))
        return train_run(args, None)
    world = init_world(args.device)
    if args.nproc is not None and args.nproc != world.size:
        raise UsageError(f"--nproc {args.nproc} under a launcher of {world.size} processes")
    try:
        with contextlib.redirect_stdout(io.StringIO()) if not world.is_main else nullcontext():
            return train_run(args, world)
    finally:
        close_world()


def without_nproc(argv: list[str]) -> list[str]:
    """``argv`` without ``--nproc N`` / ``--nproc=N``."""
    out, skip = [], False
    for arg in argv:
        if skip:
            skip = False
        elif arg == "--nproc":
            skip = True
        elif not arg.startswith("--nproc="):
            out.append(arg)
    return out


def train_run(args: argparse.Namespace, world: World | None) -> int:
    """:func:`run` in this process; ``world``: the process group of a data-parallel run."""
    log = print if args.quiet else None
    main = world is None or world.is_main
    options = {"progress": not args.quiet and main, "log": log, "device": args.device}
    if world is not None:
        options |= {"device": world.device, "parallel": DataParallel(world)}
    if args.resume:
        path = resume_path(args.resume)
        resumed = load_checkpoint(path).config
        check_resume_options(args, resumed, path)
        kg, split = load_data(resumed.dataset, args.data_root or resumed.data_root, resumed.unseen)
        check_test_split(kg, split)
        trainer = Trainer.resume(path, kg, epochs=args.epochs, out=args.out, **options)
        print(f"resuming {path} after epoch {trainer.state.epoch}")
    else:
        config = train_config(args)
        kg, split = load_data(config.dataset, config.data_root, config.unseen)
        check_test_split(kg, split)
        if split is not None:
            check_inductive(config)
        model = _build_model(args, config, kg)
        if args.init_from:
            copied = init_from_checkpoint(model, args.init_from)
            print(f"initialised {', '.join(copied)} from {args.init_from}")
        trainer = Trainer(config, kg, model, out=args.out, **options)
        under = f" under the schema {config.schema}" if config.schema else ""
        print(
            f"training {config.model} ({config.form}, rank {config.rank}, "
            f"{model.num_parameters():,} parameters) on {trainer.kg!r} with {config.objective}"
            f"{under} on {trainer.device}"
        )
    result = trainer.fit()
    if world is not None:
        world.barrier("the end of training")
        if not world.is_main:
            return 0
    state = result.state
    seconds = sum(r["seconds"] for r in state.history)
    print(f"trained {state.epoch} epochs in {seconds:.1f} s of training steps")
    if state.best_epoch is not None:
        print(f"best validation MRR {state.best_metric:.4f} at epoch {state.best_epoch}")
    metrics = {}
    if not isinstance(split, OOKBSplit):  # an OOKB training graph has no test triples of its own
        batch = result.config.eval_batch_size
        report = evaluate(result.compiled, trainer.kg, "test", batch_size=batch)
        if split is not None:
            print(f"transductive test on the training graph {trainer.kg.name}:")
        print(report)
        metrics["test"] = finite(report.as_dict())
    if split is not None:
        metrics |= HELD_OUT_REPORTS[type(split)](result, split)
    if result.out is not None:
        metrics |= {"best_valid_mrr": state.best_metric}
        metrics |= {"best_epoch": state.best_epoch, "epochs": state.epoch}
        (result.out / "metrics.json").write_text(json.dumps(metrics, indent=2, allow_nan=False))
        print(f"checkpoints in {result.out}/best and {result.out}/last")
    return 0


def check_test_split(kg: KnowledgeGraph, split: InductiveSplit | OOKBSplit | None) -> None:
    """``train`` reports test metrics at the end: a test split with nothing to rank (empty, or
    every triple dropped for names absent from train) is an error before training, not after."""
    if isinstance(split, OOKBSplit):
        if len(split.test) == 0:
            raise UsageError(f"the OOKB split {split.name!r} has no labelled test triple")
        return
    graphs = [kg] + ([split.inference] if split is not None else [])
    for graph in graphs:
        if "test" not in graph.splits or len(graph.split("test")) == 0:
            raise UsageError(
                f"the test split of {graph.name!r} has no triple to rank (it is empty, or every "
                "test triple has a name absent from train); fix the data before training"
            )


def check_resume_options(args: argparse.Namespace, config: TrainConfig, path: Path) -> None:
    """``--resume`` continues a run exactly as configured: options other than --epochs,
    --data-root, --out, --threads, --device and --quiet that differ from the checkpoint's raise
    :class:`UsageError` listing them (given with the checkpoint's value they are accepted)."""
    differing = []
    for flag in TRAIN_FIELDS:
        value = getattr(args, flag)
        if flag in RESUME_OPTIONS or value is None:
            continue
        if flag == "dataset":
            value = dataset_reference(value)
        theirs = getattr(config, flag)
        same = value.lower() == theirs.lower() if isinstance(value, str) else value == theirs
        if not same:
            differing.append(f"--{flag.replace('_', '-')} {value} (the checkpoint's: {theirs})")
    reg = None if args.reg is None else (args.reg[0], *args.reg[1:])
    if reg is not None and (
        reg[0] != config.reg
        or (len(reg) > 1 and parse_float("--reg weight", reg[1]) != config.reg_weight)
    ):
        differing.append(
            f"--reg {' '.join(args.reg)} (the checkpoint's: {config.reg} {config.reg_weight})"
        )
    if args.pll_weights is not None and tuple(args.pll_weights) != tuple(config.pll_weights):
        differing.append(f"--pll-weights (the checkpoint's: {list(config.pll_weights)})")
    if args.schema is not None and str(Path(args.schema).resolve()) != config.schema:
        differing.append(f"--schema {args.schema} (the checkpoint's: {config.schema})")
    encoder = [
        flag for dest, flag in ENCODER_FLAGS.items() if getattr(args, dest) not in (None, False)
    ]
    if args.encoder is not None:
        encoder.insert(0, "--encoder")
    differing += [f"{flag} (encoder options are the checkpoint's)" for flag in encoder]
    if args.init_from:
        differing.append("--init-from (a resumed run keeps its own parameters)")
    if differing:
        raise UsageError(
            f"--resume {path} continues the run with the checkpoint's options; these differ: "
            + "; ".join(differing)
            + ". Drop them (only --epochs, --data-root, --out, --threads, --device and --quiet "
            "apply), or start a new run"
        )


def inductive_report(result, split: InductiveSplit) -> dict[str, dict]:
    """Bind the trained model to ``split``'s inference graph, print its test metrics (filtered
    ranking, log-likelihood, GraIL's sampled protocol, the uniform baseline) and return them as
    the metrics.json entries ``inductive_test`` and ``grail_protocol``."""
    kg = split.inference
    compiled = compile_(result.model.on(Graph.from_kg(kg))).eval()
    test = kg.split("test")
    print(
        f"inductive test on the inference graph {kg.name} ({kg.num_entities} entities, "
        f"{len(kg.train)} graph triples, {len(test)} test triples):"
    )
    report = evaluate(compiled, kg, "test", batch_size=result.config.eval_batch_size)
    print(report)
    inductive = finite(report.as_dict())
    if compiled.form != "score":
        uniform = uniform_log_likelihood(kg.num_entities, kg.num_relations)
        print(
            f"test: uniform baseline log-likelihood {uniform:.4f} nats "
            f"(model {report.log_likelihood:.4f})"
        )
        inductive["uniform_log_likelihood"] = uniform
    grail = evaluate_sampled_ranking(
        keyword_scorer(compiled.score_all),
        test.to(compiled.device),
        known_triples=kg.known_triples().to(compiled.device),
        num_entities=kg.num_entities,
        num_negatives=GRAIL_NEGATIVES,
        seed=GRAIL_SEED,
        batch_size=result.config.eval_batch_size,
    )
    m = grail.metrics
    print(
        f"test: GraIL protocol ({GRAIL_NEGATIVES} negatives per side, seed {GRAIL_SEED}): "
        f"Hits@10 {m['hits@10']:.4f}  MRR {m['mrr']:.4f}"
    )
    protocol = {"num_negatives": GRAIL_NEGATIVES, "seed": GRAIL_SEED} | finite(m)
    return {"inductive_test": inductive, "grail_protocol": protocol}


def ookb_report(result, split: OOKBSplit) -> dict[str, dict]:
    """Bind the trained model to ``split``'s graph with aux edges, print triple classification
    (and, for normalised forms, the conditional criterion and test log-likelihoods,
    :func:`circuitkg.eval.evaluate_ookb`) and return it as the metrics.json entry ``ookb_test``."""
    graph = split.graph_with_aux()
    print(
        f"OOKB test on {split.name} with aux edges ({graph.num_nodes} entities, "
        f"{split.num_entities - split.num_seen} unseen, {graph.num_edges} edges):"
    )
    evaluation = evaluate_ookb(result.model, split, batch_size=result.config.eval_batch_size)
    print(evaluation)
    return {"ookb_test": finite(evaluation.as_dict())}


#: the held-out report of each kind of split of unseen entities
HELD_OUT_REPORTS = {InductiveSplit: inductive_report, OOKBSplit: ookb_report}


def train_config(args: argparse.Namespace) -> TrainConfig:
    """The configuration of a new run from the flags (unset flags: TrainConfig's defaults)."""
    values = {flag: getattr(args, flag) for flag in TRAIN_FIELDS if getattr(args, flag) is not None}
    if "dataset" in values:
        values["dataset"] = dataset_reference(values["dataset"])
    if args.reg is not None:
        name = args.reg[0]
        check_choice("reg", name, ("n3", "none"))
        values["reg"] = name
        if len(args.reg) > 2:
            raise UsageError("--reg takes a name and at most one weight, e.g. --reg n3 0.001")
        if len(args.reg) == 2:
            values["reg_weight"] = parse_float("--reg weight", args.reg[1])
    if args.pll_weights is not None:
        values["pll_weights"] = tuple(args.pll_weights)
    if args.schema is not None:
        # checkpoints record where to find it again; the Trainer reads it (and names a missing file)
        values["schema"] = str(Path(args.schema).resolve())
    encoder = encoder_kwargs(args)
    if encoder:
        values["model_kwargs"] = encoder
    return TrainConfig(**values)


def encoder_kwargs(args: argparse.Namespace) -> dict:
    """``model_kwargs`` of the encoder flags: ``{"encoder": NAME, "encoder_options": {...}}``
    (``features`` of a FILE is recorded as ``"given"``; :func:`_build_model` reads the file)."""
    given = [
        flag for dest, flag in ENCODER_FLAGS.items() if getattr(args, dest) not in (None, False)
    ]
    if args.encoder is None:
        if given:
            raise UsageError(
                f"{', '.join(given)}: encoder options without an encoder; add --encoder "
                f"{'|'.join(sorted(ENCODERS))}"
            )
        return {}
    check_choice("encoder", args.encoder, sorted(ENCODERS))
    options: dict = {}
    if args.layers is not None:
        options["layers"] = _layers(args.layers)
    if args.no_global_term:
        options["global_term"] = False
    if args.features is not None:
        options["features"] = args.features if args.features in FEATURE_KINDS else "given"
    if args.step_size is not None:
        if not args.step_size > 0:
            raise UsageError(f"--step-size must be positive, got {args.step_size}")
        options["step_size"] = args.step_size
    if args.subgraph_batch is not None:
        if args.subgraph_batch < 1:
            raise UsageError(f"--subgraph-batch must be positive, got {args.subgraph_batch}")
        options["subgraph_batch"] = args.subgraph_batch
    if args.layer_objective is not None:
        options["objective"] = args.layer_objective
    if args.layer_n3 is not None:
        if args.layer_n3 < 0:
            raise UsageError(f"--layer-n3 must be non-negative, got {args.layer_n3}")
        options["layer_n3"] = args.layer_n3
    return {"encoder": args.encoder, "encoder_options": options}


def _layers(text: str) -> int | None:
    """``--layers``: a positive integer, or ``inf`` (``None``: L = infinity)."""
    if text.strip().lower() in ("inf", "infinity", "∞"):
        return None
    try:
        layers = int(text)
    except ValueError:
        raise UsageError(f"--layers takes a positive integer or inf, got {text!r}") from None
    if layers < 1:
        raise UsageError(f"--layers takes a positive integer or inf, got {layers}")
    return layers


def _feature_matrix(path: str, kg: KnowledgeGraph) -> torch.Tensor:
    """``--features FILE``: a 2-D ``.npy`` matrix, one row per entity of ``kg`` (id order)."""
    file = Path(path)
    if not file.is_file():
        raise UsageError(
            f"--features takes {' or '.join(FEATURE_KINDS)} or a .npy file; no file {file}"
        )
    try:
        matrix = np.load(file, allow_pickle=False)
    except (OSError, ValueError) as err:
        raise UsageError(f"--features {file}: not a .npy matrix ({err})") from None
    if matrix.ndim != 2 or not np.issubdtype(matrix.dtype, np.number):
        raise UsageError(
            f"--features {file}: expected a 2-D numeric matrix, got shape {matrix.shape} "
            f"{matrix.dtype}"
        )
    if matrix.shape[0] != kg.num_entities:
        raise UsageError(
            f"--features {file}: {matrix.shape[0]} rows, but {kg.name} has {kg.num_entities} "
            "entities (one row per entity, in entity-id order)"
        )
    if not np.isfinite(matrix).all():
        raise UsageError(f"--features {file}: holds NaN or infinite values")
    return torch.from_numpy(matrix.astype(np.float64)).to(torch.get_default_dtype())


def check_inductive(config: TrainConfig) -> None:
    """An inductive dataset needs entity tables that carry over to the inference graph."""
    kwargs = config.model_kwargs
    if not kwargs.get("encoder"):
        raise UsageError(
            f"{config.dataset} is an inductive dataset: its test entities are not seen in "
            "training, so a lookup entity table cannot score them; add --encoder refactor (or "
            "attention, mean)"
        )
    features = kwargs.get("encoder_options", {}).get("features", "random")
    if features != "random":
        what = "a lookup feature table" if features == "lookup" else "a feature file"
        raise UsageError(
            f"--features {features}: {what} covers the training graph's entities only, not the "
            f"inference graph's of {config.dataset}; use --features random"
        )


def _build_model(args: argparse.Namespace, config: TrainConfig, kg: KnowledgeGraph):
    """``build_model``, with the matrix of ``--features FILE`` when one is given."""
    options = config.model_kwargs.get("encoder_options", {})
    if options.get("features") != "given":
        return build_model(config, kg)
    matrix = _feature_matrix(args.features, kg)
    kwargs = dict(config.model_kwargs, encoder_options=dict(options, features=matrix))
    try:
        return build_model(config.replace(model_kwargs=kwargs), kg)
    except GraphError as err:
        raise UsageError(f"--features {args.features}: {err}") from None
