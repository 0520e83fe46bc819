"""Option defaults and names for the help text, read without importing torch.

``circuitkg --help`` and ``circuitkg train --help`` must not import torch (2.4 s of CPU on these
machines, against 0.1 s without). The defaults the help shows live in
:class:`~circuitkg.train.TrainConfig`, and the option names in module constants of
``circuitkg/train/config.py`` and ``circuitkg/data/loaders.py``, but importing those modules imports
the model registry, hence torch. So the values are read from their source with :mod:`ast`: the
literal default of every ``TrainConfig`` field and every module-level constant whose value is a
literal. ``tests/test_cli_help.py`` checks that they equal what the imported modules hold.

Cost: one parse of each file, a few milliseconds, cached.
"""

from __future__ import annotations

import ast
import functools
from pathlib import Path
from typing import Any

_PACKAGE = Path(__file__).resolve().parents[1]
#: the sources read, relative to the package folder
CONFIG_SOURCE = _PACKAGE / "train" / "config.py"
LOADERS_SOURCE = _PACKAGE / "data" / "loaders.py"
INITIALISATION_SOURCE = _PACKAGE / "train" / "initialisation.py"


@functools.cache
def _tree(path: Path) -> ast.Module:
    return ast.parse(path.read_text(encoding="utf-8"), filename=str(path))


def _literal(node: ast.expr | None) -> tuple[bool, Any]:
    if node is None:
        return False, None
    try:
        return True, ast.literal_eval(node)
    except ValueError:  # not a literal (a call, a comprehension, a name)
        return False, None


@functools.cache
def constants(path: Path) -> dict[str, Any]:
    """The module-level ``NAME = <literal>`` assignments of the source file ``path``."""
    found: dict[str, Any] = {}
    for node in _tree(path).body:
        if isinstance(node, ast.Assign) and len(node.targets) == 1:
            target, value = node.targets[0], node.value
        elif isinstance(node, ast.AnnAssign):
            target, value = node.target, node.value
        else:
            continue
        ok, literal = _literal(value)
        if ok and isinstance(target, ast.Name):
            found[target.id] = literal
    return found


@functools.cache
def field_defaults(path: Path, class_name: str) -> dict[str, Any]:
    """The literal defaults of the annotated fields of the class ``class_name`` in ``path``
    (fields without a literal default, such as ``field(default_factory=dict)``, are left out)."""
    for node in _tree(path).body:
        if isinstance(node, ast.ClassDef) and node.name == class_name:
            out = {}
            for item in node.body:
                if isinstance(item, ast.AnnAssign) and isinstance(item.target, ast.Name):
                    ok, literal = _literal(item.value)
                    if ok:
                        out[item.target.id] = literal
            return out
    raise LookupError(f"no class {class_name} in {path}")


def train_defaults() -> dict[str, Any]:
    """``TrainConfig()``'s field values, as far as they are literals."""
    return field_defaults(CONFIG_SOURCE, "TrainConfig")


def config_choices(name: str) -> tuple[str, ...]:
    """A tuple of allowed values from ``circuitkg/train/config.py`` (``OBJECTIVES``, ...)."""
    return tuple(constants(CONFIG_SOURCE)[name])


def dataset_names() -> tuple[str, ...]:
    """The shipped and the external benchmark names (``circuitkg.data.loaders``)."""
    values = constants(LOADERS_SOURCE)
    return tuple(values["SHIPPED_DATASETS"]) + tuple(values["EXTERNAL_DATASETS"])


def init_schemes() -> tuple[str, ...]:
    """The initialisation schemes of ``circuitkg.train.initialisation.INITS``."""
    return tuple(constants(INITIALISATION_SOURCE)["INITS"])
