"""A statistical assertion: samples follow a compiled circuit's exact distribution.

:func:`assert_samples_follow` compares the counts of ``samples`` with ``N·p(x | given)`` from
brute-force enumeration (:func:`~circuitkg.testing.joint_table`) by Pearson's chi-square test
(:func:`scipy.stats.chisquare`). Cells expected to hold fewer than 5 samples are pooled into one,
so the chi-square approximation holds; a sample on an assignment of probability 0 fails outright.
With ``given``, one test per distinct value of the given variables, combined by summing the
statistics and degrees of freedom (independent chi-squares add). Cost: ``O(N + Π|X|)``.

At ``alpha = 1e-6`` a correct sampler fails one run in a million; a sampler off by a few percent
on a cell holding 1% of the mass is caught from about 10⁵ samples.
"""

from __future__ import annotations

import torch
from scipy import stats
from torch import Tensor

from circuitkg.executor import CompiledCircuit
from circuitkg.testing.brute_force import joint_table

__all__ = ["assert_samples_follow", "chi_square"]

#: cells expected to hold fewer samples than this are pooled
MIN_EXPECTED = 5.0


def chi_square(counts: Tensor, expected: Tensor) -> tuple[float, int]:
    """Pearson's statistic and degrees of freedom of one multinomial, small cells pooled.

    ``counts`` and ``expected`` have the same number of entries (any shape) and equal sums.
    Raises ``AssertionError`` when a count falls where ``expected`` is 0."""
    counts, expected = counts.double().flatten(), expected.double().flatten()
    impossible = expected <= 0
    if bool(counts[impossible].sum() > 0):
        raise AssertionError(
            f"{int(counts[impossible].sum())} samples fell on assignments of probability zero"
        )
    counts, expected = counts[~impossible], expected[~impossible]
    small = expected < MIN_EXPECTED
    cells_c, cells_e = counts[~small], expected[~small]
    if bool(small.any()):
        pooled_c, pooled_e = counts[small].sum(), expected[small].sum()
        if pooled_e < MIN_EXPECTED and len(cells_e):  # too small alone: join the smallest cell
            i = int(torch.argmin(cells_e))
            cells_c, cells_e = cells_c.clone(), cells_e.clone()
            cells_c[i] += pooled_c
            cells_e[i] += pooled_e
        else:
            cells_c = torch.cat([cells_c, pooled_c.reshape(1)])
            cells_e = torch.cat([cells_e, pooled_e.reshape(1)])
    if len(cells_e) < 2:
        return 0.0, 0
    statistic = stats.chisquare(cells_c.numpy(), cells_e.numpy()).statistic
    return float(statistic), len(cells_e) - 1


def assert_samples_follow(
    compiled: CompiledCircuit,
    samples: Tensor,
    given: dict[str, int] | None = None,
    alpha: float = 1e-6,
) -> None:
    """``samples`` (``(N, V)`` ids, columns in ``compiled.variables`` order) were drawn from
    ``p(rest | given)`` of the normalised circuit ``compiled`` (module docstring); raises
    ``AssertionError`` with the p-value otherwise."""
    variables = compiled.variables
    sizes = [compiled.domains[v] for v in variables]
    if samples.ndim != 2 or samples.shape[1] != len(variables):
        raise AssertionError(
            f"expected samples of shape (N, {len(variables)}), got {samples.shape}"
        )
    samples = samples.cpu().long()
    for j, (var, size) in enumerate(zip(variables, sizes, strict=True)):
        if bool(((samples[:, j] < 0) | (samples[:, j] >= size)).any()):
            raise AssertionError(f"a sample of {var!r} lies outside its domain 0..{size - 1}")
    given = dict(given or {})
    table = joint_table(compiled).detach().double().cpu()
    index = [slice(None)] * len(variables)
    for var, value in given.items():
        j = variables.index(var)
        if bool((samples[:, j] != value).any()):
            raise AssertionError(f"a sample has {var!r} different from the given {value}")
        index[j] = slice(value, value + 1)
    conditional = table[tuple(index)]
    conditional = conditional / conditional.sum()
    # one flat cell per joint value, in the table's (row-major) order
    cell = torch.zeros(len(samples), dtype=torch.long)
    for j, size in enumerate(sizes):
        if variables[j] in given:
            continue
        cell = cell * size + samples[:, j]
    counts = torch.bincount(cell, minlength=conditional.numel()).double()
    statistic, dof = chi_square(counts, conditional.flatten() * len(samples))
    p_value = 1.0 if dof == 0 else float(stats.chi2.sf(statistic, dof))
    if p_value < alpha:
        raise AssertionError(
            f"the {len(samples)} samples do not follow p(rest | {given or '∅'}): chi-square "
            f"{statistic:.1f} with {dof} degrees of freedom, p = {p_value:.2e} < {alpha}"
        )
