"""Sem@k against a direct count, and 100% for a constrained model."""

import pytest
import torch
from circuitkg.constraints import biomedical_kg, constrain
from hypothesis import given
from hypothesis import strategies as st

import circuitkg as ckg
from circuitkg.eval import semantic_at_k
from circuitkg.eval.ranking import keyword_scorer


class _Allowed:
    def __init__(self, masks):
        self.masks = masks  # {"s": (m, n), "o": (m, n)}

    def allowed(self, target, relations):
        return self.masks[target][relations]


@given(st.integers(0, 2**16), st.sampled_from(["k", "attainable"]))
def test_matches_a_direct_count(seed, normalise):
    gen = torch.Generator().manual_seed(seed)
    n, m, num = 7, 3, 11
    masks = {d: torch.rand(m, n, generator=gen) < 0.4 for d in ("s", "o")}
    table = torch.randn(2, num, n, generator=gen)  # one score row per query and direction
    triples = torch.stack(
        [
            torch.randint(n, (num,), generator=gen),
            torch.randint(m, (num,), generator=gen),
            torch.randint(n, (num,), generator=gen),
        ],
        dim=1,
    )
    rows = {"o": table[0], "s": table[1]}
    seen = {"o": 0, "s": 0}  # batches arrive in order: the next rows of each direction

    def score_all(target, anchor, relation):
        first = seen[target]
        seen[target] += len(anchor)
        return rows[target][first : seen[target]]

    ks = (1, 3, 10)
    result = semantic_at_k(
        score_all, triples, _Allowed(masks), ks=ks, batch_size=4, normalise=normalise
    )
    expected = []
    for d in ("o", "s"):
        for q in range(num):
            allowed = masks[d][triples[q, 1]]
            if not allowed.any():
                continue
            order = sorted(range(n), key=lambda e: -float(rows[d][q, e]))
            row = []
            for k in ks:
                hits = sum(bool(allowed[e]) for e in order[:k])
                denominator = min(k, int(allowed.sum()), n) if normalise == "attainable" else k
                row.append(hits / denominator)
            expected.append(row)
    expected = torch.tensor(expected, dtype=torch.float64)
    got = torch.cat([result.values["o"], result.values["s"]])
    assert torch.allclose(got, expected)
    metrics = result.metrics()
    assert metrics["num_queries"] == len(expected)
    assert abs(metrics["sem@3"] - float(expected[:, 1].mean())) < 1e-12


def test_constrained_model_is_fully_consistent():
    kg, schema = biomedical_kg(seed=5)
    torch.manual_seed(0)
    model = ckg.models.ComplEx(kg.num_entities, kg.num_relations, 4)
    constrained = constrain(model, schema, kg)
    bound = constrained.bound
    ks = (1, 10, 100)
    sem = semantic_at_k(
        keyword_scorer(constrained.score_all), kg.test, bound, ks=ks, normalise="attainable"
    )
    assert all(v == 1.0 for k, v in sem.metrics().items() if k.startswith("sem@"))
    plain = semantic_at_k(keyword_scorer(constrained.compiled.score_all), kg.test, bound, ks=ks)
    assert plain.metrics()["sem@100"] < 1.0
    assert "Sem@1" in str(sem) and set(sem.as_dict()) == {"both", "o", "s"}


def test_rejects_bad_arguments():
    kg, schema = biomedical_kg(num_triples=100, seed=0)
    bound = schema.bind(kg)
    with pytest.raises(ValueError, match="normalise"):
        semantic_at_k(lambda *a: None, kg.test, bound, normalise="all")
    with pytest.raises(ValueError, match="directions"):
        semantic_at_k(lambda *a: None, kg.test, bound, directions=("x",))
