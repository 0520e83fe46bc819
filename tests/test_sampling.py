"""Exact sampling: chi-square goodness of fit against brute-force enumeration.

Every test draws ≥ 20,000 samples with a fixed seed and fails only if the chi-square p-value is
below 1e-6 (cells with expected count < 5 are pooled), so a correct sampler fails with probability
below 1e-6 per test case.
"""

import pytest
import torch
from hypothesis import assume, given, settings
from hypothesis import strategies as st
from scipy.stats import chi2

import circuitkg as ckg
from circuitkg.ir import Circuit, InputLayer, ProductLayer, SumLayer
from circuitkg.params import PositiveTable, PositiveWeight
from circuitkg.sampling import SumTree, sample
from circuitkg.testing import circuits, joint_table, kge_models

N = 20_000
ALPHA = 1e-6


def _chi2(counts: torch.Tensor, expected: torch.Tensor) -> tuple[float, int]:
    """Pearson statistic and degrees of freedom of one multinomial, small cells pooled."""
    counts, expected = counts.double().reshape(-1), expected.double().reshape(-1)
    impossible = expected <= 0
    assert counts[impossible].sum() == 0, "a sample fell on an assignment of probability zero"
    counts, expected = counts[~impossible], expected[~impossible]
    order = torch.argsort(expected)
    counts, expected = counts[order], expected[order]
    small = expected < 5
    cells_c = [counts[~small]]
    cells_e = [expected[~small]]
    if small.any():
        pool_c, pool_e = counts[small].sum(), expected[small].sum()
        if pool_e < 5 and (~small).any():  # merge the pool into the smallest large cell
            cells_c[0] = cells_c[0].clone()
            cells_e[0] = cells_e[0].clone()
            cells_c[0][0] += pool_c
            cells_e[0][0] += pool_e
        else:
            cells_c.append(pool_c.reshape(1))
            cells_e.append(pool_e.reshape(1))
    c, e = torch.cat(cells_c), torch.cat(cells_e)
    return float(((c - e) ** 2 / e).sum()), max(c.numel() - 1, 0)


def _p_value(stats: list[tuple[float, int]]) -> float:
    """Independent chi-square statistics add up (as do their degrees of freedom)."""
    stat, dof = sum(s for s, _ in stats), sum(d for _, d in stats)
    return 1.0 if dof == 0 else float(chi2.sf(stat, dof))


def _counts(x: torch.Tensor, shape: list[int]) -> torch.Tensor:
    flat = torch.zeros(shape, dtype=torch.long).reshape(-1)
    index = torch.zeros(x.shape[0], dtype=torch.long)
    for j, size in enumerate(shape):
        index = index * size + x[:, j]
    return flat.index_add(0, index, torch.ones_like(index)).reshape(shape)


def assert_follows(compiled, x: torch.Tensor, given: dict | None = None) -> None:
    """``x`` (N, V) follows ``p(rest | given)``; ``given`` values are ints or per-sample tensors."""
    table = joint_table(compiled).detach()
    variables = compiled.variables
    shape = [compiled.domains[v] for v in variables]
    assert x.shape == (x.shape[0], len(variables)) and x.dtype == torch.long
    for j, size in enumerate(shape):
        assert bool(((x[:, j] >= 0) & (x[:, j] < size)).all()), "sample outside the domain"
    given = given or {}
    cols = [variables.index(v) for v in given]
    for v, value in given.items():
        assert bool((x[:, variables.index(v)] == torch.as_tensor(value)).all())
    if not cols:
        stats = [_chi2(_counts(x, shape), table * x.shape[0])]
    else:
        stats = []
        prefixes, inverse = torch.unique(x[:, cols], dim=0, return_inverse=True)
        for g, prefix in enumerate(prefixes):
            rows = x[inverse == g]
            index = [slice(None)] * len(variables)
            for c, value in zip(cols, prefix.tolist(), strict=True):
                index[c] = value
            cond = table[tuple(index)]
            cond = cond / cond.sum()
            rest = [j for j in range(len(variables)) if j not in cols]
            counts = _counts(rows[:, rest], [shape[j] for j in rest])
            stats.append(_chi2(counts, cond * rows.shape[0]))
    p = _p_value(stats)
    assert p > ALPHA, f"chi-square p-value {p:.3e} < {ALPHA}"


def _gen(seed: int = 0) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


@settings(max_examples=10)
@given(kge_models(forms=["monotone", "squared"]))
def test_models_sample_their_distribution(model):
    compiled = ckg.compile(model)
    assert_follows(compiled, sample(compiled, N, generator=_gen()))


@settings(max_examples=10)
@given(kge_models(forms=["monotone", "squared"]), st.data())
def test_models_sample_conditionals(model, data):
    compiled = ckg.compile(model)
    s = data.draw(st.integers(0, model.num_entities - 1))
    r = data.draw(st.integers(0, model.num_relations - 1))
    assert_follows(compiled, sample(compiled, N, given={"s": s}, generator=_gen(1)), {"s": s})
    given_sr = {"s": s, "r": r}
    assert_follows(compiled, sample(compiled, N, given=given_sr, generator=_gen(2)), given_sr)


@settings(max_examples=10)
@given(circuits(), st.data())
def test_random_circuits_sample_their_distribution(circuit, data):
    form = "monotone" if circuit.has("monotone") else "squared"
    compiled = ckg.compile(circuit, form=form)
    assert_follows(compiled, sample(compiled, N, generator=_gen()))
    observed = data.draw(st.lists(st.sampled_from(circuit.variables), unique=True, min_size=1))
    values = {v: data.draw(st.integers(0, circuit.domains[v] - 1)) for v in observed}
    table = joint_table(compiled).detach()
    index = tuple(values.get(v, slice(None)) for v in circuit.variables)
    assume(float(table[index].sum()) > 1e-9)
    x = sample(compiled, N, given=values, generator=_gen(3))
    assert_follows(compiled, x, values)


@pytest.mark.parametrize("form", ["monotone", "squared"])
def test_per_sample_evidence(form):
    torch.manual_seed(0)
    model = ckg.models.ComplEx(5, 3, 2, form=form).double()
    compiled = ckg.compile(model)
    s = torch.randint(0, 5, (N,), generator=_gen(4))
    x = sample(compiled, N, given={"s": s}, generator=_gen(5))
    assert torch.equal(x[:, 0], s)
    assert_follows(compiled, x, {"s": s})


def _biased_mixture() -> tuple[ckg.CompiledCircuit, Circuit]:
    """A mixture of two product components whose weights MLE training has moved far apart."""
    torch.manual_seed(0)
    comps = []
    for _ in range(2):
        a = InputLayer("a", PositiveTable(4, 1, init_std=1.0))
        b = InputLayer("b", PositiveTable(3, 1, init_std=1.0))
        comps.append(ProductLayer([a, b], "hadamard"))
    circuit = Circuit(SumLayer(comps, PositiveWeight(1, 2)), ["a", "b"])
    compiled = ckg.compile(circuit, form="monotone").double()
    data = torch.tensor([[0, 0]] * 20 + [[3, 2]] * 2 + [[1, 1]])
    opt = torch.optim.Adam(compiled.parameters(), lr=0.1)
    for _ in range(200):
        opt.zero_grad()
        (-compiled.log_prob(data).mean()).backward()
        opt.step()
    return compiled, circuit


def test_trained_mixture_is_not_sampled_with_uniform_components():
    compiled, circuit = _biased_mixture()
    x = sample(compiled, N, generator=_gen(6))
    assert_follows(compiled, x)
    # the distribution a uniform choice of component would sample from is clearly rejected
    w = circuit.output.weight.matrix().detach()[0]
    comps = circuit.output.children
    per_comp, mass = [], []
    for comp in comps:
        ta, tb = (c.table.full().detach() for c in comp.children)
        joint = ta[:, 0, None] * tb[None, :, 0]
        per_comp.append(joint / joint.sum())
        mass.append(joint.sum())
    mass = w * torch.stack(mass)
    assert float(mass.max() / mass.min()) > 5, "training should have made the mixture skewed"
    uniform_choice = (per_comp[0] + per_comp[1]) / 2
    stat = _chi2(_counts(x, [4, 3]), uniform_choice * N)
    assert _p_value([stat]) < ALPHA


def test_generator_makes_draws_reproducible():
    model = ckg.models.CP(6, 2, 3, form="monotone")
    compiled = ckg.compile(model)
    a = sample(compiled, 500, generator=_gen(7))
    b = sample(compiled, 500, generator=_gen(7))
    c = sample(compiled, 500, generator=_gen(8))
    assert torch.equal(a, b) and not torch.equal(a, c)
    squared = ckg.compile(ckg.models.CP(6, 2, 3))
    assert torch.equal(
        sample(squared, 500, given={"r": 1}, generator=_gen(9)),
        sample(squared, 500, given={"r": 1}, generator=_gen(9)),
    )


def test_chunking_does_not_change_the_distribution():
    model = ckg.models.TuckER(5, 2, 2, form="monotone").double()
    compiled = ckg.compile(model)
    x = sample(compiled, N, generator=_gen(10), max_entries=20_000)  # 8 chunks of samples
    assert_follows(compiled, x)
    squared = ckg.compile(ckg.models.ComplEx(5, 2, 2).double())
    assert_follows(squared, sample(squared, N, generator=_gen(11), max_entries=16))


def test_input_columns_are_drawn_from_a_sum_tree():
    table = PositiveTable(7, 6, init_std=1.0).double()
    units = torch.arange(6).repeat_interleave(N // 6)
    tree = SumTree(table.log_rows, 7, leaf_size=2)  # 4 leaves, the last one short
    x = tree.draw(units, _gen(16))
    probs = table.full().detach().T
    probs = probs / probs.sum(dim=1, keepdim=True)
    stats = [
        _chi2(torch.bincount(x[units == k], minlength=7), probs[k] * int((units == k).sum()))
        for k in range(6)
    ]
    assert _p_value(stats) > ALPHA


def test_bad_requests_are_refused():
    score = ckg.compile(ckg.models.CP(4, 2, 3, form="score"))
    with pytest.raises(ckg.FormError, match="score"):
        sample(score, 10)
    compiled = ckg.compile(ckg.models.CP(4, 2, 3))
    with pytest.raises(ckg.EvidenceError, match="unknown variable"):
        sample(compiled, 10, given={"x": 0})
    with pytest.raises(ckg.EvidenceError, match="outside its domain"):
        sample(compiled, 10, given={"s": 4})
    with pytest.raises(ckg.EvidenceError, match="has 3 rows but the batch has 10"):
        sample(compiled, 10, given={"s": torch.zeros(3, dtype=torch.long)})
    assert sample(compiled, 0).shape == (0, 3)


def test_zero_probability_evidence_is_an_error():
    from circuitkg.params import ConstantTable, FixedWeight

    a = InputLayer("a", ConstantTable(torch.tensor([[1.0], [0.0]])))
    b = InputLayer("b", ConstantTable(torch.tensor([[1.0], [2.0]])))
    circuit = Circuit(SumLayer([ProductLayer([a, b])], FixedWeight.ones(1)), ["a", "b"])
    for form in ("monotone", "squared"):
        compiled = ckg.compile(circuit, form=form)
        with pytest.raises(ckg.EvidenceError, match="probability zero"):
            sample(compiled, 10, given={"a": 1})


def test_method_on_compiled_circuit():
    compiled = ckg.compile(ckg.models.ComplEx(5, 2, 2))
    x = compiled.sample(100, given={"s": 2}, generator=_gen(12))
    assert x.shape == (100, 3) and bool((x[:, 0] == 2).all())


def test_write_samples_tsv(tmp_path):
    from circuitkg.cli.samples import write_samples_tsv
    from circuitkg.data.kg import KnowledgeGraph

    entities, relations = ["ann", "bob", "cy"], ["knows", "likes"]
    kg = KnowledgeGraph(
        "toy",
        {e: i for i, e in enumerate(entities)},
        entities,
        {r: i for i, r in enumerate(relations)},
        relations,
        {"train": torch.tensor([[0, 0, 1]])},
    )
    compiled = ckg.compile(ckg.models.CP(3, 2, 2))
    path = tmp_path / "samples.tsv"
    triples = write_samples_tsv(compiled, kg, 50, path, given={"s": "bob"}, generator=_gen(13))
    lines = path.read_text().splitlines()
    assert len(lines) == 50 and triples.shape == (50, 3)
    for line, (s, r, o) in zip(lines, triples.tolist(), strict=True):
        assert line.split("\t") == [entities[s], relations[r], entities[o]]
        assert s == 1
    with pytest.raises(ckg.EvidenceError, match="values in the circuit"):
        write_samples_tsv(ckg.compile(ckg.models.CP(4, 2, 2)), kg, 5, path)


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
@pytest.mark.parametrize("form", ["monotone", "squared"])
def test_cuda_matches_cpu(form):
    model = ckg.models.ComplEx(6, 3, 2, form=form).double()
    cpu = ckg.compile(model)
    x_cpu = sample(cpu, N, given={"r": 1}, generator=_gen(14))
    gpu = ckg.compile(model.cuda())
    x_gpu = sample(gpu, N, given={"r": 1}, generator=_gen(14))
    assert x_gpu.device.type == "cuda"
    assert (x_gpu.cpu() == x_cpu).float().mean() > 0.99  # same uniforms: equal up to fp ties
    assert_follows(cpu, x_gpu.cpu(), {"r": 1})
