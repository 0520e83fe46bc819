"""Initialisation schemes applied before training.

``positive``: every score term starts positive and of equal size, so ``φ ≈ 1 > 0`` for all triples at
initialisation. Each free entry becomes ``μ (1 + noise·ε)``, ``ε ~ N(0, 1)``, with
``μ = k^{-1/d}`` for ``k`` summed terms of ``d`` factors (CP, DistMult: ``k = K``, ``d = 3``;
RESCAL: ``k = K²``; TuckER: ``k = K_e² K_r``, ``d = 4`` with the core); ComplEx shifts only the real
parts (imaginary parts start as ``μ·noise·ε``), so its score starts as CP's.

Why: a squared model's conditionals are ``φ² / Σ φ²``. From the zero-mean default, ``φ`` changes
sign across entities at random and PLL training stalls near the uniform loss (UMLS, ComplEx² K = 20,
8 epochs: MRR 0.06); from the positive start, ``log φ²`` behaves like a score-model logit and the
same run reaches MRR 0.86 — the regime paper 004 observes for trained KGE models, whose scores are
mostly non-negative. The default ``auto`` applies it to squared forms only.
"""

from __future__ import annotations

import torch

from circuitkg.compilers import KGEModel
from circuitkg.params import FreeTable, FreeWeight

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
    holders = [m for m in model.modules() if any(True for _ in m.parameters(recurse=False))]
    plain = all(isinstance(m, FreeTable | FreeWeight) for m in holders)
    return model.form != "monotone" and model.name in _FACTORS and plain


def positive_init(model: KGEModel, noise: float = 0.1) -> None:
    """The ``positive`` scheme (see :func:`positive_init_defined` for where it applies)."""
    if not positive_init_defined(model):
        raise ValueError(
            f"the positive initialisation is not defined for {model.name} ({model.form} form, "
            f"tables {sorted({type(m).__name__ for m in model.modules()})})"
        )
    terms, factors = _terms(model)
    mu = terms ** (-1.0 / factors)
    real_only = model.name == "complex"
    with torch.no_grad():
        for module in model.modules():
            if not isinstance(module, FreeTable | FreeWeight):
                continue
            weight = module.weight
            weight.copy_(mu * noise * torch.randn_like(weight))
            if real_only and isinstance(module, FreeTable):
                weight[:, : weight.shape[1] // 2] += mu
            else:
                weight += mu


_FACTORS = {"cp": 3, "distmult": 3, "complex": 3, "rescal": 3, "tucker": 4}


def _terms(model: KGEModel) -> tuple[int, int]:
    """(number of product terms summed in ``φ``, factors per term)."""
    k = model.rank
    terms = {"rescal": k * k, "tucker": k * getattr(model, "relation_rank", k) * k}
    return terms.get(model.name, k), _FACTORS[model.name]
