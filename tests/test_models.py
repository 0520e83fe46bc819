"""Every KGE model in every form it has, on tiny KGs, against brute-force enumeration."""

import itertools

import pytest
import torch
from hypothesis import given

import circuitkg as ckg
from circuitkg.testing import (
    all_assignments,
    assert_conditionals_consistent,
    assert_marginals_consistent,
    assert_matches_interpreter,
    assert_normalised,
    evaluate_naive,
    kge_models,
    model_forms,
)


@given(kge_models(forms=["monotone", "squared"]))
def test_normalised_models_match_enumeration(model):
    compiled = ckg.compile(model)
    assert_matches_interpreter(compiled)
    assert_normalised(compiled)
    assert_marginals_consistent(compiled)
    assert_conditionals_consistent(compiled)


@given(kge_models(forms=["score"]))
def test_score_models_rank_with_their_own_scores(model):
    compiled = ckg.compile(model)
    x = all_assignments(compiled.circuit)
    phi = evaluate_naive(compiled.circuit, x).reshape(
        model.num_entities, model.num_relations, model.num_entities
    )
    s, r = torch.meshgrid(
        torch.arange(model.num_entities), torch.arange(model.num_relations), indexing="ij"
    )
    got = compiled.score_all("o", s=s.reshape(-1), r=r.reshape(-1))
    assert torch.allclose(got, phi.reshape(-1, model.num_entities), rtol=1e-9, atol=1e-12)
    got_s = compiled.score_all("s", r=r.reshape(-1), o=s.reshape(-1))
    expected_s = phi.permute(2, 1, 0).reshape(-1, model.num_entities)
    assert torch.allclose(got_s, expected_s, rtol=1e-9, atol=1e-12)


def _reference_score(model, s, r, o):
    """The published score functions, written directly from their definitions."""
    name = model.name
    if name == "cp":
        return (model.subject.rows(s) * model.relation.rows(r) * model.object.rows(o)).sum(-1)
    if name == "distmult":
        e, w = model.entity.rows, model.relation.rows
        return (e(s) * w(r) * e(o)).sum(-1)
    if name == "complex":
        k = model.rank
        if model.form == "monotone":

            def cplx(t, i):
                row = t.rows(i)
                return torch.complex(row[..., :k], row[..., k : 2 * k])
        else:

            def cplx(t, i):
                row = t.rows(i)
                return torch.complex(row[..., :k], row[..., k:])

        es, wr, eo = cplx(model.entity, s), cplx(model.relation, r), cplx(model.entity, o)
        return (es * wr * eo.conj()).sum(-1).real
    if name == "rescal":
        k = model.rank
        w = model.relation.rows(r).reshape(-1, k, k)
        return torch.einsum("na,nac,nc->n", model.entity.rows(s), w, model.entity.rows(o))
    if name == "tucker":
        core = model.core.matrix().reshape(model.rank, model.relation_rank, model.rank)
        return torch.einsum(
            "abc,na,nb,nc->n",
            core,
            model.entity.rows(s),
            model.relation.rows(r),
            model.entity.rows(o),
        )
    if name == "transe":
        return -((model.entity.rows(s) + model.relation.rows(r) - model.entity.rows(o)) ** 2).sum(
            -1
        )
    raise AssertionError(name)


PUBLISHED = ("cp", "distmult", "complex", "rescal", "tucker", "transe")


@pytest.mark.parametrize(("name", "form"), [(n, f) for n, f in model_forms() if n in PUBLISHED])
def test_circuit_computes_the_published_score(name, form):
    torch.manual_seed(0)
    model = ckg.models.create_model(name, 4, 3, 3, form=form).double()
    compiled = ckg.compile(model)
    x = torch.tensor(list(itertools.product(range(4), range(3), range(4))))
    expected = _reference_score(model, x[:, 0], x[:, 1], x[:, 2])
    assert torch.allclose(compiled.score(x), expected, rtol=1e-10, atol=1e-14)


def test_distmult_ties_subject_and_object():
    model = ckg.models.DistMult(6, 2, 4)
    tables = model.circuit().tables()
    assert len(tables) == 2
    x = torch.tensor([[1, 0, 3], [3, 0, 1]])
    score = ckg.compile(model).score(x)
    assert torch.allclose(score[0], score[1])


def test_models_register_their_parameters_once():
    model = ckg.models.ComplEx(10, 3, 4, form="squared")
    compiled = ckg.compile(model)
    assert {id(p) for p in compiled.parameters()} == {id(p) for p in model.parameters()}
    assert model.num_parameters() == 10 * 8 + 3 * 8
