"""One training step's shared gathers and Grams (``circuitkg.executor.training_step``).

The step's loss and gradients must be those of brute-force enumeration, whatever the scope shares;
the sharing itself is counted: one Gram per table and one gather per (table, index) per step.
"""

import copy

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

import circuitkg as ckg
from circuitkg.executor import training_step
from circuitkg.params import gather as gather_module
from circuitkg.testing import joint_table
from circuitkg.train import n3, pll_loss

pytestmark = pytest.mark.usefixtures("one_thread")

MODELS = ["cp", "distmult", "complex", "rescal", "tucker"]


def brute_force_pll(compiled, triples, weights) -> torch.Tensor:
    """``-mean_b Σ_v w_v log p(v | rest)`` from the enumerated joint (differentiable)."""
    log_p = joint_table(compiled).log()  # (S, R, O)
    s, r, o = triples.unbind(1)
    total = torch.zeros((), dtype=log_p.dtype)
    for axis, weight in enumerate(weights):
        if weight:
            conditional = log_p - torch.logsumexp(log_p, dim=axis, keepdim=True)
            total = total - weight * conditional[s, r, o].mean()
    return total


def tiny_model(name: str, form: str, seed: int):
    torch.manual_seed(seed)
    model = ckg.models.create_model(name, 5, 3, 2, form=form).double()
    with torch.no_grad():  # away from zero, so every φ and its gradient are well conditioned
        for p in model.parameters():
            p.add_(0.3 * torch.sign(p))
    return model


@settings(max_examples=25, deadline=None)
@given(
    name=st.sampled_from(MODELS),
    form=st.sampled_from(["squared", "monotone"]),
    weights=st.sampled_from([(1, 1, 1), (0, 0, 1), (1, 0, 0), (0.5, 2, 1)]),
    seed=st.integers(0, 10_000),
    batch=st.integers(1, 6),
    plan=st.sampled_from(["auto", "gram", "values"]),
)
def test_step_loss_and_gradients_equal_brute_force(name, form, weights, seed, batch, plan):
    """Every summation plan (Gram, all values, the executor's pick) gives the enumerated PLL."""
    model = tiny_model(name, form, seed)
    reference = copy.deepcopy(model)
    gen = torch.Generator().manual_seed(seed)
    triples = torch.stack([torch.randint(0, n, (batch,), generator=gen) for n in (5, 3, 5)], dim=1)
    compiled = ckg.compile(model)
    compiled.summation_plan = plan
    with training_step():
        loss = pll_loss(compiled, triples, weights) + 0.1 * n3(model, triples)
    loss.backward()
    expected = brute_force_pll(ckg.compile(reference), triples, weights)
    expected = expected + 0.1 * n3(reference, triples)
    grads = torch.autograd.grad(expected, list(reference.parameters()), allow_unused=True)
    assert torch.allclose(loss, expected, rtol=1e-9, atol=1e-12)
    for (pname, p), g in zip(model.named_parameters(), grads, strict=True):
        want = torch.zeros_like(p) if g is None else g
        got = torch.zeros_like(p) if p.grad is None else p.grad
        assert got.layout == torch.strided, f"{pname}: the optimiser needs a dense gradient"
        assert torch.allclose(got, want, rtol=1e-8, atol=1e-10), pname


def test_gather_only_parameter_gets_a_dense_gradient_and_steps():
    """With weight only on ``o``, the subject table is only gathered: its sparse row gradient is
    made dense once, after accumulation, so Adam (which refuses sparse gradients) steps."""
    model = tiny_model("cp", "squared", 0)
    optimiser = torch.optim.Adam(model.parameters(), lr=1e-2)
    triples = torch.tensor([[0, 1, 2], [0, 2, 4], [3, 0, 1]])
    before = model.subject.weight.detach().clone()
    loss = pll_loss(ckg.compile(model), triples, (0, 0, 1))
    loss.backward()
    grad = model.subject.weight.grad
    assert grad.layout == torch.strided
    assert bool((grad[[1, 2, 4]] == 0).all()) and bool((grad[[0, 3]] != 0).any())
    optimiser.step()
    assert not torch.equal(model.subject.weight.detach(), before)


def test_gathers_outside_a_step_are_plain():
    """``torch.autograd.grad`` in user code sees dense gradients outside a step."""
    model = tiny_model("cp", "squared", 1)
    phi = ckg.compile(model).score(torch.tensor([[0, 1, 2]]))
    (grad,) = torch.autograd.grad(phi.sum(), [model.subject.weight])
    assert grad.layout == torch.strided


def counting(monkeypatch, table, counts, key):
    gram = table.gram

    def counted(*args, **kwargs):
        counts[key] = counts.get(key, 0) + 1
        return gram(*args, **kwargs)

    monkeypatch.setattr(table, "gram", counted)


@pytest.mark.parametrize("name", ["distmult", "complex"])
def test_one_gram_per_table_and_one_gather_per_index_per_step(monkeypatch, name):
    """Without the scope DistMult's entity Gram was computed for s and for o, ComplEx's for each
    term; in a step each table's Gram is computed once, and the entity table is gathered once per
    column (s, o) for the three terms and N3 together."""
    model = ckg.models.create_model(name, 40, 30, 4, form="squared")
    compiled = ckg.compile(model)
    compiled.summation_plan = "gram"
    grams: dict[str, int] = {}
    counting(monkeypatch, model.entity, grams, "entity")
    counting(monkeypatch, model.relation, grams, "relation")
    embeddings: list[int] = []
    embedding = gather_module.F.embedding

    def counted_embedding(index, weight, *args, **kwargs):
        embeddings.append(id(weight))
        return embedding(index, weight, *args, **kwargs)

    monkeypatch.setattr(gather_module.F, "embedding", counted_embedding)
    triples = torch.tensor([[0, 1, 2], [3, 4, 5], [6, 7, 8]])
    with training_step():
        loss = pll_loss(compiled, triples) + n3(model, triples)
    loss.backward()
    assert grams == {"entity": 1, "relation": 1}
    assert embeddings.count(id(model.entity.weight)) == 2  # s and o
    assert embeddings.count(id(model.relation.weight)) == 1


@settings(max_examples=15, deadline=None)
@given(seed=st.integers(0, 10_000), columns=st.permutations([0, 1, 2, 3]))
def test_views_of_one_base_fold_into_one_quadratic_form(seed, columns):
    """Two input layers over ``y`` read columns of one base table: ``log p(y | x)`` from the folded
    form equals enumeration."""
    from circuitkg.ir import Circuit, InputLayer, ProductLayer, SumLayer
    from circuitkg.params import ColumnView, FreeTable, FreeWeight

    torch.manual_seed(seed)
    base = FreeTable(5, 4).double()
    x1, x2 = InputLayer("x", FreeTable(3, 3).double()), InputLayer("x", FreeTable(3, 2).double())
    y1 = InputLayer("y", ColumnView(base, columns[:3]))
    y2 = InputLayer("y", ColumnView(base, [columns[3], columns[0]]))
    products = [ProductLayer([x1, y1], "hadamard"), ProductLayer([x2, y2], "hadamard")]
    circuit = Circuit(SumLayer(products, FreeWeight(1, 5)))
    compiled = ckg.compile(circuit, form="squared").double()
    x, y = torch.tensor([0, 1, 2, 2]), torch.tensor([4, 0, 3, 1])
    got = compiled.log_conditional_of("y", y, x=x)
    joint = joint_table(compiled)  # (X, Y) in variables order
    if compiled.variables == ["y", "x"]:
        joint = joint.T
    expected = (joint[x, y] / joint[x].sum(1)).log()
    assert torch.allclose(got, expected, rtol=1e-10)
