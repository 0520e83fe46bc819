"""The compiled object's query API: evidence handling, forms, devices and error messages."""

import pytest
import torch

import circuitkg as ckg
from circuitkg.errors import EvidenceError, FormError


@pytest.fixture
def compiled():
    torch.manual_seed(0)
    return ckg.compile(ckg.models.ComplEx(num_entities=7, num_relations=3, rank=4, form="squared"))


def test_readme_example_shapes(compiled):
    triples = torch.tensor([[0, 1, 2], [3, 2, 6]])
    assert compiled.log_prob(triples).shape == (2,)
    assert compiled.log_partition().shape == ()
    assert compiled.log_marginal(s=triples[:, 0], r=triples[:, 1]).shape == (2,)
    assert compiled.log_conditional("o", s=triples[:, 0], r=triples[:, 1]).shape == (2, 7)
    assert compiled.log_conditional("r", s=triples[:, 0], o=triples[:, 2]).shape == (2, 3)
    assert compiled.score(triples).shape == (2,)


def test_scalar_evidence_broadcasts(compiled):
    rows = compiled.log_conditional("o", s=1, r=torch.tensor([0, 1, 2]))
    assert rows.shape == (3, 7)
    assert torch.allclose(
        rows[1], compiled.log_conditional("o", s=torch.tensor([1]), r=torch.tensor([1]))[0]
    )


def test_batch_chunking_gives_the_same_answer():
    torch.manual_seed(0)
    model = ckg.models.CP(9, 3, 4)
    s = torch.arange(9).repeat(3)
    r = torch.arange(3).repeat_interleave(9)
    whole = ckg.compile(model, batch_chunk=1024).log_conditional("o", s=s, r=r)
    chunked = ckg.compile(model, batch_chunk=5).log_conditional("o", s=s, r=r)
    assert torch.allclose(whole, chunked)


def test_log_prob_is_differentiable(compiled):
    loss = -compiled.log_prob(torch.tensor([[0, 1, 2]])).sum()
    loss.backward()
    assert all(p.grad is not None and torch.isfinite(p.grad).all() for p in compiled.parameters())


def test_unknown_variable_is_named(compiled):
    with pytest.raises(EvidenceError, match="'x'"):
        compiled.log_marginal(x=torch.tensor([0]))
    with pytest.raises(EvidenceError, match="'q'"):
        compiled.log_conditional("q", s=0)


def test_out_of_domain_value_is_named(compiled):
    with pytest.raises(EvidenceError, match="value 9 of variable 's'"):
        compiled.log_prob(torch.tensor([[9, 0, 0]]))


def test_mismatched_batch_sizes(compiled):
    with pytest.raises(EvidenceError, match="batch"):
        compiled.log_marginal(s=torch.tensor([0, 1]), r=torch.tensor([0, 1, 2]))


def test_target_cannot_be_given(compiled):
    with pytest.raises(EvidenceError, match="both the target and given"):
        compiled.log_conditional("o", o=1)


def test_score_form_refuses_normalised_queries():
    c = ckg.compile(ckg.models.CP(4, 2, 3, form="score"))
    with pytest.raises(FormError, match="score"):
        c.log_partition()
    with pytest.raises(FormError, match="score"):
        c.log_prob(torch.tensor([[0, 0, 0]]))


def test_forms_a_model_cannot_have():
    with pytest.raises(FormError, match="TransE has no 'monotone' form"):
        ckg.models.TransE(4, 2, 3, form="monotone")
    with pytest.raises(FormError, match="unknown form|has no"):
        ckg.models.CP(4, 2, 3, form="cubed")
    with pytest.raises(ValueError, match="unknown model 'foo'"):
        ckg.models.create_model("foo", 4, 2, 3)


def test_compile_refuses_a_different_form():
    with pytest.raises(ValueError, match="built in form 'squared'"):
        ckg.compile(ckg.models.CP(4, 2, 3, form="squared"), form="monotone")


def test_compile_rejects_other_objects():
    with pytest.raises(TypeError, match="KGE model or a circuitkg.ir.Circuit"):
        ckg.compile(42)


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_cuda_matches_cpu():
    torch.manual_seed(0)
    model = ckg.models.ComplEx(50, 5, 8, form="squared").double()
    cpu = ckg.compile(model)
    triples = torch.tensor([[0, 1, 2], [3, 4, 5]])
    expected = (
        cpu.log_partition(),
        cpu.log_prob(triples),
        cpu.log_conditional("o", s=triples[:, 0], r=triples[:, 1]),
    )
    gpu = cpu.to("cuda")
    got = (
        gpu.log_partition(),
        gpu.log_prob(triples.cuda()),
        gpu.log_conditional("o", s=triples[:, 0].cuda(), r=triples[:, 1].cuda()),
    )
    for a, b in zip(got, expected, strict=True):
        assert torch.allclose(a.cpu(), b, rtol=1e-10)


def test_gram_cache_follows_parameter_updates():
    """No-grad queries reuse Gram matrices until a parameter changes in place."""
    torch.manual_seed(0)
    model = ckg.models.CP(6, 2, 3).double()
    c = ckg.compile(model)
    with torch.no_grad():
        before = c.log_conditional("s")
        again = c.log_conditional("s")
        model.object.weight.mul_(torch.linspace(0.5, 2.0, 3))  # an optimiser step, in place
        after = c.log_conditional("s")
    fresh = ckg.compile(model).log_conditional("s")
    assert torch.equal(before, again)
    assert not torch.allclose(before, after)
    assert torch.allclose(after, fresh.detach())
