"""Random IR circuits, monotone and squared (with negative parameters), against brute force."""

from hypothesis import given

import circuitkg as ckg
from circuitkg.testing import (
    assert_conditionals_consistent,
    assert_marginals_consistent,
    assert_matches_interpreter,
    assert_normalised,
    circuits,
    parameter_scales,
)


@given(circuits(monotone=True))
def test_monotone_circuits_match_enumeration(circuit):
    compiled = ckg.compile(circuit, form="monotone")
    assert_matches_interpreter(compiled)
    assert_normalised(compiled)
    assert_marginals_consistent(compiled)
    assert_conditionals_consistent(compiled)


@given(circuits(monotone=False))
def test_squared_circuits_match_enumeration(circuit):
    compiled = ckg.compile(circuit, form="squared")
    assert_matches_interpreter(compiled)
    assert_normalised(compiled)
    assert_marginals_consistent(compiled)
    assert_conditionals_consistent(compiled)


@given(circuits(), parameter_scales())
def test_queries_stay_exact_across_parameter_scales(circuit, scale):
    from circuitkg.testing import rescale

    rescale(circuit, scale)
    form = "monotone" if circuit.has("monotone") else "squared"
    compiled = ckg.compile(circuit, form=form)
    assert_normalised(compiled, rtol=1e-7)
    assert_conditionals_consistent(compiled, rtol=1e-6)


@given(circuits(monotone=False))
def test_score_form_conditional_is_softmax_of_scores(circuit):
    import torch

    from circuitkg.testing import all_assignments, evaluate_naive

    compiled = ckg.compile(circuit, form="score")
    target, *others = circuit.variables
    x = all_assignments(circuit, others)
    got = compiled.log_conditional(target, **{v: x[:, i] for i, v in enumerate(others)})
    rows = []
    for value in range(circuit.domains[target]):
        full = torch.cat([torch.full((x.shape[0], 1), value), x], dim=1)
        rows.append(evaluate_naive(circuit, full))
    expected = torch.log_softmax(torch.stack(rows, dim=1), dim=1)
    assert torch.allclose(got, expected, rtol=1e-9, atol=1e-9)
