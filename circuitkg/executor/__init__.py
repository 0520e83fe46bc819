"""The executor: lowers a circuit to torch and answers queries with the cheap plan for each."""

from circuitkg.executor.compiled import FORMS, CompiledCircuit

__all__ = ["FORMS", "CompiledCircuit"]
