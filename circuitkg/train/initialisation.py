"""Initialisation schemes applied before training.

``positive``: every score term starts positive and of equal size, so ``φ ≈ 1 > 0`` for all triples at
initialisation. Each free entry becomes ``μ (1 + noise·ε)``, ``ε ~ N(0, 1)``, with
``μ = k^{-1/d}`` for ``k`` summed terms of ``d`` factors, which the model gives
(:meth:`~circuitkg.compilers.KGEModel.positive_init_terms`; CP, DistMult: ``k = K``, ``d = 3``;
RESCAL: ``k = K²``; TuckER: ``k = K_e² K_r``, ``d = 4`` with the core; ``None``: not defined). Only
the columns :meth:`~circuitkg.compilers.KGEModel.positive_init_columns` names are shifted: ComplEx
names the real parts (imaginary parts start as ``μ·noise·ε``), so its score starts as CP's.

Why: a squared model's conditionals are ``φ² / Σ φ²``. From the zero-mean default, ``φ`` changes
sign across entities at random and PLL training stalls near the uniform loss (UMLS, ComplEx² K = 20,
8 epochs: MRR 0.06); from the positive start, ``log φ²`` behaves like a score-model logit and the
same run reaches MRR 0.86 — the regime paper 004 observes for trained KGE models, whose scores are
mostly non-negative. The default ``auto`` applies it to squared forms only.

How: the scheme asks each parameter holder of the circuit — the distinct parameter tables of its
input layers (:meth:`~circuitkg.params.Table.parameter_table`) and its sum-layer weights, those with
parameters — to ``init_positive_(μ, noise, shift)`` itself (``shift``: the model's
``positive_init_columns``), in the order the model lists its modules. It is defined when every holder
``supports_positive_init``; a table kind of its own (an encoder's) opts in by implementing the hook.
"""

from __future__ import annotations

from circuitkg.compilers import KGEModel
from circuitkg.errors import UnsupportedHookError
from circuitkg.params import Table, Weight

INITS = ("auto", "model", "positive")


def initialise(model: KGEModel, scheme: str = "auto", noise: float = 0.1) -> None:
    """Apply ``scheme`` in place: ``model`` keeps the model's own initialisation, ``positive``
    is described in the module docstring, ``auto`` is ``positive`` for squared forms."""
    if scheme not in INITS:
        raise ValueError(f"unknown init {scheme!r}; choose one of {', '.join(INITS)}")
    if scheme == "model":
        return
    if scheme == "auto" and (model.form != "squared" or not positive_init_defined(model)):
        return
    positive_init(model, noise)


def positive_init_defined(model: KGEModel) -> bool:
    """True for the models and forms :func:`positive_init` handles."""
    return (
        model.form != "monotone"
        and model.positive_init_terms() is not None
        and all(h.supports_positive_init for h, _ in _holders(model))
    )


def positive_init(model: KGEModel, noise: float = 0.1) -> None:
    """The ``positive`` scheme (see :func:`positive_init_defined` for where it applies).

    Raises :class:`~circuitkg.errors.UnsupportedHookError` naming the first holder without
    ``init_positive_`` and ``ValueError`` for models and forms the scheme has no scale for.
    """
    scale = model.positive_init_terms()
    if model.form == "monotone" or scale is None:
        raise ValueError(
            f"the positive initialisation is not defined for {model.name} ({model.form} form)"
        )
    holders = _holders(model)
    for holder, _ in holders:
        if not holder.supports_positive_init:
            raise UnsupportedHookError.missing(
                holder, "init_positive_", f"the positive initialisation of {model.name}"
            )
    terms, factors = scale
    mu = terms ** (-1.0 / factors)
    for holder, is_table in holders:
        shift = model.positive_init_columns(holder.width) if is_table else None
        holder.init_positive_(mu, noise, shift)


def _holders(model: KGEModel) -> list[tuple[Table | Weight, bool]]:
    """``(holder, is a table)`` for the circuit's parameter tables and sum weights that hold
    parameters or support the scheme, each once, in the order of ``model.modules()`` (the order the scheme drew its
    noise in before it used hooks)."""
    circuit = model.circuit()
    candidates = [(layer.table.parameter_table(), True) for layer in circuit.input_layers()]
    candidates += [(weight, False) for weight in circuit.weights()]
    # holders with parameters, and those without whose values the hook still sets (an encoder's
    # fixed random features)
    distinct = {
        id(m): (m, t)
        for m, t in candidates
        if m.supports_positive_init or next(m.parameters(), None) is not None
    }
    position = {id(m): i for i, m in enumerate(model.modules())}
    return sorted(distinct.values(), key=lambda h: position.get(id(h[0]), len(position)))
