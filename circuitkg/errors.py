"""Exceptions raised by circuitkg, each naming what was wrong and where."""


class CircuitKGError(Exception):
    """Base class of circuitkg's errors."""


class StructureError(CircuitKGError, ValueError):
    """A circuit lacks a structural property an operation needs; the message names the layer."""


class FormError(CircuitKGError, ValueError):
    """A model or query cannot be had in the requested form (e.g. TransE monotone)."""


class EvidenceError(CircuitKGError, ValueError):
    """Evidence names an unknown variable or holds a value outside the variable's domain."""
