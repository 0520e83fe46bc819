"""Filtered ranking against a brute-force per-query computation."""

from __future__ import annotations

import math

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from circuitkg.eval import (
    FilterIndex,
    RankingResult,
    evaluate_ranking,
    keyword_scorer,
    metrics_from_ranks,
)

TIES = ("optimistic", "pessimistic", "realistic")
INF = math.inf


def table_scorer(table: torch.Tensor):
    """``score_all`` of a model whose score of (s, r, o) is ``table[s, r, o]``."""
    by_object = table.permute(2, 1, 0)  # [o, r, s]

    def score_all(target, anchor, relation):
        return table[anchor, relation] if target == "o" else by_object[anchor, relation]

    return score_all


def brute_force_rank(table, known, triple, direction, tie):
    s, r, o = triple
    num_entities = table.shape[0]
    if direction == "o":
        scores, answer = [table[s, r, e].item() for e in range(num_entities)], o
        excluded = {e for e in range(num_entities) if (s, r, e) in known}
    else:
        scores, answer = [table[e, r, o].item() for e in range(num_entities)], s
        excluded = {e for e in range(num_entities) if (e, r, o) in known}
    others = [scores[e] for e in range(num_entities) if e != answer and e not in excluded]
    optimistic = 1 + sum(x > scores[answer] for x in others)
    pessimistic = 1 + sum(x >= scores[answer] for x in others)
    return {
        "optimistic": optimistic,
        "pessimistic": pessimistic,
        "realistic": (optimistic + pessimistic) / 2,
    }[tie]


@st.composite
def ranking_problems(draw):
    num_entities = draw(st.integers(1, 6))
    num_relations = draw(st.integers(1, 3))
    universe = st.tuples(
        st.integers(0, num_entities - 1),
        st.integers(0, num_relations - 1),
        st.integers(0, num_entities - 1),
    )
    known = draw(st.lists(universe, min_size=1, max_size=25))
    # mostly known test triples; an unknown one must still be ranked and never filtered
    tests = draw(st.lists(st.sampled_from(known) | universe, min_size=1, max_size=8))
    size = num_entities * num_relations * num_entities
    values = st.sampled_from([-INF, -1.0, 0.0, 0.5, 1.0, INF])  # few values: many ties
    table = torch.tensor(draw(st.lists(values, min_size=size, max_size=size)))
    table = table.reshape(num_entities, num_relations, num_entities)
    return table, known, tests


@settings(max_examples=150, deadline=None)
@given(
    problem=ranking_problems(),
    tie=st.sampled_from(TIES),
    batch_size=st.integers(1, 5),
    directions=st.sampled_from([("o", "s"), ("s", "o"), ("o",), ("s",)]),
)
def test_ranks_match_brute_force(problem, tie, batch_size, directions):
    table, known, tests = problem
    result = evaluate_ranking(
        table_scorer(table),
        torch.tensor(tests),
        known_triples=torch.tensor(known),
        num_entities=table.shape[0],
        batch_size=batch_size,
        tie=tie,
        directions=directions,
    )
    assert list(result.ranks) == list(directions)
    known_set = set(known)
    for direction in directions:
        expected = [brute_force_rank(table, known_set, t, direction, tie) for t in tests]
        assert result.ranks[direction].tolist() == expected
        assert result.ranks[direction].dtype == torch.float64


@given(problem=ranking_problems())
def test_tie_policies_bracket_realistic(problem):
    table, known, tests = problem
    ranks = {
        tie: evaluate_ranking(
            table_scorer(table),
            torch.tensor(tests),
            known_triples=torch.tensor(known),
            num_entities=table.shape[0],
            tie=tie,
        ).ranks_of()
        for tie in TIES
    }
    assert torch.equal(ranks["realistic"], (ranks["optimistic"] + ranks["pessimistic"]) / 2)
    assert bool((ranks["optimistic"] <= ranks["pessimistic"]).all())


@settings(max_examples=50)
@given(
    st.lists(
        st.tuples(st.integers(0, 7), st.integers(0, 2), st.integers(0, 7)),
        min_size=1,
        max_size=40,
    ),
    st.lists(st.tuples(st.integers(0, 7), st.integers(0, 2)), min_size=1, max_size=10),
)
def test_filter_index_lookup(known, queries):
    index = FilterIndex(torch.tensor(known), "o", num_entities=8)
    anchors, relations = torch.tensor(queries).unbind(1)
    rows, answers = index.lookup(anchors, relations)
    got = sorted(zip(rows.tolist(), answers.tolist(), strict=True))
    expected = {
        (i, t) for i, (s, r) in enumerate(queries) for s2, r2, t in known if (s2, r2) == (s, r)
    }
    assert got == sorted(expected)  # each known answer once, even if known holds repeats


def test_filtering_removes_other_answers_but_keeps_the_answer():
    num_entities = 5
    table = torch.zeros(num_entities, 1, num_entities)
    table[0, 0] = torch.tensor([9.0, 3.0, 2.0, 4.0, 5.0])  # query (0, 0, ?); answer 2
    known = torch.tensor([[0, 0, 1], [0, 0, 2], [0, 0, 3]])
    test = torch.tensor([[0, 0, 2]])

    def rank(known_triples):
        return (
            evaluate_ranking(
                table_scorer(table),
                test,
                known_triples=known_triples,
                num_entities=num_entities,
                directions=("o",),
            )
            .ranks["o"]
            .item()
        )

    assert rank(known) == 3.0  # entities 0 and 4 outrank it; 1 and 3 are filtered
    assert rank(test) == 5.0  # nothing else filtered: 0, 1, 3, 4 outrank it
    assert rank(torch.zeros(0, 3, dtype=torch.long)) == 5.0  # no filter at all


def test_minus_infinite_answer_ties_with_unfiltered_minus_infinite_candidates():
    table = torch.full((4, 1, 4), -INF)
    known = torch.tensor([[0, 0, 1], [0, 0, 3]])
    test = torch.tensor([[0, 0, 1]])
    ranks = {
        tie: evaluate_ranking(
            table_scorer(table), test, known_triples=known, num_entities=4, tie=tie
        ).ranks["o"]
        for tie in TIES
    }
    # candidates 0 and 2 tie with the answer 1; 3 is filtered
    assert ranks["optimistic"].item() == 1.0
    assert ranks["pessimistic"].item() == 3.0
    assert ranks["realistic"].item() == 2.0


def test_nan_scores_raise():
    table = torch.zeros(3, 1, 3)
    table[2, 0, 1] = math.nan
    known = torch.tensor([[0, 0, 1], [2, 0, 0]])
    evaluate_ranking(
        table_scorer(table), known[:1], known_triples=known, num_entities=3, directions=("o",)
    )
    with pytest.raises(ValueError, match=r"NaN scores for query \(2, 0, \?\) \(triple index 1\)"):
        evaluate_ranking(table_scorer(table), known, known_triples=known, num_entities=3)


def test_bad_inputs_raise():
    known = torch.tensor([[0, 0, 1]])
    scorer = table_scorer(torch.zeros(2, 1, 2))
    with pytest.raises(ValueError, match="shape"):
        evaluate_ranking(lambda *_: torch.zeros(1, 3), known, known_triples=known, num_entities=2)
    with pytest.raises(ValueError, match=r"entity ids must lie in \[0, 1\)"):
        evaluate_ranking(scorer, known, known_triples=known, num_entities=1)
    with pytest.raises(ValueError, match="tie"):
        evaluate_ranking(scorer, known, known_triples=known, num_entities=2, tie="random")
    with pytest.raises(ValueError, match="directions"):
        evaluate_ranking(scorer, known, known_triples=known, num_entities=2, directions=("p",))
    with pytest.raises(ValueError, match="int64"):
        evaluate_ranking(scorer, known.float(), known_triples=known, num_entities=2)
    with pytest.raises(ValueError, match="no triples"):
        evaluate_ranking(scorer, known[:0], known_triples=known, num_entities=2)


def test_metrics_from_ranks():
    ranks = torch.tensor([1.0, 2.0, 4.0, 10.5])
    metrics = metrics_from_ranks(ranks, ks=(1, 3, 10))
    assert metrics["mrr"] == pytest.approx((1 + 1 / 2 + 1 / 4 + 1 / 10.5) / 4)
    assert metrics["mean_rank"] == pytest.approx(17.5 / 4)
    assert (metrics["hits@1"], metrics["hits@3"], metrics["hits@10"]) == (0.25, 0.5, 0.75)
    assert metrics["num_queries"] == 4


def test_ranking_result_pools_directions():
    result = RankingResult(
        ranks={"o": torch.tensor([1.0, 3.0]), "s": torch.tensor([2.0, 20.0])},
        ks=(1, 10),
        tie="realistic",
    )
    assert result.num_queries == 4
    assert result.mrr == pytest.approx((1 + 1 / 3 + 1 / 2 + 1 / 20) / 4)
    assert result.hits_at(10) == 0.75 and result.hits_at(2, "o") == 0.5
    assert result.mean_rank == pytest.approx(6.5)
    assert set(result.as_dict()) == {"both", "o", "s"}
    assert result.as_dict()["o"]["hits@1"] == 0.5
    text = str(result)
    assert "tie=realistic" in text and "H@10" in text and text.count("\n") == 4
    with pytest.raises(KeyError):
        result.ranks_of("x")


def test_keyword_scorer_passes_the_anchor_by_variable_name():
    table = torch.arange(2 * 3 * 2, dtype=torch.float64).reshape(2, 3, 2)

    def score_all(target, *, r, s=None, o=None):
        return table[s, r] if target == "o" else table.permute(2, 1, 0)[o, r]

    positional = keyword_scorer(score_all)
    anchor, relation = torch.tensor([1, 0]), torch.tensor([2, 1])
    for target in ("o", "s"):
        expected = table_scorer(table)(target, anchor, relation)
        assert torch.equal(positional(target, anchor, relation), expected)
