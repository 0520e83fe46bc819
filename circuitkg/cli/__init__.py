"""The ``circuitkg`` command: ``train``, ``evaluate``, ``predict``, ``sample``, ``models``, ``info``
and ``plot``.

``circuitkg train --dataset umls --model complex --form squared`` trains with the defaults of
:class:`~circuitkg.train.TrainConfig`, prints the test metrics and, with ``--out DIR``, writes the
checkpoints ``DIR/best`` and ``DIR/last`` and ``DIR/metrics.json``. ``--dataset`` is a dataset name
or any folder of ``train``/``valid``/``test`` triple files. With ``--schema FILE`` (a JSON domain
schema) the model is trained and evaluated conditioned on the schema; the checkpoint records the
schema's path, so ``evaluate``, ``predict`` and ``sample`` on it apply the schema again
(``--schema`` there overrides the recorded path, or conditions an unconstrained model post hoc).
``--device cpu|cuda|auto`` chooses where the model runs (auto: cuda when torch sees a GPU).
``train --nproc N`` trains data-parallel in N processes under torchrun, and ``torchrun -m circuitkg
train`` does the same (:mod:`circuitkg.distributed`).
Unknown names (model, form, dataset, entity, relation), unusable checkpoints or schemas and queries
a schema forbids end with a one-line message and exit code 2; a diverged run with exit code 1.

**Graph encoders.** ``--encoder refactor`` (with ``--layers``, ``--features``, ...) computes the
entity table from the training graph instead of looking it up, so the trained model can be moved to
a new graph. ``--dataset fb237_v1`` (any GraIL pair of :data:`~circuitkg.data.INDUCTIVE_DATASETS`)
trains on the pair's training graph and reports on its inference graph: filtered ranking and
log-likelihood, the GraIL sampled protocol, and the uniform baseline. ``evaluate``, ``predict`` and
``sample`` take ``--graph FILE``, a triple file of a new graph over the checkpoint's relations.

**Layout.** :mod:`~circuitkg.cli.parser` builds the parser without importing torch, so ``--help``
is instant; each command's module is imported after parsing: :mod:`~circuitkg.cli.train`,
:mod:`~circuitkg.cli.query` (evaluate, predict, sample), :mod:`~circuitkg.cli.info` (models, info),
:mod:`~circuitkg.cli.plot`; :mod:`~circuitkg.cli.common` holds what they share.
"""

from __future__ import annotations

import importlib
import sys
from collections.abc import Sequence

from circuitkg.cli.parser import build_parser
from circuitkg.errors import CircuitKGError

__all__ = ["main"]


def main(argv: Sequence[str] | None = None) -> int:
    """Run the command line ``argv`` (default ``sys.argv[1:]``); returns the exit code."""
    args = build_parser().parse_args(argv)
    args.argv = list(sys.argv[1:] if argv is None else argv)  # train --nproc runs it again
    try:
        common = importlib.import_module("circuitkg.cli.common")
        common.configure(args)
        module = importlib.import_module(f"circuitkg.cli.{args.command_module}")
        return getattr(module, args.handler)(args)
    except CircuitKGError as err:
        from circuitkg.train import TrainingDivergedError

        if isinstance(err, TrainingDivergedError):
            print(f"circuitkg: {err}", file=sys.stderr)
            return 1
        print(f"circuitkg: error: {err}", file=sys.stderr)
        return 2
    except FileNotFoundError as err:
        print(f"circuitkg: error: {err}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
