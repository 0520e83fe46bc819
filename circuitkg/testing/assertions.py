"""Assertions that a compiled circuit's queries agree with brute-force enumeration.

Each takes a :class:`~circuitkg.executor.CompiledCircuit` (in float64 for tight tolerances) and
raises ``AssertionError`` with the query, the evidence and the largest deviation. Use them in your
own tests of circuits, parameterisations and encoders::

    from circuitkg.testing import assert_normalised, assert_conditionals_consistent
    assert_normalised(compiled)
"""

from __future__ import annotations

import itertools

import torch
from einops import rearrange
from torch import Tensor

from circuitkg.executor import CompiledCircuit
from circuitkg.testing.brute_force import all_assignments, evaluate_naive, joint_table


def _close(actual: Tensor, expected: Tensor, what: str, rtol: float, atol: float) -> None:
    actual, expected = actual.detach().double().cpu(), expected.detach().double().cpu()
    if actual.shape != expected.shape:
        raise AssertionError(
            f"{what}: shape {tuple(actual.shape)} != expected {tuple(expected.shape)}"
        )
    both_inf = torch.isinf(actual) & torch.isinf(expected) & (actual.sign() == expected.sign())
    diff = torch.where(both_inf, torch.zeros_like(actual), (actual - expected).abs())
    bound = atol + rtol * expected.abs().nan_to_num(posinf=0.0, neginf=0.0)
    if not bool((diff <= bound).all()) or bool(torch.isnan(actual).any()):
        i = int(torch.argmax(diff - bound))
        raise AssertionError(
            f"{what}: max deviation {float(diff.flatten()[i]):.3e} at index {i} "
            f"(got {float(actual.flatten()[i]):.6e}, expected {float(expected.flatten()[i]):.6e})"
        )


def assert_matches_interpreter(
    compiled: CompiledCircuit, rtol: float = 1e-9, atol: float = 1e-12
) -> None:
    """``compiled.score`` equals the naive interpreter on every assignment."""
    x = all_assignments(compiled.circuit)
    _close(
        compiled.score(x),
        evaluate_naive(compiled.circuit, x),
        "score vs naive interpreter",
        rtol,
        atol,
    )


def assert_normalised(compiled: CompiledCircuit, rtol: float = 1e-9, atol: float = 1e-9) -> None:
    """``Σ_x p(x) = 1`` and ``log Z`` equals the enumerated sum."""
    x = all_assignments(compiled.circuit)
    log_p = compiled.log_prob(x)
    _close(
        torch.logsumexp(log_p, 0), torch.zeros((), dtype=log_p.dtype), "log Σ_x p(x)", rtol, atol
    )
    phi = evaluate_naive(compiled.circuit, x)
    mass = phi * phi if compiled.form == "squared" else phi
    _close(compiled.log_partition(), torch.log(mass.sum()), "log Z", rtol, atol)
    _close(log_p.exp(), mass / mass.sum(), "p(x)", rtol, atol)


def _subsets(variables: list[str]) -> list[tuple[str, ...]]:
    return [s for k in range(1, len(variables)) for s in itertools.combinations(variables, k)]


def assert_marginals_consistent(
    compiled: CompiledCircuit, rtol: float = 1e-9, atol: float = 1e-9
) -> None:
    """For every proper subset of variables, ``log_marginal`` equals the enumerated sum."""
    table = joint_table(compiled)
    variables = compiled.variables
    for subset in _subsets(variables):
        summed = [i for i, v in enumerate(variables) if v not in subset]
        expected = table.sum(dim=summed).reshape(-1)
        x = all_assignments(compiled.circuit, list(subset))
        got = compiled.log_marginal(**{v: x[:, i] for i, v in enumerate(subset)})
        _close(got.exp(), expected, f"p({', '.join(subset)})", rtol, atol)


def assert_conditionals_consistent(
    compiled: CompiledCircuit, rtol: float = 1e-8, atol: float = 1e-9
) -> None:
    """For every target and every evidence set, ``log_conditional`` equals ``p(x, e) / p(e)``.

    Evidence values with ``p(e) = 0`` are skipped (the conditional is undefined there). Needs a
    normalised form (in ``score`` form ``log_conditional`` is a softmax of scores, not of ``p``).
    """
    if compiled.form == "score":
        raise ValueError(
            "assert_conditionals_consistent needs a normalised (monotone or squared) circuit"
        )
    table = joint_table(compiled)
    variables = compiled.variables
    axis = {v: f"x{i}" for i, v in enumerate(variables)}  # einops axis names of the variables
    for target in variables:
        others = [v for v in variables if v != target]
        for k in range(0, len(others) + 1):
            for given in itertools.combinations(others, k):
                keep = [target, *given]
                summed = [i for i, v in enumerate(variables) if v not in keep]
                joint = table.sum(dim=summed) if summed else table
                kept = " ".join(axis[v] for v in variables if v in keep)
                evidence = " ".join(axis[v] for v in given)
                joint = rearrange(joint, f"{kept} -> ({evidence}) {axis[target]}")
                evidence_mass = joint.sum(dim=1)
                ok = evidence_mass > 0
                if not given:
                    got = compiled.log_conditional(target)
                else:
                    x = all_assignments(compiled.circuit, list(given))
                    got = compiled.log_conditional(
                        target, **{v: x[:, i] for i, v in enumerate(given)}
                    )
                expected = joint[ok] / evidence_mass[ok, None]
                what = f"p({target} | {', '.join(given) or '∅'})"
                _close(got.exp()[ok.expand(got.shape[0])], expected, what, rtol, atol)
                if compiled.form != "score" and len(given) == len(others) and len(given) > 0:
                    values = torch.arange(compiled.domains[target]).repeat(int(ok.sum()))
                    x_ok = x[ok].repeat_interleave(compiled.domains[target], dim=0)
                    single = compiled.log_conditional_of(
                        target, values, **{v: x_ok[:, i] for i, v in enumerate(given)}
                    )
                    _close(
                        single.exp(), expected.reshape(-1), what + " (observed value)", rtol, atol
                    )
