"""``circuitkg models`` and ``circuitkg info``: what is registered, and dataset statistics.

``models`` lists every registered model with the forms it has and the first line of its
docstring; ``info`` adds the datasets and encoders, and with ``--dataset`` prints its statistics
and, with ``--model``, parameter counts per form.
"""

from __future__ import annotations

import argparse

from circuitkg.cli.common import UsageError, load_data
from circuitkg.compilers import MODELS, create_model
from circuitkg.data import EXTERNAL_DATASETS, INDUCTIVE_DATASETS, OOKB_NAMES, SHIPPED_DATASETS
from circuitkg.encoders import ENCODERS
from circuitkg.forms import check_form
from circuitkg.train.config import check_choice


def models(args: argparse.Namespace) -> int:
    """One line per registered model: name, forms, summary."""
    _print_models()
    return 0


def _print_models() -> None:
    width = max(map(len, MODELS))
    print(f"{'model':<{width}}  {'forms':<24}  description")
    for name, cls in sorted(MODELS.items()):
        summary = (cls.__doc__ or "").strip().splitlines()[0] if cls.__doc__ else ""
        print(f"{name:<{width}}  {', '.join(cls.forms):<24}  {summary}")


def info(args: argparse.Namespace) -> int:
    """Datasets, models and encoders; with --dataset its statistics, with --model sizes."""
    if args.dataset is None:
        if args.model is not None:
            raise UsageError("--model needs --dataset (model sizes depend on the dataset)")
        print(f"{'datasets':>22}: {', '.join(SHIPPED_DATASETS + EXTERNAL_DATASETS)}")
        print(f"{'inductive datasets':>22}: {', '.join(INDUCTIVE_DATASETS)}")
        print(f"{'unseen-entity splits':>22}: {', '.join(OOKB_NAMES)}")
        print(f"{'encoders':>22}: {', '.join(sorted(ENCODERS))}")
        print()
        _print_models()
        return 0
    kg, split = load_data(args.dataset, args.data_root)
    stats = (split if split is not None else kg).statistics()
    for key, value in stats.items():
        print(f"{key:>22}: {value}")
    print(f"{'encoders':>22}: {', '.join(sorted(ENCODERS))}")
    if args.model is not None:
        check_choice("model", args.model.lower(), sorted(MODELS))
        forms = MODELS[args.model.lower()].forms
        for form in [args.form] if args.form else list(forms):
            check_form(form)
            model = create_model(args.model, kg.num_entities, kg.num_relations, args.rank, form)
            print(f"{args.model} ({form}, rank {args.rank}): {model.num_parameters():,} parameters")
    return 0
