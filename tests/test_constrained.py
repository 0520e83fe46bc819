"""Constrained queries (p ∝ φ²·c, φ·c) against float64 brute force on tiny typed KGs."""

import itertools

import circuitkg.constraints.pll as pll
import pytest
import torch
from circuitkg.compilers import create_model
from circuitkg.constraints import (
    DomainSchema,
    biomedical_kg,
    constrain,
    constraint_circuit,
    is_deterministic,
)
from circuitkg.constraints.pll import AllowedRuns
from hypothesis import given, settings
from hypothesis import strategies as st
from scipy.stats import chi2

import circuitkg as ckg
from circuitkg.data import KnowledgeGraph
from circuitkg.grouping import RowsByGroup
from circuitkg.testing import all_assignments, evaluate_naive, joint_table, model_forms, tiny_kgs

VARS = ["s", "r", "o"]


@st.composite
def typed_problems(draw, forms=("squared", "monotone")):
    """A tiny KG, a random multi-type schema (some relations unsigned, some entities untyped) and
    a seeded model in one of ``forms``, in float64."""
    n, m, triples, types = draw(tiny_kgs(max_entities=5, max_relations=3, max_types=3))
    types = [t if draw(st.integers(0, 5)) else set() for t in types]  # now and then untyped
    known = sorted(set().union(*types))
    if not known:
        types[0], known = {0}, [0]
    side = st.sets(st.sampled_from(known), min_size=1).map(lambda ts: {f"t{t}" for t in ts})
    signatures = {f"r{r}": (draw(side), draw(side)) for r in range(m) if draw(st.integers(0, 4))}
    entities = [f"e{i}" for i in range(n)]
    relations = [f"r{r}" for r in range(m)]
    kg = KnowledgeGraph(
        "tiny",
        {e: i for i, e in enumerate(entities)},
        entities,
        {r: i for i, r in enumerate(relations)},
        relations,
        {"train": triples},
    )
    schema = DomainSchema(
        {e: {f"t{t}" for t in ts} for e, ts in zip(entities, types, strict=True)}, signatures
    )
    name, form = draw(st.sampled_from([p for p in model_forms() if p[1] in forms]))
    torch.manual_seed(draw(st.integers(0, 2**31 - 1)))
    model = create_model(name, n, m, draw(st.integers(1, 3)), form=form, init_std=None)
    if form == "monotone":
        with torch.no_grad():
            for p in model.parameters():
                p.add_(torch.randn(p.shape) * 0.5)
    return kg, schema, model.double()


def brute_constraint(kg, schema):
    """c(s, r, o) from the names, independently of the binding code: (n, m, n) float64."""
    c = torch.ones(kg.num_entities, kg.num_relations, kg.num_entities, dtype=torch.float64)
    for (s, es), (r, er), (o, eo) in itertools.product(
        enumerate(kg.id_to_entity), enumerate(kg.id_to_relation), enumerate(kg.id_to_entity)
    ):
        if er in schema.signatures:
            c[s, r, o] = float(schema.consistent(es, er, eo))
    return c


def close(actual, expected, what, rtol=1e-8, atol=1e-11):
    assert actual.shape == expected.shape, what
    assert torch.allclose(actual, expected, rtol=rtol, atol=atol), (
        f"{what}: max deviation {(actual - expected).abs().max():.3g}"
    )


@settings(max_examples=25)
@given(typed_problems())
def test_constrained_distribution_matches_enumeration(problem):
    kg, schema, model = problem
    cc = constrain(model, schema, kg)
    c = brute_constraint(kg, schema)
    joint = joint_table(cc.compiled) * c
    expected = joint / joint.sum()  # φ²c / Σ φ²c (squared), φc / Σ φc (monotone)

    x = all_assignments(cc.compiled.circuit)
    log_p = cc.log_prob(x)
    assert torch.equal(torch.isneginf(log_p), c.reshape(-1) == 0)  # exactly zero iff violating
    close(log_p.exp(), expected.reshape(-1), "p(s, r, o)")
    close(log_p.exp().sum(), torch.tensor(1.0, dtype=torch.float64), "Σ p")
    phi = evaluate_naive(cc.compiled.circuit, x)
    mass = phi * phi if model.form == "squared" else phi
    close(cc.log_partition(), torch.log((mass * c.reshape(-1)).sum()), "log Z")

    for k in (1, 2):
        for subset in itertools.combinations(VARS, k):
            summed = [i for i, v in enumerate(VARS) if v not in subset]
            xs = all_assignments(cc.compiled.circuit, list(subset))
            got = cc.log_marginal(**{v: xs[:, i] for i, v in enumerate(subset)}).exp()
            close(got, expected.sum(dim=summed).reshape(-1), f"p({', '.join(subset)})")

    for target in VARS:
        others = [v for v in VARS if v != target]
        for k in range(3):
            for given_vars in itertools.combinations(others, k):
                keep = [target, *given_vars]
                summed = [i for i, v in enumerate(VARS) if v not in keep]
                marg = expected.sum(dim=summed) if summed else expected
                order = [sorted(keep, key=VARS.index).index(v) for v in keep]
                marg = marg.permute(order).reshape(cc.domains[target], -1).T  # (evidence, target)
                ok = marg.sum(dim=1) > 0
                what = f"p({target} | {', '.join(given_vars) or '∅'})"
                if not given_vars:
                    close(cc.log_conditional(target).exp()[0], marg[0] / marg[0].sum(), what)
                    continue
                xs = all_assignments(cc.compiled.circuit, list(given_vars))
                ev = {v: xs[ok, i] for i, v in enumerate(given_vars)}
                got = cc.log_conditional(target, **ev).exp()
                close(got, marg[ok] / marg[ok].sum(dim=1, keepdim=True), what)
                if not bool(ok.all()):
                    bad = {v: xs[~ok, i][:1] for i, v in enumerate(given_vars)}
                    with pytest.raises(ckg.EvidenceError, match="impossible under the schema"):
                        cc.log_conditional(target, **bad)
                if k == 2:
                    size = cc.domains[target]
                    values = torch.arange(size).repeat(int(ok.sum()))
                    rep = {v: e.repeat_interleave(size) for v, e in ev.items()}
                    single = cc.log_conditional_of(target, values, **rep).exp()
                    close(single, (marg[ok] / marg[ok].sum(dim=1, keepdim=True)).reshape(-1), what)


@settings(max_examples=15)
@given(typed_problems())
def test_product_circuit_is_the_constrained_model(problem):
    """multiply(φ, c) compiled in the model's form gives the same distribution (c² = c)."""
    kg, schema, model = problem
    cc = constrain(model, schema, kg)
    circuit = cc.constraint_circuit()
    assert circuit.compatible_with(model.circuit()) and is_deterministic(circuit)
    x = all_assignments(circuit)
    assert torch.equal(evaluate_naive(circuit, x), brute_constraint(kg, schema).reshape(-1))
    product = ckg.compile(cc.circuit, form=model.form)  # multiply(φ, c)
    close(product.log_partition(), cc.log_partition(), "log Z of the product circuit", rtol=1e-7)
    finite = torch.isfinite(cc.log_prob(x))
    close(
        product.log_prob(x)[finite],
        cc.log_prob(x)[finite],
        "log p of the product circuit",
        rtol=1e-7,
    )


@settings(max_examples=20)
@given(typed_problems(forms=("squared",)))
def test_pll_terms_and_their_gradients_match_enumeration(problem):
    """Each PLL term ``log p_c(t | rest)`` of every consistent triple, and its gradient, against
    ``log φ²c`` over the enumerated joint, normalised over the target's values by hand; under
    the runs plan and under the Gram plan of the entity normalisers."""
    default = pll.GRAM_ROWS
    try:
        for gram_rows in (-(10**9), 10**9):  # the Gram plan always, never
            pll.GRAM_ROWS = gram_rows
            _check_pll_terms(*problem)
    finally:
        pll.GRAM_ROWS = default


def _check_pll_terms(kg, schema, model):
    cc = constrain(model, schema, kg)
    c = brute_constraint(kg, schema)
    x = all_assignments(cc.compiled.circuit)
    keep = c.reshape(-1) > 0
    if not bool(keep.any()):
        return
    triples = x[keep]
    params = list(model.parameters())
    for axis, target in enumerate(VARS):
        given_ = {v: triples[:, i] for i, v in enumerate(VARS) if v != target}
        got = cc.log_conditional_of(target, triples[:, axis], **given_)
        phi = evaluate_naive(cc.compiled.circuit, x).reshape(c.shape)
        mass = phi.square() * c
        normaliser = mass.sum(dim=[0, 1, 2][axis], keepdim=True).expand_as(mass)
        s, r, o = triples.T
        expected = torch.log(mass[s, r, o]) - torch.log(normaliser[s, r, o])
        close(got, expected, f"PLL term {target}")
        weights = torch.rand(len(triples), dtype=torch.float64)
        grads = torch.autograd.grad((got * weights).sum(), params, allow_unused=True)
        wanted = torch.autograd.grad((expected * weights).sum(), params, allow_unused=True)
        for g, w in zip(grads, wanted, strict=True):
            if w is not None:
                close(g if g is not None else torch.zeros_like(w), w, f"∂ PLL term {target}")


@settings(max_examples=15)
@given(typed_problems(forms=("score",)))
def test_score_form_masks_forbidden_values(problem):
    kg, schema, model = problem
    cc = constrain(model, schema, kg)
    c = brute_constraint(kg, schema)
    s, r = torch.meshgrid(
        torch.arange(kg.num_entities), torch.arange(kg.num_relations), indexing="ij"
    )
    s, r = s.reshape(-1), r.reshape(-1)
    scores = cc.score_all("o", s=s, r=r)
    plain = cc.compiled.score_all("o", s=s, r=r)
    allowed = c[s, r] > 0
    assert torch.equal(torch.isneginf(scores), ~allowed)
    assert torch.equal(scores[allowed], plain[allowed])
    with pytest.raises(ckg.FormError):
        cc.log_partition()


def test_gradients_flow_and_training_respects_the_schema():
    """A few PLL steps under the constraint: finite gradients, forbidden triples stay at p = 0."""
    kg, schema = biomedical_kg(num_triples=200, seed=1)
    torch.manual_seed(0)
    model = ckg.models.ComplEx(kg.num_entities, kg.num_relations, 4)
    cc = constrain(model, schema, kg)
    opt = torch.optim.Adam(model.parameters(), lr=0.05)
    triples = kg.train
    first = None
    for _ in range(3):
        s, r, o = triples.T
        loss = -(
            cc.log_conditional_of("o", o, s=s, r=r)
            + cc.log_conditional_of("s", s, r=r, o=o)
            + cc.log_conditional_of("r", r, s=s, o=o)
        ).mean()
        opt.zero_grad()
        loss.backward()
        assert all(torch.isfinite(p.grad).all() for p in model.parameters())
        opt.step()
        first = loss.item() if first is None else first
    assert loss.item() < first
    bad = torch.tensor([[kg.entity_id("COX2"), kg.relation_id("treats"), kg.entity_id("fever")]])
    assert torch.isneginf(cc.log_prob(bad)).all()
    assert torch.isfinite(cc.log_prob(kg.test)).all()


def test_topk_by_name_and_clear_errors():
    kg, schema = biomedical_kg(seed=0)
    torch.manual_seed(0)
    cc = constrain(ckg.models.ComplEx(kg.num_entities, kg.num_relations, 4), schema, kg)
    top = cc.topk("o", s="loxoprofen", r="inhibits", k=200)
    assert top and all("enzyme" in schema.types_of(p.name) for p in top)
    assert abs(sum(p.probability for p in top) - 1) < 1e-5  # every enzyme is listed
    assert all(a.probability >= b.probability for a, b in zip(top, top[1:], strict=False))
    relations = cc.topk("r", s="loxoprofen", o="COX2")
    assert {p.name for p in relations} <= {"interacts", "inhibits"}
    assert all(schema.types_of(p.name) & {"drug", "protein"} for p in cc.topk("s", r="linked_to"))
    with pytest.raises(
        ckg.EvidenceError, match="'COX2'.*not an allowed subject of relation 'treats'"
    ):
        cc.topk("o", s="COX2", r="treats")
    with pytest.raises(ckg.EvidenceError, match="did you mean 'loxoprofen'"):
        cc.topk("o", s="loxoprofn", r="treats")
    with pytest.raises(ckg.EvidenceError, match="'fever' .* is an allowed subject of no relation"):
        cc.topk("r", s="fever", o="nausea")


def test_constraint_circuit_follows_the_model_structure():
    kg, schema = biomedical_kg(num_triples=200, seed=2)
    bound = schema.bind(kg)
    for name in ("cp", "distmult", "complex", "rescal", "tucker", "transe"):
        form = "score" if name == "transe" else "squared"
        model = create_model(name, kg.num_entities, kg.num_relations, 2, form=form)
        circuit = constraint_circuit(bound, like=model.circuit())
        assert circuit.compatible_with(model.circuit()), name
        assert circuit.has("smooth") and circuit.has("decomposable") and is_deterministic(circuit)
    rescal = create_model("rescal", kg.num_entities, kg.num_relations, 2)
    top = constraint_circuit(bound, like=rescal.circuit()).output.children[0]
    assert {c.scope for c in top.children} == {frozenset("so"), frozenset("r")}


@settings(max_examples=10)
@given(typed_problems())
def test_constrained_samples_never_violate_and_follow_p(problem):
    """20,000 samples: none breaks the schema, and a chi-square test against p passes (p > 1e-6)."""
    kg, schema, model = problem
    cc = constrain(model, schema, kg)
    joint = joint_table(cc.compiled).detach() * brute_constraint(kg, schema)
    expected = (joint / joint.sum()).reshape(-1) * 20_000
    x = cc.sample(20_000, generator=torch.Generator().manual_seed(0))
    assert bool(cc.consistent(x).all())
    n, m = kg.num_entities, kg.num_relations
    counts = torch.bincount((x[:, 0] * m + x[:, 1]) * n + x[:, 2], minlength=n * m * n).double()
    assert counts[expected == 0].sum() == 0
    big = expected >= 5  # pool the small cells
    cells_c = torch.cat([counts[big], counts[~big].sum().reshape(1)])
    cells_e = torch.cat([expected[big], expected[~big].sum().reshape(1)])
    keep = cells_e > 0
    stat = float(((cells_c[keep] - cells_e[keep]) ** 2 / cells_e[keep]).sum())
    assert chi2.sf(stat, max(int(keep.sum()) - 1, 1)) > 1e-6


@settings(max_examples=60)
@given(
    st.integers(1, 6).flatmap(
        lambda g: st.tuples(
            st.integers(1, 12).flatmap(
                lambda n: st.lists(
                    st.lists(st.booleans(), min_size=n, max_size=n), min_size=g, max_size=g
                )
            ),
            st.lists(st.integers(0, g - 1), min_size=1, max_size=10),
        )
    )
)
def test_allowed_blocks_cover_each_rows_allowed_values_once(case):
    """Segments partition the sorted values, ``member`` is each group's mask on them, and the
    blocks over rows sorted by group (in ``group_rank`` order) cover exactly every (row, allowed
    value) pair, once."""
    rows, groups = case
    masks = torch.tensor(rows)
    allowed = AllowedRuns.of(masks)
    assert sorted(allowed.order.tolist()) == list(range(masks.shape[1]))
    positions = [i for a, z in allowed.segments for i in range(a, z)]
    assert positions == list(range(masks.shape[1]))
    for g, mask in enumerate(masks):
        for j, (a, z) in enumerate(allowed.segments):
            assert all(
                bool(mask[allowed.order[i]]) == bool(allowed.member[g, j]) for i in range(a, z)
            )
    present = torch.unique(torch.tensor(groups))
    present = present[torch.argsort(allowed.group_rank[present])]
    of_row = torch.tensor([present.tolist().index(g) for g in groups])
    by_group = RowsByGroup.of(of_row, len(present))
    covered = [
        (by_group.order[r].item(), allowed.order[x].item())
        for a0, z0, a, z in pll.allowed_blocks(allowed, present, by_group)
        for r in range(a0, z0)
        for x in range(a, z)
    ]
    expected = [(b, x) for b, g in enumerate(groups) for x in masks[g].nonzero()[:, 0].tolist()]
    assert sorted(covered) == sorted(expected)
