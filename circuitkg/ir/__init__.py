"""The circuit IR: layers, circuits, structural properties and symbolic operations."""

from circuitkg.ir.circuit import PROPERTIES, Circuit
from circuitkg.ir.layers import InputLayer, Layer, ProductLayer, SumLayer
from circuitkg.ir.symbolic import condition, conjugate, integrate, multiply, square

__all__ = [
    "PROPERTIES",
    "Circuit",
    "InputLayer",
    "Layer",
    "ProductLayer",
    "SumLayer",
    "condition",
    "conjugate",
    "integrate",
    "multiply",
    "square",
]
