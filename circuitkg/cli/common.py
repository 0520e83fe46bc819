"""What the commands share: threads and devices, datasets by name or folder, checkpoints ready for
queries, and the usage error.

A dataset argument is a name (:data:`~circuitkg.data.SHIPPED_DATASETS`, the external benchmarks,
the GraIL pairs) or a folder of ``train``/``valid``/``test`` triple files
(:func:`circuitkg.workflow.resolve_dataset` says which).
"""

from __future__ import annotations

import argparse
import math
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import torch

from circuitkg.cli.parser import SMALL_GRAPH
from circuitkg.compile import compile as compile_
from circuitkg.compilers.base import KG_VARIABLES
from circuitkg.constraints import ConstrainedCircuit, SchemaError, constrain
from circuitkg.data import (
    EXTERNAL_DATASETS,
    INDUCTIVE_DATASETS,
    OOKB_NAMES,
    SHIPPED_DATASETS,
    InductiveSplit,
    KnowledgeGraph,
    OOKBSplit,
    load_inductive,
    load_ookb_named,
)
from circuitkg.data.graph_files import load_graph_file
from circuitkg.encoders import Graph
from circuitkg.errors import CircuitKGError, EvidenceError
from circuitkg.executor import CompiledCircuit
from circuitkg.train import Checkpoint, load_checkpoint
from circuitkg.train.checkpoint import check_vocabulary
from circuitkg.train.config import ConfigError, check_choice
from circuitkg.train.preparation import bind_schema, load_schema
from circuitkg.workflow import is_folder, resolve_dataset

#: a compiled model, or one conditioned on a domain schema: both answer the queries used here
Queryable = CompiledCircuit | ConstrainedCircuit
#: torch's own thread count, used unless --threads is given
DEFAULT_THREADS = torch.get_num_threads()


class UsageError(CircuitKGError):
    """A command-line option has an unusable value."""


@dataclass
class LoadedCheckpoint:
    """A checkpoint ready for queries: its dataset, its compiled circuit (conditioned on
    ``schema`` when that is not ``None``, on ``device``) and the checkpoint itself."""

    checkpoint: Checkpoint
    kg: KnowledgeGraph
    circuit: Queryable
    schema: Path | None
    graph: Path | None = None

    @property
    def device(self) -> torch.device:
        return self.circuit.device


def configure(args: argparse.Namespace) -> None:
    """Apply ``--threads`` (every command) and check ``--device`` where the command has it."""
    threads = getattr(args, "threads", None)
    if threads is not None and threads < 1:
        raise UsageError(f"--threads must be positive, got {threads}")
    torch.set_num_threads(threads or DEFAULT_THREADS)
    if hasattr(args, "device"):
        args.device = resolve_device(args.device)


def resolve_device(name: str) -> torch.device:
    """``auto``: cuda when torch sees a GPU, else cpu; ``cuda`` without one is a
    :class:`UsageError`."""
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if name == "cuda" and not torch.cuda.is_available():
        raise UsageError(
            "--device cuda: torch sees no CUDA device (torch "
            f"{torch.__version__}, built {'with' if torch.version.cuda else 'without'} CUDA); "
            "use --device cpu or auto"
        )
    return torch.device(name)


def load_data(
    name: str, root: str | None, unseen: str = "drop"
) -> tuple[KnowledgeGraph, InductiveSplit | OOKBSplit | None]:
    """A dataset by name or folder (:func:`circuitkg.workflow.resolve_dataset`), and for an
    inductive one (:data:`INDUCTIVE_DATASETS`) or an OOKB split (:data:`OOKB_NAMES`, entities unseen
    in training) its split: the knowledge graph is then the split's training graph. ``unseen`` is
    the protocol of :func:`circuitkg.data.load_folder` for valid/test names absent from train (a
    split of unseen entities has its own: only ``drop``)."""
    held_out = {n.lower(): load_inductive for n in INDUCTIVE_DATASETS}
    held_out |= {n: load_ookb_named for n in OOKB_NAMES}
    if not is_folder(name) and name.lower() in held_out:
        if unseen != "drop":
            raise ConfigError(f"unseen {unseen!r} applies to transductive datasets, not {name}")
        split = held_out[name.lower()](name, root)
        threads_for(split.train)
        return split.train, split
    if not is_folder(name):
        check_choice(
            "dataset", name.lower(), SHIPPED_DATASETS + EXTERNAL_DATASETS + tuple(held_out)
        )
    kg, _ = resolve_dataset(name, root, unseen)
    threads_for(kg)
    return kg, None


def dataset_reference(name: str) -> str:
    """What a run records as its dataset: the name, or a folder's absolute path (so that
    ``evaluate``/``predict``/``--resume`` find it again from anywhere)."""
    return str(Path(name).expanduser().resolve()) if is_folder(name) else name


def threads_for(kg: KnowledgeGraph) -> None:
    if (
        torch.get_num_threads() == DEFAULT_THREADS
        and DEFAULT_THREADS > 1
        and kg.num_entities < SMALL_GRAPH
    ):
        torch.set_num_threads(1)  # see SMALL_GRAPH


def parse_float(what: str, text: str) -> float:
    try:
        return float(text)
    except ValueError:
        raise ConfigError(f"{what} must be a number, got {text!r}") from None


def finite(values: dict) -> dict:
    """Strict JSON: a non-finite number (a log-likelihood of -inf, test triples outside a
    schema's support) becomes null."""
    return {
        k: v if not isinstance(v, float) or math.isfinite(v) else None for k, v in values.items()
    }


def load_for_queries(
    checkpoint: str,
    data_root: str | None = None,
    schema: str | None = None,
    graph: str | None = None,
    graph_test: str | None = None,
    device: torch.device | str = "cpu",
) -> LoadedCheckpoint:
    """Load ``checkpoint``, its dataset and its compiled model on ``device``, conditioned on a
    domain schema: ``schema`` if given, else the one the run was trained with (if any).

    With ``graph`` (a triple file over the checkpoint's relations) the dataset is that graph
    (:func:`~circuitkg.data.graph_files.load_graph_file`, test triples from ``graph_test`` or the
    graph's own) and the model is ``ckpt.model.on(graph)``: an encoded model only."""
    ckpt = load_checkpoint(checkpoint)
    root = data_root or ckpt.config.data_root
    if graph is None:
        kg, _ = load_data(ckpt.config.dataset, root, ckpt.config.unseen)
        check_vocabulary(ckpt, kg)
        model = ckpt.model
    else:
        kg, model = _on_graph_file(ckpt, root, Path(graph), graph_test)
    compiled = compile_(model.to(device)).eval()
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
    constrained = constrain(compiled, bound).to(device).eval()
    return LoadedCheckpoint(ckpt, kg, constrained, path, where)


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
        relations = load_data(ckpt.config.dataset, data_root, ckpt.config.unseen)[0].id_to_relation
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


def describe_checkpoint(loaded: LoadedCheckpoint) -> str:
    spec = loaded.checkpoint.spec
    under = f" under the schema {loaded.schema}" if loaded.schema else ""
    on = f" on the graph {loaded.graph} ({loaded.kg.num_entities} entities)" if loaded.graph else ""
    return f"{spec.name} ({spec.form}, rank {spec.rank}) from {loaded.checkpoint.path}{on}{under}"


def check_allowed(circuit: Queryable, ids: dict[str, int], names: dict[str, str | None]) -> None:
    """Raise :class:`EvidenceError` when a schema forbids the query ``names`` (ids ``ids``)."""
    explain = getattr(getattr(circuit, "bound", None), "explain", None)
    if explain is None:  # not conditioned on a schema: every query is allowed
        return
    reason = explain(**{v: ids.get(v) for v in KG_VARIABLES})
    if reason is not None:
        shown = ", ".join(names[v] or "?" for v in KG_VARIABLES)
        raise EvidenceError(f"the schema forbids ({shown}): {reason}")
