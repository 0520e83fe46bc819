"""Symbolic operations (multiply, square, integrate, condition) and structural properties."""

import pytest
import torch
from hypothesis import given
from hypothesis import strategies as st

import circuitkg as ckg
from circuitkg.errors import EvidenceError, StructureError
from circuitkg.ir import (
    Circuit,
    InputLayer,
    ProductLayer,
    SumLayer,
    condition,
    integrate,
    multiply,
    square,
)
from circuitkg.params import FixedWeight, FreeTable
from circuitkg.testing import all_assignments, circuits, evaluate_naive, joint_table


@given(circuits(monotone=False))
def test_square_is_the_pointwise_square(circuit):
    squared = square(circuit)
    x = all_assignments(circuit)
    assert torch.allclose(
        evaluate_naive(squared, x), evaluate_naive(circuit, x) ** 2, rtol=1e-9, atol=1e-12
    )
    # the explicit square, compiled as a score circuit, integrates to the squared form's Z
    assert squared.has("structured-decomposable")


@given(circuits(monotone=False), st.data())
def test_multiply_is_the_pointwise_product(circuit, data):
    other = data.draw(
        circuits(
            monotone=False,
            min_variables=len(circuit.variables),
            max_variables=len(circuit.variables),
        )
    )
    if not circuit.compatible_with(other) or any(
        circuit.domains[v] != other.domains[v] for v in circuit.variables
    ):
        with pytest.raises(StructureError):
            multiply(circuit, other)
        return
    product = multiply(circuit, other)
    x = all_assignments(circuit)
    assert torch.allclose(
        evaluate_naive(product, x),
        evaluate_naive(circuit, x) * evaluate_naive(other, x),
        rtol=1e-9,
        atol=1e-12,
    )


@given(circuits(), st.data())
def test_integrate_sums_out_variables(circuit, data):
    summed = data.draw(
        st.lists(
            st.sampled_from(circuit.variables),
            min_size=1,
            max_size=len(circuit.variables) - 1,
            unique=True,
        )
    )
    reduced = integrate(circuit, summed)
    kept = [v for v in circuit.variables if v not in summed]
    phi = evaluate_naive(circuit, all_assignments(circuit)).reshape(
        [circuit.domains[v] for v in circuit.variables]
    )
    axes = [circuit.variables.index(v) for v in summed]
    expected = phi.sum(dim=axes).reshape(-1)
    got = evaluate_naive(reduced, all_assignments(reduced, kept))
    assert reduced.variables == kept
    assert torch.allclose(got, expected, rtol=1e-9, atol=1e-12)


@given(circuits(), st.data())
def test_condition_fixes_values(circuit, data):
    var = data.draw(st.sampled_from(circuit.variables))
    value = data.draw(st.integers(0, circuit.domains[var] - 1))
    reduced = condition(circuit, {var: value})
    kept = [v for v in circuit.variables if v != var]
    phi = evaluate_naive(circuit, all_assignments(circuit)).reshape(
        [circuit.domains[v] for v in circuit.variables]
    )
    expected = phi.select(circuit.variables.index(var), value).reshape(-1)
    assert torch.allclose(
        evaluate_naive(reduced, all_assignments(reduced, kept)), expected, rtol=1e-9, atol=1e-12
    )


@given(circuits(monotone=False))
def test_squared_form_equals_explicit_square_normalised(circuit):
    """Pair mode (Gram matrices) and the materialised product circuit agree on log Z."""
    lazy = ckg.compile(circuit, form="squared").log_partition()
    explicit = integrate(square(circuit), circuit.variables)
    z = evaluate_naive(explicit, torch.zeros(1, 0, dtype=torch.long))
    assert torch.allclose(lazy, torch.log(z[0]), rtol=1e-9, atol=1e-9)
    assert torch.allclose(
        joint_table(ckg.compile(circuit, form="squared")).sum(), torch.tensor(1.0, dtype=z.dtype)
    )


# --- structural properties and the errors that name the layer ----------------------------------


def _inputs(k=2):
    return {v: InputLayer(v, FreeTable(3, k), name=f"in_{v}") for v in "abc"}


def test_smoothness_violation_names_the_sum_layer():
    x = _inputs()
    bad = SumLayer([x["a"], x["b"]], FixedWeight(torch.ones(2, 4)), name="mix")
    circuit = Circuit(SumLayer([ProductLayer([bad, x["c"]], name="p")], FixedWeight.ones(2)))
    assert not circuit.has("smooth")
    with pytest.raises(StructureError, match="sum layer 'mix'"):
        ckg.compile(circuit)


def test_decomposability_violation_names_the_product_layer():
    x = _inputs()
    a2 = InputLayer("a", FreeTable(3, 2), name="a_again")
    circuit = Circuit(SumLayer([ProductLayer([x["a"], a2], name="overlap")], FixedWeight.ones(2)))
    with pytest.raises(StructureError, match="product layer 'overlap'"):
        ckg.compile(circuit, form="monotone")


def test_squaring_needs_structured_decomposability():
    x = _inputs()
    left = ProductLayer([ProductLayer([x["a"], x["b"]], name="ab"), x["c"]], name="ab|c")
    right = ProductLayer([x["a"], ProductLayer([x["b"], x["c"]], name="bc")], name="a|bc")
    circuit = Circuit(SumLayer([left, right], FixedWeight.ones(4)))
    assert circuit.has("decomposable") and not circuit.has("structured-decomposable")
    with pytest.raises(StructureError, match="'ab\\|c'|'a\\|bc'"):
        ckg.compile(circuit, form="squared")
    with pytest.raises(StructureError, match="split the same scope differently"):
        square(circuit)
    ckg.compile(circuit, form="score")  # scores need only smooth + decomposable


def test_monotone_form_names_the_negative_layer():
    model = ckg.models.CP(4, 2, 3, form="squared")
    with pytest.raises(StructureError, match="input layer 'cp.S'"):
        ckg.compile(model.circuit(), form="monotone")


def test_width_mismatch_is_reported():
    x = _inputs()
    with pytest.raises(StructureError, match="weight has 3 inputs"):
        SumLayer([x["a"]], FixedWeight.ones(3), name="wrong")
    with pytest.raises(StructureError, match="equal width"):
        ProductLayer([x["a"], InputLayer("b", FreeTable(3, 5))], "hadamard")


def test_inconsistent_domains_are_reported():
    a = InputLayer("a", FreeTable(3, 2), name="a3")
    a4 = InputLayer("a", FreeTable(4, 2), name="a4")
    with pytest.raises(StructureError, match="'a4'|'a3'"):
        Circuit(SumLayer([a, a4], FixedWeight.ones(4)))


def test_condition_and_integrate_reject_unknown_variables():
    circuit = ckg.models.CP(3, 2, 2).circuit()
    with pytest.raises(EvidenceError, match="'x'"):
        integrate(circuit, ["x"])
    with pytest.raises(EvidenceError, match="outside"):
        condition(circuit, {"s": 7})
