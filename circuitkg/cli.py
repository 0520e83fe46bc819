"""The ``circuitkg`` command: ``train``, ``evaluate``, ``predict``, ``sample`` and ``info``.

``circuitkg train --dataset umls --model complex --form squared`` trains with the defaults of
:class:`~circuitkg.train.TrainConfig`, prints the test metrics and, with ``--out DIR``, writes the
checkpoints ``DIR/best`` and ``DIR/last`` and ``DIR/metrics.json``. With ``--schema FILE`` (a JSON
domain schema) the model is trained and evaluated conditioned on the schema; the checkpoint records
the schema's path, so ``evaluate``, ``predict`` and ``sample`` on it apply the schema again
(``--schema`` there overrides the recorded path, or conditions an unconstrained model post hoc).
Unknown names (model, form, dataset, entity, relation), unusable checkpoints or schemas and queries
a schema forbids end with a one-line message and exit code 2; a diverged run with exit code 1.

**Graph encoders.** ``--encoder refactor`` (with ``--layers``, ``--features``, ...) computes the
entity table from the training graph instead of looking it up, so the trained model can be moved to
a new graph. ``--dataset fb237_v1`` (any GraIL pair of :data:`~circuitkg.data.INDUCTIVE_DATASETS`)
trains on the pair's training graph and reports on its inference graph: filtered ranking and
log-likelihood, the GraIL sampled protocol, and the uniform baseline. ``evaluate``, ``predict`` and
``sample`` take ``--graph FILE``, a triple file of a new graph over the checkpoint's relations.
"""

from __future__ import annotations

import argparse
import json
import math
import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from circuitkg.compile import compile as compile_
from circuitkg.compilers import MODELS, create_model
from circuitkg.compilers.base import KG_VARIABLES
from circuitkg.constraints import ConstrainedCircuit, SchemaError, constrain
from circuitkg.data import (
    EXTERNAL_DATASETS,
    INDUCTIVE_DATASETS,
    SHIPPED_DATASETS,
    InductiveSplit,
    KnowledgeGraph,
    load,
    load_inductive,
)
from circuitkg.data.graph_files import load_graph_file
from circuitkg.encoders import ENCODERS, Graph, GraphError
from circuitkg.errors import CircuitKGError, EvidenceError
from circuitkg.eval.grail import evaluate_sampled_ranking, uniform_log_likelihood
from circuitkg.eval.ranking import keyword_scorer
from circuitkg.eval.runner import evaluate, triple_probabilities
from circuitkg.executor import CompiledCircuit
from circuitkg.sampling.io import resolve_given, write_samples_tsv
from circuitkg.train import (
    Checkpoint,
    TrainConfig,
    Trainer,
    TrainingDivergedError,
    init_from_checkpoint,
    load_checkpoint,
)
from circuitkg.train.checkpoint import check_vocabulary
from circuitkg.train.config import SCHEMA_VIOLATIONS, ConfigError, check_choice
from circuitkg.train.trainer import bind_schema, build_model, load_schema, resume_path

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
    "schema_violations": "schema_violations",
}
#: a compiled model, or one conditioned on a domain schema: both answer the queries used here
Queryable = CompiledCircuit | ConstrainedCircuit


#: torch's own thread count, used unless --threads is given
_DEFAULT_THREADS = torch.get_num_threads()
#: without --threads, graphs with fewer entities than this train on one thread: their ops are so
#: small that thread synchronisation dominates (UMLS ComplEx² epochs: 2 s on one thread, up to 26 s
#: on two when another process shares the cores)
SMALL_GRAPH = 5000
#: negatives per side and seed of the GraIL protocol reported for inductive datasets
GRAIL_NEGATIVES, GRAIL_SEED = 49, 0
#: --features values that are not files
FEATURE_KINDS = ("random", "lookup")
#: encoder flags (argparse dest -> flag), meaningful only with --encoder
_ENCODER_FLAGS = {
    "layers": "--layers",
    "no_global_term": "--no-global-term",
    "features": "--features",
    "step_size": "--step-size",
    "subgraph_batch": "--subgraph-batch",
    "layer_objective": "--layer-objective",
}


class UsageError(CircuitKGError):
    """A command-line option has an unusable value."""


@dataclass
class LoadedCheckpoint:
    """A checkpoint ready for queries: its dataset, its compiled circuit (conditioned on
    ``schema`` when that is not ``None``) and the checkpoint itself."""

    checkpoint: Checkpoint
    kg: KnowledgeGraph
    circuit: Queryable
    schema: Path | None
    graph: Path | None = None


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
    """Train a model (or resume a run), print the test metrics, write checkpoints with --out."""
    log = print if args.quiet else None
    if args.resume:
        path = resume_path(args.resume)
        resumed = load_checkpoint(path).config
        _check_resume_options(args, resumed, path)
        kg, split = _load_data(resumed.dataset, args.data_root or resumed.data_root)
        _check_test_split(kg, split)
        trainer = Trainer.resume(
            path, kg, epochs=args.epochs, out=args.out, progress=not args.quiet, log=log
        )
        print(f"resuming {path} after epoch {trainer.state.epoch}")
    else:
        config = _train_config(args)
        kg, split = _load_data(config.dataset, config.data_root)
        _check_test_split(kg, split)
        if split is not None:
            _check_inductive(config)
        model = _build_model(args, config, kg, split)
        if args.init_from:
            copied = init_from_checkpoint(model, args.init_from)
            print(f"initialised {', '.join(copied)} from {args.init_from}")
        trainer = Trainer(config, kg, model, out=args.out, progress=not args.quiet, log=log)
        under = f" under the schema {config.schema}" if config.schema else ""
        print(
            f"training {config.model} ({config.form}, rank {config.rank}, "
            f"{model.num_parameters():,} parameters) on {trainer.kg!r} with {config.objective}{under}"
        )
    result = trainer.fit()
    state = result.state
    seconds = sum(r["seconds"] for r in state.history)
    print(f"trained {state.epoch} epochs in {seconds:.1f} s of training steps")
    if state.best_epoch is not None:
        print(f"best validation MRR {state.best_metric:.4f} at epoch {state.best_epoch}")
    report = evaluate(result.compiled, trainer.kg, "test", batch_size=result.config.eval_batch_size)
    if split is not None:
        print(f"transductive test on the training graph {trainer.kg.name}:")
    print(report)
    inductive = _inductive_report(result, split) if split is not None else {}
    if result.out is not None:
        metrics = {"test": _finite(report.as_dict()), "best_valid_mrr": state.best_metric}
        metrics |= {"best_epoch": state.best_epoch, "epochs": state.epoch} | inductive
        (result.out / "metrics.json").write_text(json.dumps(metrics, indent=2, allow_nan=False))
        print(f"checkpoints in {result.out}/best and {result.out}/last")
    return 0


def _check_test_split(kg: KnowledgeGraph, split: InductiveSplit | None) -> None:
    """``train`` reports test metrics at the end: a test split with nothing to rank (empty, or
    every triple dropped for names absent from train) is an error before training, not after."""
    graphs = [kg] + ([split.inference] if split is not None else [])
    for graph in graphs:
        if "test" not in graph.splits or len(graph.split("test")) == 0:
            raise UsageError(
                f"the test split of {graph.name!r} has no triple to rank (it is empty, or every "
                "test triple has a name absent from train); fix the data before training"
            )


#: train options that --resume takes (the rest are the checkpoint's: see _check_resume_options)
_RESUME_OPTIONS = ("epochs", "data_root")


def _check_resume_options(args: argparse.Namespace, config: TrainConfig, path: Path) -> None:
    """``--resume`` continues a run exactly as configured: options other than --epochs,
    --data-root, --out, --threads and --quiet that differ from the checkpoint's raise
    :class:`UsageError` listing them (given with the checkpoint's value they are accepted)."""
    differing = []
    for flag, field in _TRAIN_FIELDS.items():
        value = getattr(args, flag)
        if flag in _RESUME_OPTIONS or value is None:
            continue
        theirs = getattr(config, field)
        same = value.lower() == theirs.lower() if isinstance(value, str) else value == theirs
        if not same:
            differing.append(f"--{flag.replace('_', '-')} {value} (the checkpoint's: {theirs})")
    reg = None if args.reg is None else (args.reg[0], *args.reg[1:])
    if reg is not None and (
        reg[0] != config.reg
        or (len(reg) > 1 and _float("--reg weight", reg[1]) != config.reg_weight)
    ):
        differing.append(
            f"--reg {' '.join(args.reg)} (the checkpoint's: {config.reg} {config.reg_weight})"
        )
    if args.pll_weights is not None and tuple(args.pll_weights) != tuple(config.pll_weights):
        differing.append(f"--pll-weights (the checkpoint's: {list(config.pll_weights)})")
    if args.schema is not None and str(Path(args.schema).resolve()) != config.schema:
        differing.append(f"--schema {args.schema} (the checkpoint's: {config.schema})")
    encoder = [
        flag for dest, flag in _ENCODER_FLAGS.items() if getattr(args, dest) not in (None, False)
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
            + ". Drop them (only --epochs, --data-root, --out, --threads and --quiet apply), or "
            "start a new run"
        )


def _inductive_report(result, split: InductiveSplit) -> dict[str, dict]:
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
    inductive = _finite(report.as_dict())
    if compiled.form != "score":
        uniform = uniform_log_likelihood(kg.num_entities, kg.num_relations)
        print(
            f"test: uniform baseline log-likelihood {uniform:.4f} nats "
            f"(model {report.log_likelihood:.4f})"
        )
        inductive["uniform_log_likelihood"] = uniform
    grail = evaluate_sampled_ranking(
        keyword_scorer(compiled.score_all),
        test,
        known_triples=kg.known_triples(),
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
    protocol = {"num_negatives": GRAIL_NEGATIVES, "seed": GRAIL_SEED} | _finite(m)
    return {"inductive_test": inductive, "grail_protocol": protocol}


def _finite(values: dict) -> dict:
    """Strict JSON: a non-finite number (a log-likelihood of -inf, test triples outside a
    schema's support) becomes null."""
    return {
        k: v if not isinstance(v, float) or math.isfinite(v) else None for k, v in values.items()
    }


def _evaluate(args: argparse.Namespace) -> int:
    """Print ranking, log-likelihood and calibration metrics of a checkpoint on one split."""
    if args.graph_test is not None and args.graph is None:
        raise UsageError("--graph-test goes with --graph FILE (the graph its triples are on)")
    loaded = load_for_queries(
        args.checkpoint, args.data_root, args.schema, args.graph, args.graph_test
    )
    report = evaluate(loaded.circuit, loaded.kg, args.split, calibration=not args.no_calibration)
    print(_describe_checkpoint(loaded))
    print(report)
    return 0


def _predict(args: argparse.Namespace) -> int:
    """Print the top-k completions of (s, r, ?) or (?, r, o), or the probabilities of (s, r, o)."""
    if args.s is None and args.o is None:
        raise UsageError("predict needs --s, --o or both (with --r)")
    if args.k < 1:
        raise UsageError(f"-k must be positive, got {args.k}")
    loaded = load_for_queries(args.checkpoint, args.data_root, args.schema, args.graph)
    names = {"s": args.s, "r": args.r, "o": args.o}
    ids = resolve_given(loaded.kg, {v: name for v, name in names.items() if name is not None})
    _check_allowed(loaded.circuit, ids, names)
    with torch.no_grad():
        if args.s is not None and args.o is not None:
            _print_triple(loaded, ids)
        else:
            _print_top_k(loaded, ids, args.k)
    return 0


def _sample(args: argparse.Namespace) -> int:
    """Write exact samples of a checkpoint's distribution as name triples (TSV) to --out or stdout;
    a one-line summary goes to stderr."""
    if args.n < 0:
        raise UsageError(f"-n must be non-negative, got {args.n}")
    given = parse_given(args.given or [])
    loaded = load_for_queries(args.checkpoint, args.data_root, args.schema, args.graph)
    if loaded.circuit.form == "score":
        raise UsageError(
            f"checkpoint {loaded.checkpoint.path} holds a score-form model, which is unnormalised "
            "and cannot be sampled; train it with --form squared or --form monotone"
        )
    generator = torch.Generator().manual_seed(args.seed)
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


def _info(args: argparse.Namespace) -> int:
    """Dataset statistics (with --dataset), the registered encoders and, with --model, sizes."""
    if args.dataset is None:
        if args.model is not None:
            raise UsageError("--model needs --dataset (model sizes depend on the dataset)")
        print(f"{'datasets':>22}: {', '.join(SHIPPED_DATASETS + EXTERNAL_DATASETS)}")
        print(f"{'inductive datasets':>22}: {', '.join(INDUCTIVE_DATASETS)}")
        print(f"{'encoders':>22}: {', '.join(sorted(ENCODERS))}")
        return 0
    kg, split = _load_data(args.dataset, args.data_root)
    stats = (split if split is not None else kg).statistics()
    for key, value in stats.items():
        print(f"{key:>22}: {value}")
    print(f"{'encoders':>22}: {', '.join(sorted(ENCODERS))}")
    if args.model is not None:
        check_choice("model", args.model.lower(), sorted(MODELS))
        forms = [args.form] if args.form else list(MODELS[args.model.lower()].forms)
        for form in forms:
            check_choice("form", form, FORMS)
            model = create_model(args.model, kg.num_entities, kg.num_relations, args.rank, form)
            print(f"{args.model} ({form}, rank {args.rank}): {model.num_parameters():,} parameters")
    return 0


# --- checkpoints, schemas and queries -------------------------------------------------------------
def load_for_queries(
    checkpoint: str,
    data_root: str | None = None,
    schema: str | None = None,
    graph: str | None = None,
    graph_test: str | None = None,
) -> LoadedCheckpoint:
    """Load ``checkpoint``, its dataset and its compiled model, conditioned on a domain schema:
    ``schema`` if given, else the one the run was trained with (if any).

    With ``graph`` (a triple file over the checkpoint's relations) the dataset is that graph
    (:func:`~circuitkg.data.graph_files.load_graph_file`, test triples from ``graph_test`` or the
    graph's own) and the model is ``ckpt.model.on(graph)``: an encoded model only."""
    ckpt = load_checkpoint(checkpoint)
    root = data_root or ckpt.config.data_root
    if graph is None:
        kg, _ = _load_data(ckpt.config.dataset, root)
        check_vocabulary(ckpt, kg)
        model = ckpt.model
    else:
        kg, model = _on_graph_file(ckpt, root, Path(graph), graph_test)
    compiled = compile_(model).eval()
    where = None if graph is None else Path(graph)
    path = schema if schema is not None else ckpt.config.schema
    if path is None:
        return LoadedCheckpoint(ckpt, kg, compiled, None, where)
    path = Path(path)
    if schema is None and not path.is_file():
        raise SchemaError(
            f"checkpoint {ckpt.path} was trained under the schema {path}, which does not exist; "
            "pass --schema FILE to give its new location"
        )
    bound = bind_schema(load_schema(path), kg)
    return LoadedCheckpoint(ckpt, kg, constrain(compiled, bound).eval(), path, where)


def _on_graph_file(
    ckpt: Checkpoint, data_root: str | None, graph: Path, graph_test: str | None
) -> tuple[KnowledgeGraph, object]:
    """The knowledge graph of the triple file ``graph`` and ``ckpt``'s model bound to it."""
    stored = ckpt.model.encoded_graph
    if stored is None:
        spec = ckpt.spec
        raise UsageError(
            f"checkpoint {ckpt.path} holds {spec.name} with a lookup entity table over its "
            f"{spec.num_entities} training entities, which cannot serve a new graph (--graph); "
            "train with --encoder refactor for that"
        )
    relations = stored.relation_names
    if relations is None:  # a graph stored without names: the dataset's relation vocabulary
        relations = _load_data(ckpt.config.dataset, data_root)[0].id_to_relation
    kg = load_graph_file(graph, relations, test=graph_test)
    return kg, ckpt.model.on(Graph.from_kg(kg))


def parse_given(items: Sequence[str]) -> dict[str, str]:
    """``["s=NAME", "r=NAME"]`` to ``{"s": "NAME", "r": "NAME"}``; malformed items raise
    :class:`UsageError`."""
    given: dict[str, str] = {}
    for item in items:
        var, sep, name = item.partition("=")
        var = var.strip()
        if not sep or var not in KG_VARIABLES or not name:
            raise UsageError(f"--given takes VAR=NAME with VAR one of s, r, o; got {item!r}")
        if var in given:
            raise UsageError(f"--given sets {var!r} twice ({given[var]!r} and {name!r})")
        given[var] = name
    return given


def _describe_checkpoint(loaded: LoadedCheckpoint) -> str:
    spec = loaded.checkpoint.spec
    under = f" under the schema {loaded.schema}" if loaded.schema else ""
    on = f" on the graph {loaded.graph} ({loaded.kg.num_entities} entities)" if loaded.graph else ""
    return f"{spec.name} ({spec.form}, rank {spec.rank}) from {loaded.checkpoint.path}{on}{under}"


def _check_allowed(circuit: Queryable, ids: dict[str, int], names: dict[str, str | None]) -> None:
    """Raise :class:`EvidenceError` when a schema forbids the query ``names`` (ids ``ids``)."""
    if not isinstance(circuit, ConstrainedCircuit):
        return
    reason = circuit.bound.explain(**{v: ids.get(v) for v in KG_VARIABLES})
    if reason is not None:
        shown = ", ".join(names[v] or "?" for v in KG_VARIABLES)
        raise EvidenceError(f"the schema forbids ({shown}): {reason}")


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
    if args.schema is not None:
        # checkpoints record where to find it again; the Trainer reads it (and names a missing file)
        values["schema"] = str(Path(args.schema).resolve())
    encoder = _encoder_kwargs(args)
    if encoder:
        values["model_kwargs"] = encoder
    return TrainConfig(**values)


def _encoder_kwargs(args: argparse.Namespace) -> dict:
    """``model_kwargs`` of the encoder flags: ``{"encoder": NAME, "encoder_options": {...}}``
    (``features`` of a FILE is recorded as ``"given"``; :func:`_build_model` reads the file)."""
    given = [
        flag for dest, flag in _ENCODER_FLAGS.items() if getattr(args, dest) not in (None, False)
    ]
    if args.encoder is None:
        if given:
            raise UsageError(
                f"{', '.join(given)}: encoder options without an encoder; add --encoder "
                f"{'|'.join(sorted(ENCODERS))}"
            )
        return {}
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


def _check_inductive(config: TrainConfig) -> None:
    """An inductive dataset needs entity tables that carry over to the inference graph."""
    kwargs = config.model_kwargs
    if not kwargs.get("encoder"):
        raise UsageError(
            f"{config.dataset} is an inductive dataset: its test entities are not seen in "
            "training, so a lookup entity table cannot score them; add --encoder refactor"
        )
    features = kwargs.get("encoder_options", {}).get("features", "random")
    if features != "random":
        what = "a lookup feature table" if features == "lookup" else "a feature file"
        raise UsageError(
            f"--features {features}: {what} covers the training graph's entities only, not the "
            f"inference graph's of {config.dataset}; use --features random"
        )


def _build_model(
    args: argparse.Namespace, config: TrainConfig, kg: KnowledgeGraph, split
) -> object:
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


def _load_data(name: str, root: str | None) -> tuple[KnowledgeGraph, InductiveSplit | None]:
    """A dataset by name, and for an inductive one (:data:`INDUCTIVE_DATASETS`) its split: the
    knowledge graph is then the split's training graph."""
    if name.lower() not in {n.lower() for n in INDUCTIVE_DATASETS}:
        return _load_dataset(name, root), None
    split = load_inductive(name, root)
    _threads_for(split.train)
    return split.train, split


def _load_dataset(name: str, root: str | None) -> KnowledgeGraph:
    check_choice(
        "dataset",
        name.lower(),
        SHIPPED_DATASETS + EXTERNAL_DATASETS + tuple(n.lower() for n in INDUCTIVE_DATASETS),
    )
    kg = load(name, root)
    _threads_for(kg)
    return kg


def _threads_for(kg: KnowledgeGraph) -> None:
    if (
        torch.get_num_threads() == _DEFAULT_THREADS
        and _DEFAULT_THREADS > 1
        and kg.num_entities < SMALL_GRAPH
    ):
        torch.set_num_threads(1)  # see SMALL_GRAPH


def _float(what: str, text: str) -> float:
    try:
        return float(text)
    except ValueError:
        raise ConfigError(f"{what} must be a number, got {text!r}") from None


def _kind(circuit: Queryable) -> str:
    """What the printed numbers are: probabilities, or softmaxes of scores (score form)."""
    return "p" if circuit.form != "score" else "softmax of scores"


def _top_k(circuit: Queryable, target: str, ids: dict[str, int], k: int) -> list[tuple[int, float]]:
    """``(id, probability)`` of the ``k`` most probable values of ``target``; a constrained
    circuit lists only the values its schema allows (probability > 0)."""
    if isinstance(circuit, ConstrainedCircuit):
        return [(p.id, p.probability) for p in circuit.topk(target, k, **ids)]
    given = {v: torch.tensor([i]) for v, i in ids.items()}
    probs = circuit.log_conditional(target, **given)[0].exp()
    top = torch.topk(probs, min(k, len(probs)))
    return list(zip(top.indices.tolist(), top.values.tolist(), strict=True))


def _print_top_k(loaded: LoadedCheckpoint, ids: dict[str, int], k: int) -> None:
    kg, circuit = loaded.kg, loaded.circuit
    target = "o" if "s" in ids else "s"
    top = _top_k(circuit, target, ids, k)
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
    s, r, o = (torch.tensor([ids[v]]) for v in KG_VARIABLES)
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

    option(
        "--dataset",
        ", ".join(SHIPPED_DATASETS + EXTERNAL_DATASETS)
        + "; inductive (GraIL, needs --encoder): "
        + ", ".join(INDUCTIVE_DATASETS),
    )
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
    g = t.add_argument_group("graph encoder", "entity tables computed from the training graph")
    g.add_argument(
        "--encoder",
        default=None,
        choices=sorted(ENCODERS),
        help="compute the entity table with this encoder (movable to a new graph)",
    )
    g.add_argument(
        "--layers",
        default=None,
        metavar="L",
        help="encoder layers: a positive integer, or inf (L = infinity, transductive)",
    )
    g.add_argument(
        "--no-global-term",
        action="store_true",
        help="drop the softmax normaliser's term from the layers (ablation)",
    )
    g.add_argument(
        "--features",
        default=None,
        metavar="random|lookup|FILE",
        help="node features: random (inductive), lookup (learned, transductive) or a "
        ".npy matrix with one row per entity in entity-id order (default: random)",
    )
    g.add_argument(
        "--step-size",
        type=float,
        default=None,
        help="step size of a layer (default: the number of nodes)",
    )
    g.add_argument(
        "--subgraph-batch",
        type=int,
        default=None,
        metavar="B",
        help="triples per subgraph of a stochastic layer (default: full batch)",
    )
    g.add_argument(
        "--layer-objective",
        default=None,
        choices=("decoder", "softmax"),
        help="objective the layers descend (default: decoder)",
    )
    t.add_argument("--schema", default=None, metavar="FILE", help=_SCHEMA_HELP + _SCHEMA_TRAIN)
    option(
        "--schema-violations",
        "training triples that break the schema: error (stop, showing examples) or drop them",
        choices=SCHEMA_VIOLATIONS,
    )
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

    e = sub.add_parser(
        "evaluate",
        help="evaluate a checkpoint",
        description="Filtered MRR/Hits@k, mean log-likelihood and ECE of a checkpoint on a split.",
    )
    e.add_argument("--checkpoint", required=True)
    e.add_argument("--split", default="test")
    e.add_argument("--data-root", default=None)
    e.add_argument("--no-calibration", action="store_true")
    e.add_argument(
        "--graph-test",
        default=None,
        metavar="FILE",
        help="with --graph: triples to evaluate (default: the graph's own triples)",
    )
    _query_options(e)
    e.set_defaults(handler=_evaluate)

    p = sub.add_parser(
        "predict",
        help="top-k completions of (s, r, ?) or (?, r, o) by name",
        description="With --s or --o: the k most probable completions by name, with probabilities; "
        "with both: p(o | s, r), p(s | r, o), log p(s, r, o) and P(true) of the triple.",
    )
    p.add_argument("--checkpoint", required=True)
    p.add_argument("--s", default=None, help="subject name")
    p.add_argument("--r", required=True, help="relation name")
    p.add_argument("--o", default=None, help="object name")
    p.add_argument("-k", type=int, default=10)
    p.add_argument("--data-root", default=None)
    _query_options(p)
    p.set_defaults(handler=_predict)

    sa = sub.add_parser(
        "sample",
        help="exact samples of a checkpoint's distribution as name triples (TSV)",
        description="Draw exact samples (s, r, o) from a squared or monotone checkpoint and write "
        "them as subject<TAB>relation<TAB>object lines; a summary (n, seconds, samples/s) goes to "
        "stderr.",
    )
    sa.add_argument("--checkpoint", required=True)
    sa.add_argument("-n", type=int, required=True, help="number of samples")
    sa.add_argument(
        "--given",
        action="append",
        metavar="VAR=NAME",
        help="fix a variable (VAR: s, r or o) to a name; repeatable, e.g. --given r=treats",
    )
    sa.add_argument("--out", default=None, metavar="FILE", help="TSV file (default or -: stdout)")
    sa.add_argument("--seed", type=int, default=0, help="seed of the draws (default: 0)")
    sa.add_argument("--data-root", default=None)
    _query_options(sa)
    sa.set_defaults(handler=_sample)

    i = sub.add_parser("info", help="dataset statistics, encoders and model sizes")
    i.add_argument("--dataset", default=None)
    i.add_argument("--data-root", default=None)
    i.add_argument("--model", default=None)
    i.add_argument("--form", default=None)
    i.add_argument("--rank", type=int, default=100)
    i.add_argument("--threads", type=int, default=None)
    i.set_defaults(handler=_info)
    return parser


_SCHEMA_HELP = (
    "JSON domain schema (entity types and relation signatures, see "
    "circuitkg.constraints.io; convert a pair of TSV files with "
    "DomainSchema.from_tsv(...).to_json(...)); triples that break it get probability 0"
)
_SCHEMA_TRAIN = "; the model is trained and evaluated conditioned on it (D-ComplEx²)"


def _query_options(parser: argparse.ArgumentParser) -> None:
    """``--graph``, ``--schema`` and ``--threads`` of the commands that query a checkpoint."""
    parser.add_argument(
        "--graph",
        default=None,
        metavar="FILE",
        help="triple file (head<TAB>relation<TAB>tail, .txt or .txt.gz) of a new graph over the "
        "checkpoint's relations: the encoded model is bound to it and names refer to its entities",
    )
    parser.add_argument(
        "--schema",
        default=None,
        metavar="FILE",
        help=_SCHEMA_HELP + " (default: the schema the checkpoint was trained under, if any)",
    )
    parser.add_argument("--threads", type=int, default=None)


if __name__ == "__main__":
    sys.exit(main())
