"""Bridges to other KGE libraries; each submodule imports its library only when used.

``circuitkg.interop.pykeen``: TriplesFactory ↔ :class:`~circuitkg.data.KnowledgeGraph` and
``compile_pykeen(model)``, which turns a trained PyKEEN model into a circuitkg model (install
``circuitkg[pykeen]``).
"""

__all__ = ["pykeen"]


def __getattr__(name: str):
    if name == "pykeen":
        import importlib

        return importlib.import_module("circuitkg.interop.pykeen")
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
