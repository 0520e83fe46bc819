"""Folds (circuitkg.executor.folds): ComplEx's closed forms of its squared sums and of its
coefficients in one variable.

The pair fold replaces the pair pass for ``log Z`` and weighted marginals, the linear fold the
forward and adjoint passes of every all-values conditional, so both are checked against
brute-force enumeration of ``φ`` (values and gradients) and against the passes they replace.
"""

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

import circuitkg as ckg
from circuitkg.errors import StructureError
from circuitkg.executor.folds import linear_fold, pair_fold, register_pair_fold
from circuitkg.numerics import MixedScaled


def _enumerated_phi_squared(compiled, n: int, m: int) -> torch.Tensor:
    x = torch.cartesian_prod(torch.arange(n), torch.arange(m), torch.arange(n))
    return compiled.score(x).square().reshape(n, m, n)


def _evidence(data, n: int, m: int, batch: int, gen: torch.Generator) -> dict:
    """Weights (some 0/1 masks, some with zeros) for every variable; maybe one observed."""
    evidence = {}
    observed = data.draw(st.sampled_from([None, "s", "r", "o"]))
    for v, size in (("s", n), ("r", m), ("o", n)):
        if v == observed:
            evidence[v] = torch.randint(0, size, (batch,), generator=gen)
            continue
        w = torch.rand(batch, size, generator=gen, dtype=torch.float64)
        if data.draw(st.booleans()):
            w = (w > 0.4).to(torch.float64)
        w[:, 0] = 1.0  # every row keeps some mass
        evidence[v] = w
    return evidence


def _brute_force(phi2: torch.Tensor, evidence: dict) -> torch.Tensor:
    weights = []
    for v, size in (("s", phi2.shape[0]), ("r", phi2.shape[1]), ("o", phi2.shape[2])):
        e = evidence[v]
        weights.append(
            e if e.is_floating_point() else torch.nn.functional.one_hot(e, size).double()
        )
    return torch.einsum("bs,br,bo,sro->b", *weights, phi2).log()


@settings(max_examples=40, deadline=None)
@given(st.integers(1, 5), st.integers(1, 3), st.integers(1, 4), st.integers(1, 3), st.data())
def test_complex_fold_matches_enumeration_and_the_pair_pass(n, m, rank, batch, data):
    gen = torch.Generator().manual_seed(data.draw(st.integers(0, 2**16)))
    torch.manual_seed(data.draw(st.integers(0, 2**16)))
    model = ckg.models.ComplEx(n, m, rank).double()
    compiled = model.compile()
    assert compiled.circuit.folds == "complex" and pair_fold("complex") is not None
    evidence = _evidence(data, n, m, batch, gen)
    expected = _brute_force(_enumerated_phi_squared(compiled, n, m), evidence)
    folded = compiled.log_mass(**evidence)
    torch.testing.assert_close(folded, expected, rtol=1e-10, atol=1e-10)
    grads = torch.autograd.grad(folded.sum(), list(model.parameters()))
    brute = _brute_force(_enumerated_phi_squared(compiled, n, m), evidence)
    expected_grads = torch.autograd.grad(brute.sum(), list(model.parameters()))
    for g, e in zip(grads, expected_grads, strict=True):
        torch.testing.assert_close(g, e, rtol=1e-8, atol=1e-10)
    # the pair pass it replaces gives the same value
    compiled.circuit.folds = None
    torch.testing.assert_close(compiled.log_mass(**evidence), folded, rtol=1e-10, atol=1e-10)


@settings(max_examples=30, deadline=None)
@given(
    st.integers(1, 5),
    st.integers(1, 3),
    st.integers(1, 4),
    st.sampled_from(["score", "squared"]),
    st.integers(0, 2**16),
)
def test_complex_linear_fold_gives_the_conditionals_of_enumeration(n, m, rank, form, seed):
    """``log p(t | rest)`` of every target and assignment, and its gradient, against ``φ`` over
    the enumerated triples (a softmax of ``φ`` in score form, ``φ²`` normalised in squared form);
    the squared PLL terms (``log_conditional_of``) too; and the walk the fold replaces."""
    torch.manual_seed(seed)
    model = ckg.models.ComplEx(n, m, rank, form=form).double()
    compiled = model.compile()
    assert compiled.circuit.folds == "complex" and linear_fold("complex") is not None
    x = torch.cartesian_prod(torch.arange(n), torch.arange(m), torch.arange(n))
    for axis, target in enumerate(("s", "r", "o")):
        given_ = {v: x[:, i] for i, v in enumerate(("s", "r", "o")) if v != target}
        phi = compiled.score(x).reshape(n, m, n)
        log_mass = phi if form == "score" else phi.square().log()
        expected = (log_mass - log_mass.logsumexp(dim=axis, keepdim=True)).reshape(-1)
        ids = x[:, axis]
        got = compiled.log_conditional(target, **given_).gather(1, ids[:, None])[:, 0]
        torch.testing.assert_close(got, expected, rtol=1e-10, atol=1e-10)
        weights = torch.rand(len(x), dtype=torch.float64)
        params = list(model.parameters())
        grads = torch.autograd.grad((got * weights).sum(), params)
        wanted = torch.autograd.grad((expected * weights).sum(), params)
        for g, w in zip(grads, wanted, strict=True):
            torch.testing.assert_close(g, w, rtol=1e-8, atol=1e-10)
        if form == "squared":
            term = compiled.log_conditional_of(target, ids, **given_)
            torch.testing.assert_close(term, expected, rtol=1e-10, atol=1e-10)
        compiled.circuit.folds = None  # the forward and adjoint passes
        walked = compiled.log_conditional(target, **given_).gather(1, ids[:, None])[:, 0]
        compiled.circuit.folds = "complex"
        torch.testing.assert_close(walked, got, rtol=1e-10, atol=1e-10)


@settings(max_examples=25, deadline=None)
@given(st.integers(1, 3), st.integers(1, 4), st.integers(2, 5), st.booleans(), st.data())
def test_class_grouped_weights_reach_the_fold_unmixed_and_match_enumeration(
    classes, rank, groups, repeated, data
):
    """A schema's masks: 0/1 weights constant on classes of entities (so the entity Grams come to
    the fold as per-class Grams and their mix), rows maybe repeated (``row_of``)."""
    n, m = 4 * classes + 8, 3
    gen = torch.Generator().manual_seed(data.draw(st.integers(0, 2**16)))
    torch.manual_seed(data.draw(st.integers(0, 2**16)))
    model = ckg.models.ComplEx(n, m, rank).double()
    compiled = model.compile()
    class_of = torch.arange(n) % classes
    evidence = {}
    for v in ("s", "o"):
        by_class = (torch.rand(groups, classes, generator=gen) > 0.5).double()
        by_class[:, 0] = 1.0
        if repeated:
            by_class = by_class[torch.arange(groups) % 2]  # every mask row appears twice or more
        evidence[v] = by_class[:, class_of]
        mixed = model.entity.weighted_gram(model.entity, evidence[v])
        assert isinstance(mixed, MixedScaled) and mixed.parts.shape[0] <= classes
    evidence["r"] = (torch.rand(groups, m, generator=gen) > 0.3).double()
    evidence["r"][:, 0] = 1.0
    folded = compiled.log_mass(**evidence)
    brute = _brute_force(_enumerated_phi_squared(compiled, n, m), evidence)
    torch.testing.assert_close(folded, brute, rtol=1e-10, atol=1e-10)
    grads = torch.autograd.grad(folded.sum(), list(model.parameters()))
    expected = torch.autograd.grad(brute.sum(), list(model.parameters()))
    for g, e in zip(grads, expected, strict=True):
        torch.testing.assert_close(g, e, rtol=1e-8, atol=1e-10)


def test_complex_fold_serves_log_partition_and_kronecker_tables():
    torch.manual_seed(0)
    model = ckg.models.ComplEx(6, 2, 3).double().with_kronecker("entity")
    compiled = model.compile()
    assert compiled.circuit.folds == "complex"
    expected = _enumerated_phi_squared(compiled, 6, 2).sum().log()
    folded = compiled.log_partition()  # s and o share one Gram: the Σ |A|² Re R form
    torch.testing.assert_close(folded, expected, rtol=1e-10, atol=1e-12)
    params = list(model.parameters())
    for g, e in zip(
        torch.autograd.grad(folded, params), torch.autograd.grad(expected, params), strict=True
    ):
        torch.testing.assert_close(g, e, rtol=1e-8, atol=1e-12)


def test_monotone_complex_has_no_fold():
    model = ckg.models.ComplEx(4, 2, 2, form="monotone")
    assert model.compile().circuit.folds is None


def test_a_second_fold_under_a_taken_name_is_refused():
    with pytest.raises(StructureError, match="already registered"):
        register_pair_fold("complex", lambda pairs: pairs["s"])
