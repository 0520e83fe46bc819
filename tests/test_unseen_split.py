"""Head-R / Tail-R splits (circuitkg.data.unseen_entity_split) and their filtered ranking."""

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

import circuitkg as ckg
from circuitkg.data import DataArgumentError, KnowledgeGraph, unseen_entity_split
from circuitkg.eval import evaluate_unseen_ranking


def random_kg(seed: int, n: int = 12, m: int = 3, size: int = 60) -> KnowledgeGraph:
    gen = torch.Generator().manual_seed(seed)
    triples = torch.stack(
        [torch.randint(0, n, (size,), generator=gen), torch.randint(0, m, (size,), generator=gen),
         torch.randint(0, n, (size,), generator=gen)], dim=1,
    ).unique(dim=0)  # fmt: skip
    triples = triples[torch.randperm(len(triples), generator=gen)]
    cut = len(triples) * 7 // 10
    splits = {"train": triples[:cut], "valid": triples[cut : cut + 4], "test": triples[cut + 4 :]}
    return KnowledgeGraph.from_vocabularies(
        "toy", [f"e{i}" for i in range(n)], [f"r{i}" for i in range(m)], splits
    )


@settings(max_examples=60, deadline=None)
@given(st.integers(0, 2**16), st.sampled_from(["head", "tail"]), st.sampled_from([0.2, 0.5, 1.0]))
def test_the_split_follows_its_rules(seed, side, ratio):
    kg = random_kg(seed)
    split = unseen_entity_split(kg, side, ratio, seed=seed)
    again = unseen_entity_split(kg, side, ratio, seed=seed)
    assert torch.equal(split.test, again.test) and split.entity_names == again.entity_names
    seen = split.num_seen
    names = split.entity_names
    # training and validation hold seen entities only; the training graph is over them
    assert split.train.num_entities == seen and list(names[:seen]) == split.train.id_to_entity
    for t in (split.train.train, split.train.valid):
        assert bool((t[:, [0, 2]] < seen).all())
    # an aux edge joins exactly one unseen entity to a seen one
    unseen_ends = (split.aux[:, [0, 2]] >= seen).sum(dim=1)
    assert bool((unseen_ends == 1).all())
    # a test triple hides an unseen entity that has an aux edge; the other end is seen
    hidden, other = (0, 2) if side == "head" else (2, 0)
    assert bool((split.test[:, hidden] >= seen).all()) and bool((split.test[:, other] < seen).all())
    joined = set(split.aux[:, [0, 2]].flatten().tolist())
    assert set(split.test[:, hidden].tolist()) <= joined
    # every triple maps back to an original one (names preserved), and nothing is invented
    original = {tuple(x) for x in kg.known_triples().tolist()}
    rel = kg.id_to_relation
    for t in (split.train.train, split.aux, split.test):
        for h, r, o in t.tolist():
            back = (kg.entity_to_id[names[h]], kg.relation_to_id[rel[r]], kg.entity_to_id[names[o]])
            assert back in original
    # no unseen entity of the original's chosen test heads/tails is left in training
    train_names = {names[i] for i in split.train.train[:, [0, 2]].flatten().tolist()}
    assert not train_names & {names[i] for i in split.test[:, hidden].tolist()}


def test_ranking_matches_brute_force():
    kg = random_kg(3, n=30, size=300)
    split = unseen_entity_split(kg, "head", 0.1, seed=1)
    assert len(split.test) > 0
    torch.manual_seed(0)
    model = ckg.models.create("distmult", split.train, rank=4, form="squared", encoder="mean")
    result = evaluate_unseen_ranking(model, split)
    compiled = ckg.compile(model.on(split.graph_with_aux()))
    known = {tuple(x) for x in split.known.tolist()}
    ranks = []
    with torch.no_grad():
        for h, r, o in split.test.tolist():
            scores = compiled.score_all("s", r=torch.tensor([r]), o=torch.tensor([o]))[0]
            rivals = [e for e in range(split.num_entities) if (e, r, o) not in known]
            better = sum(bool(scores[e] > scores[h]) for e in rivals)
            ties = sum(bool(scores[e] == scores[h]) for e in rivals)
            ranks.append(1 + better + ties / 2)  # realistic ties: the mean place among equals
    assert result.metrics()["mrr"] == pytest.approx(sum(1 / x for x in ranks) / len(ranks))


def test_bad_arguments():
    kg = random_kg(0)
    with pytest.raises(DataArgumentError, match="side"):
        unseen_entity_split(kg, "middle")
    with pytest.raises(DataArgumentError, match="ratio"):
        unseen_entity_split(kg, "head", 0.0)
