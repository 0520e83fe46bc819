"""``circuitkg.compile``: the one entry point from a model or circuit to a queryable torch module."""

from __future__ import annotations

from circuitkg.executor import CompiledCircuit
from circuitkg.executor.names import Vocabulary
from circuitkg.ir import Circuit


def compile(  # noqa: A001
    model_or_circuit, form: str | None = None, batch_chunk: int = 1024, vocabulary=None
) -> CompiledCircuit:
    """Lower a KGE model (anything with ``.circuit()`` and ``.form``) or an IR :class:`Circuit`.

    ``form`` defaults to the model's form, or ``"squared"`` for a bare circuit. The result is an
    ``nn.Module`` that shares the model's parameters; ``.to(device)`` moves them. ``vocabulary``
    (a :class:`~circuitkg.data.KnowledgeGraph`, or a mapping ``variable -> names``) lets every
    query take names where it takes ids, and ``topk`` answer by name.
    """
    names = None if vocabulary is None else Vocabulary.of(vocabulary)
    if isinstance(model_or_circuit, Circuit):
        return CompiledCircuit(model_or_circuit, form or "squared", batch_chunk, names)
    if hasattr(model_or_circuit, "circuit") and hasattr(model_or_circuit, "form"):
        model_form = model_or_circuit.form
        if form is not None and form != model_form:
            raise ValueError(
                f"the model was built in form {model_form!r}; build it with form={form!r} instead "
                "(forms differ in their parameterisation)"
            )
        return CompiledCircuit(model_or_circuit.circuit(), model_form, batch_chunk, names)
    raise TypeError(
        f"compile expects a KGE model or a circuitkg.ir.Circuit, got {type(model_or_circuit).__name__}"
    )
