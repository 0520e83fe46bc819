"""circuitkg: knowledge-graph embedding models as exact probabilistic circuits.

>>> import circuitkg as ckg
>>> model = ckg.models.ComplEx(num_entities=135, num_relations=46, rank=8, form="squared")
>>> c = ckg.compile(model)
>>> c.log_partition().shape
torch.Size([])

Everything but the errors is imported on first use (PEP 562), so ``import circuitkg`` and the
``circuitkg --help`` command do not import torch; ``ckg.data``, ``ckg.train``, ... are reachable
as attributes all the same. ``ckg.pipeline`` and ``ckg.load`` are functions of
:mod:`circuitkg.workflow` (a submodule named ``pipeline`` would replace the function: importing a
submodule sets the package attribute of its name).
"""

from __future__ import annotations

import importlib
import sys
import types

from circuitkg.errors import CircuitKGError, EvidenceError, FormError, StructureError

__version__ = "0.1.0"

#: public names -> (module, attribute or None for the module itself), imported on first use
_LAZY = {
    "CompiledCircuit": ("circuitkg.executor", "CompiledCircuit"),
    "models": ("circuitkg.compilers", None),
    "pipeline": ("circuitkg.workflow", "pipeline"),
    "load": ("circuitkg.workflow", "load"),
    "PipelineResult": ("circuitkg.workflow", "PipelineResult"),
    "Form": ("circuitkg.forms", "Form"),
    "FORMS": ("circuitkg.forms", "FORMS"),
} | {
    name: (f"circuitkg.{name}", None)
    for name in (
        "compilers",
        "constraints",
        "data",
        "encoders",
        "eval",
        "executor",
        "interop",
        "ir",
        "params",
        "sampling",
        "testing",
        "train",
        "workflow",
    )  # fmt: skip
}


class _Package(types.ModuleType):
    """The package's module type: ``compile`` is a property, so it stays the function.

    ``circuitkg.compile`` is both a submodule and the function it defines. Importing the submodule
    (every internal ``from circuitkg.compile import compile``) sets the package attribute
    ``compile`` to the module; an eager ``from circuitkg.compile import compile`` here used to undo
    that, at the price of importing torch with the package. The property resolves the function on
    use and ignores the import system's assignment.
    """

    @property
    def compile(self):
        from circuitkg.compile import compile as function

        return function

    @compile.setter
    def compile(self, value) -> None:  # the import system assigning the submodule
        pass


sys.modules[__name__].__class__ = _Package


def __getattr__(name: str):
    if name not in _LAZY:
        raise AttributeError(f"module 'circuitkg' has no attribute {name!r}")
    module, attribute = _LAZY[name]
    value = importlib.import_module(module)
    if attribute is not None:
        value = getattr(value, attribute)
    globals()[name] = value  # later look-ups skip __getattr__
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(_LAZY) | {"compile"})


__all__ = [
    "FORMS",
    "CircuitKGError",
    "CompiledCircuit",
    "EvidenceError",
    "Form",
    "FormError",
    "PipelineResult",
    "StructureError",
    "compile",
    "ir",
    "load",
    "models",
    "params",
    "pipeline",
]
