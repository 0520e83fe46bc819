"""Exceptions raised by circuitkg, each naming what was wrong and where."""


class CircuitKGError(Exception):
    """Base class of circuitkg's errors."""


class StructureError(CircuitKGError, ValueError):
    """A circuit lacks a structural property an operation needs; the message names the layer."""


class FormError(CircuitKGError, ValueError):
    """A model or query cannot be had in the requested form (e.g. TransE monotone)."""


class EvidenceError(CircuitKGError, ValueError):
    """Evidence names an unknown variable or holds a value outside the variable's domain."""


class UnsupportedHookError(CircuitKGError, TypeError):
    """A table or weight lacks a hook an operation needs (positive initialisation, Kronecker
    factors, ...); the message names the class and the method to implement."""

    @classmethod
    def missing(
        cls, obj: object, hook: str, needed_by: str, have: str = ""
    ) -> "UnsupportedHookError":
        """The error for ``obj`` lacking ``hook``; ``have`` names classes that implement it."""
        name = type(obj).__name__
        where = f" ({have} have it)" if have else ""
        return cls(
            f"{name} does not implement {hook}(), which {needed_by} needs: override it{where}"
        )


class ModelSpecError(CircuitKGError, ValueError):
    """A model is asked for by an unknown name, or with sizes that are not positive integers."""


class CheckpointError(CircuitKGError, ValueError):
    """A checkpoint is missing, malformed, would hold non-finite values, or does not fit a model."""


class DistributedError(CircuitKGError, RuntimeError):
    """A multi-process run or query failed: a peer process died or did not answer within the
    timeout, the process group could not be set up, or a model cannot be sharded; the message
    names the operation and the rank."""


class MissingExtraError(CircuitKGError, ImportError):
    """An optional dependency of the part of circuitkg being used is not installed; the message
    names it and the extra that installs it (``pip install 'circuitkg[plots]'``, ...)."""
