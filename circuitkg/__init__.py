"""circuitkg: knowledge-graph embedding models as exact probabilistic circuits.

>>> import circuitkg as ckg
>>> model = ckg.models.ComplEx(num_entities=135, num_relations=46, rank=8, form="squared")
>>> c = ckg.compile(model)
>>> c.log_partition().shape
torch.Size([])
"""

from circuitkg import compilers as models
from circuitkg import ir, params
from circuitkg.compile import compile
from circuitkg.errors import CircuitKGError, EvidenceError, FormError, StructureError
from circuitkg.executor import CompiledCircuit

__version__ = "0.1.0"

#: subpackages reachable as attributes (``ckg.data``, ``ckg.train``, ...), imported on first use
_LAZY = ("constraints", "data", "encoders", "eval", "sampling", "testing", "train")


def __getattr__(name: str):
    if name in _LAZY:
        import importlib

        return importlib.import_module(f"circuitkg.{name}")
    raise AttributeError(f"module 'circuitkg' has no attribute {name!r}")


__all__ = [
    "CircuitKGError",
    "CompiledCircuit",
    "EvidenceError",
    "FormError",
    "StructureError",
    "compile",
    "ir",
    "models",
    "params",
]
