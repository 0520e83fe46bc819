"""The executor: lowers a circuit to torch and answers queries with the cheap plan for each."""

from circuitkg.executor.compiled import CompiledCircuit
from circuitkg.executor.queries import KGQueries
from circuitkg.executor.step import training_step

__all__ = ["CompiledCircuit", "KGQueries", "training_step"]
