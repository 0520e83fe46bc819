"""The argument parser of the ``circuitkg`` command: every command, every option, each described.

Building and printing it imports no torch (see :mod:`circuitkg.cli.defaults`), so ``--help`` is
instant. Each command names the module and function that run it (``command_module``,
``handler``); :func:`circuitkg.cli.main` imports that module only after parsing.
"""

from __future__ import annotations

import argparse

from circuitkg.cli.defaults import config_choices, dataset_names, init_schemes, train_defaults
from circuitkg.forms import FORMS

#: CLI flags (argparse dest) that map one-to-one onto TrainConfig fields
TRAIN_FIELDS = (
    "dataset", "data_root", "model", "form", "rank", "epochs", "batch_size", "lr", "optimizer",
    "objective", "seed", "eval_every", "patience", "loss", "alpha", "init", "schema_violations",
    "unseen",
)  # fmt: skip
#: encoder flags (argparse dest -> flag), meaningful only with --encoder
ENCODER_FLAGS = {
    "layers": "--layers",
    "no_global_term": "--no-global-term",
    "features": "--features",
    "step_size": "--step-size",
    "subgraph_batch": "--subgraph-batch",
    "layer_objective": "--layer-objective",
    "layer_n3": "--layer-n3",
}
#: --features values that are not files
FEATURE_KINDS = ("random", "lookup")
#: without --threads, graphs with fewer entities than this train on one thread: their ops are so
#: small that thread synchronisation dominates (UMLS ComplEx² epochs: 2 s on one thread, up to 26 s
#: on two when another process shares the cores)
SMALL_GRAPH = 5000
#: --device values; auto is cuda when torch sees a GPU, else cpu
DEVICES = ("auto", "cpu", "cuda")

_SCHEMA_HELP = (
    "JSON domain schema (entity types and relation signatures, see "
    "circuitkg.constraints.io; convert a pair of TSV files with "
    "DomainSchema.from_tsv(...).to_json(...)); triples that break it get probability 0"
)
_SCHEMA_TRAIN = "; the model is trained and evaluated conditioned on it (D-ComplEx²)"
_DATA_ROOT_HELP = "folder holding the external datasets (default: $CIRCUITKG_DATA)"
_CHECKPOINT_HELP = "checkpoint folder, or a run folder (its best/ checkpoint is used)"


def build_parser() -> argparse.ArgumentParser:
    """The parser of every command (see the module docstring)."""
    parser = argparse.ArgumentParser(
        prog="circuitkg",
        description="KGE models as probabilistic circuits: train, evaluate, query, sample, plot.",
    )
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    _train_parser(sub)
    _evaluate_parser(sub)
    _predict_parser(sub)
    _sample_parser(sub)
    _models_parser(sub)
    _info_parser(sub)
    _plot_parser(sub)
    return parser


def _command(sub, name: str, module: str, handler: str, help: str, description: str | None = None):
    p = sub.add_parser(name, help=help, description=description or help[0].upper() + help[1:])
    p.set_defaults(command_module=module, handler=handler)
    return p


def _train_parser(sub) -> None:
    t = _command(
        sub, "train", "train", "run", "train a model and print its test metrics",
        "Train a model (or resume a run), print the test metrics; with --out, write the "
        "checkpoints OUT/best and OUT/last and OUT/metrics.json.",
    )  # fmt: skip
    d = train_defaults()

    def option(flag: str, help: str, **kwargs) -> None:
        dest = flag.lstrip("-").replace("-", "_")
        value = d.get(dest) if dest in TRAIN_FIELDS else None
        default = f" (default: {value})" if value is not None else ""
        t.add_argument(flag, default=None, help=help + default, **kwargs)

    option(
        "--dataset",
        f"a dataset name ({', '.join(dataset_names())}; GraIL inductive pairs such as fb237_v1 "
        "and WN11 unseen-entity splits such as wn11-head-1000 need --encoder; `circuitkg info` "
        "lists them) or a folder holding train, valid and test "
        "triple files (.txt, .tsv, optionally .gz)",
    )
    option("--data-root", _DATA_ROOT_HELP)
    option(
        "--unseen",
        "valid/test triples naming an entity or relation absent from train: keep (vocabularies "
        "over all splits, the published ranking protocol), drop, or raise",
        choices=config_choices("UNSEEN"),
    )
    option("--model", "model name (`circuitkg models` lists them with their forms)")
    option("--form", ", ".join(FORMS))
    option("--rank", "embedding size (ComplEx: complex dimensions)", type=int)
    option("--epochs", "maximum number of epochs", type=int)
    option("--batch-size", "training triples per step", type=int)
    option("--lr", "learning rate", type=float)
    option("--optimizer", " or ".join(config_choices("OPTIMIZERS")))
    option(
        "--objective",
        "training objective: "
        + ", ".join(config_choices("OBJECTIVES"))
        + " (pll: pseudo-log-likelihood, ce: 1-vs-all softmax, bce: 1-vs-all sigmoid, paper 002)",
    )
    option("--pll-weights", f"w_s w_r w_o (default: {' '.join(map(str, d['pll_weights']))})",
           type=float, nargs=3, metavar=("WS", "WR", "WO"))  # fmt: skip
    option("--reg", f"NAME [WEIGHT]: n3 WEIGHT or none (default: {d['reg']} {d['reg_weight']})",
           nargs="+", metavar="ARG")  # fmt: skip
    option("--loss", "loss of the ce and bce objectives: " + ", ".join(config_choices("LOSSES")))
    option("--alpha", "label smoothing/relaxation alpha", type=float)
    option("--init", "initialisation: " + ", ".join(init_schemes()))
    option("--seed", "seed of initialisation and batch order", type=int)
    option("--eval-every", "epochs between validations (0: none)", type=int)
    option("--patience", "validations without improvement before stopping (0: never)", type=int)
    g = t.add_argument_group("graph encoder", "entity tables computed from the training graph")
    g.add_argument(
        "--encoder",
        default=None,
        metavar="NAME",
        help="compute the entity table with this encoder (movable to a new graph; "
        "`circuitkg info` lists the encoders)",
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
    g.add_argument(
        "--layer-n3",
        type=float,
        default=None,
        metavar="λ",
        help="N3 weight on the node states within the layer objective (default: 0)",
    )
    t.add_argument("--schema", default=None, metavar="FILE", help=_SCHEMA_HELP + _SCHEMA_TRAIN)
    option(
        "--schema-violations",
        "training triples that break the schema: error (stop, showing examples) or drop them",
        choices=config_choices("SCHEMA_VIOLATIONS"),
    )
    t.add_argument("--out", default=None, help="run folder for checkpoints and metrics.json")
    t.add_argument(
        "--resume", default=None, metavar="CKPT", help="continue a run (folder or last/)"
    )
    t.add_argument(
        "--init-from", default=None, metavar="CKPT", help="copy a trained model's parameters"
    )
    _runtime_options(t)
    t.add_argument(
        "--quiet",
        action="store_true",
        help="no progress output (without it: a progress bar on a terminal, else a line per epoch)",
    )
    t.add_argument(
        "--nproc",
        type=int,
        default=None,
        metavar="N",
        help="data-parallel training in N local processes (runs itself under torchrun; gloo on "
        "CPU, NCCL on CUDA): each takes its part of every batch, rank 0 writes the checkpoints",
    )


def _evaluate_parser(sub) -> None:
    e = _command(
        sub, "evaluate", "query", "evaluate", "evaluate a checkpoint",
        "Filtered MRR/Hits@k, mean log-likelihood and ECE of a checkpoint on a split.",
    )  # fmt: skip
    e.add_argument("--checkpoint", required=True, help=_CHECKPOINT_HELP)
    e.add_argument("--split", default="test", help="split to evaluate (default: test)")
    e.add_argument("--data-root", default=None, help=_DATA_ROOT_HELP)
    e.add_argument("--no-calibration", action="store_true", help="skip the ECE (four extra passes)")
    e.add_argument(
        "--graph-test",
        default=None,
        metavar="FILE",
        help="with --graph: triples to evaluate (default: the graph's own triples)",
    )
    _query_options(e)


def _predict_parser(sub) -> None:
    p = _command(
        sub, "predict", "query", "predict", "top-k completions of (s, r, ?) or (?, r, o) by name",
        "With --s or --o: the k most probable completions by name, with probabilities; "
        "with both: p(o | s, r), p(s | r, o), log p(s, r, o) and P(true) of the triple.",
    )  # fmt: skip
    p.add_argument("--checkpoint", required=True, help=_CHECKPOINT_HELP)
    p.add_argument("--s", default=None, help="subject name")
    p.add_argument("--r", required=True, help="relation name")
    p.add_argument("--o", default=None, help="object name")
    p.add_argument("-k", type=int, default=10, help="number of completions (default: 10)")
    p.add_argument("--data-root", default=None, help=_DATA_ROOT_HELP)
    _query_options(p)


def _sample_parser(sub) -> None:
    sa = _command(
        sub, "sample", "query", "sample",
        "exact samples of a checkpoint's distribution as name triples (TSV)",
        "Draw exact samples (s, r, o) from a squared or monotone checkpoint and write "
        "them as subject<TAB>relation<TAB>object lines; a summary (n, seconds, samples/s) goes to "
        "stderr.",
    )  # fmt: skip
    sa.add_argument("--checkpoint", required=True, help=_CHECKPOINT_HELP)
    sa.add_argument("-n", type=int, required=True, help="number of samples")
    sa.add_argument(
        "--given",
        action="append",
        metavar="VAR=NAME",
        help="fix a variable (VAR: s, r or o) to a name; repeatable, e.g. --given r=treats",
    )
    sa.add_argument("--out", default=None, metavar="FILE", help="TSV file (default or -: stdout)")
    sa.add_argument("--seed", type=int, default=0, help="seed of the draws (default: 0)")
    sa.add_argument("--data-root", default=None, help=_DATA_ROOT_HELP)
    _query_options(sa)


def _models_parser(sub) -> None:
    _command(
        sub, "models", "info", "models", "list every model with its forms",
        "List every registered model with the forms it has (score, monotone, squared) and "
        "what it is.",
    )  # fmt: skip


def _info_parser(sub) -> None:
    i = _command(
        sub, "info", "info", "info", "datasets, models, encoders; dataset statistics and sizes",
        "Without options: the datasets, models (with their forms) and encoders. With --dataset: "
        "its statistics; with --model too: the model's parameter count per form.",
    )  # fmt: skip
    i.add_argument("--dataset", default=None, help="a dataset name or folder (see train --help)")
    i.add_argument("--data-root", default=None, help=_DATA_ROOT_HELP)
    i.add_argument("--model", default=None, help="a model name: print its parameter counts")
    i.add_argument("--form", default=None, help="with --model: only this form")
    i.add_argument("--rank", type=int, default=100, help="with --model: the rank (default: 100)")
    i.add_argument("--threads", type=int, default=None, help="torch CPU threads")


def _plot_parser(sub) -> None:
    pl = _command(
        sub, "plot", "plot", "plot", "PNG loss curves and a reliability diagram of a run",
        "Write RUN_DIR/loss.png (training loss and validation MRR per epoch) and "
        "RUN_DIR/reliability.png (the reliability diagram on a split). Needs matplotlib: "
        "pip install 'circuitkg[plots]'.",
    )  # fmt: skip
    pl.add_argument("run_dir", metavar="RUN_DIR", help="a run folder (train --out) or checkpoint")
    pl.add_argument("--out", default=None, metavar="DIR", help="where to write (default: RUN_DIR)")
    pl.add_argument(
        "--split", default="test", help="split of the reliability diagram (default: test)"
    )
    pl.add_argument("--data-root", default=None, help=_DATA_ROOT_HELP)
    _runtime_options(pl)


def _runtime_options(parser: argparse.ArgumentParser) -> None:
    """``--threads`` and ``--device``."""
    parser.add_argument(
        "--threads",
        type=int,
        default=None,
        help=f"torch CPU threads (default: 1 below {SMALL_GRAPH} entities, else torch's)",
    )
    parser.add_argument(
        "--device",
        default="auto",
        choices=DEVICES,
        help="where the model runs: cpu, cuda, or auto (cuda when available; default: auto)",
    )


def _query_options(parser: argparse.ArgumentParser) -> None:
    """``--graph``, ``--schema``, ``--threads`` and ``--device`` of the commands that query a
    checkpoint."""
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
    _runtime_options(parser)
