"""Queries by name on a plain compiled circuit (``ckg.compile(model, vocabulary=kg)``)."""

import pytest
import torch

import circuitkg as ckg
from circuitkg.data import KnowledgeGraph
from circuitkg.errors import EvidenceError
from circuitkg.testing import joint_table

pytestmark = pytest.mark.usefixtures("one_thread")

TRIPLES = [
    ("ada", "knows", "bob"),
    ("bob", "knows", "cy"),
    ("cy", "likes", "ada"),
    ("dee", "likes", "bob"),
    ("bob", "likes", "dee"),
]


@pytest.fixture(scope="module")
def kg() -> KnowledgeGraph:
    return KnowledgeGraph.from_triples(TRIPLES)


@pytest.fixture(scope="module")
def compiled(kg):
    torch.manual_seed(0)
    model = ckg.models.create_model("complex", kg.num_entities, kg.num_relations, 3).double()
    return ckg.compile(model, vocabulary=kg)


def test_topk_by_name_ranks_the_enumerated_conditional(kg, compiled):
    s, r = kg.entity_id("bob"), kg.relation_id("likes")
    joint = joint_table(compiled)  # (S, R, O)
    conditional = joint[s, r] / joint[s, r].sum()
    order = torch.argsort(conditional, descending=True)[:3].tolist()
    top = compiled.topk("o", s="bob", r="likes", k=3)
    assert [p.id for p in top] == order
    assert [p.name for p in top] == [kg.id_to_entity[i] for i in order]
    for p in top:
        assert p.probability == pytest.approx(conditional[p.id].item(), rel=1e-9)


def test_topk_sums_out_what_is_not_given(kg, compiled):
    joint = joint_table(compiled)
    r = kg.relation_id("knows")
    marginal = joint[:, r, :].sum(0) / joint[:, r, :].sum()
    (best,) = compiled.topk("o", k=1, r="knows")
    assert best.id == int(marginal.argmax())


def test_names_and_ids_give_the_same_samples(kg, compiled):
    by_name = compiled.sample(50, given={"s": "bob"}, generator=torch.Generator().manual_seed(3))
    by_id = compiled.sample(
        50, given={"s": kg.entity_id("bob")}, generator=torch.Generator().manual_seed(3)
    )
    assert torch.equal(by_name, by_id)
    assert bool((by_name[:, compiled.variables.index("s")] == kg.entity_id("bob")).all())


def test_every_query_takes_names(kg, compiled):
    by_name = compiled.log_conditional_of("o", "cy", s="bob", r="knows")
    ids = {v: torch.tensor([kg.entity_id(n)]) for v, n in (("s", "bob"), ("o", "cy"))}
    by_id = compiled.log_conditional_of(
        "o", ids["o"], s=ids["s"], r=torch.tensor([kg.relation_id("knows")])
    )
    assert torch.equal(by_name, by_id)
    assert compiled.log_marginal(s=["ada", "bob"]).shape == (2,)


def test_unknown_names_say_what_is_close(compiled):
    with pytest.raises(EvidenceError, match=r"unknown name 'bobb' for variable 's'.*'bob'"):
        compiled.topk("o", s="bobb", r="knows")
    with pytest.raises(EvidenceError, match="unknown name 'loves'"):
        compiled.log_conditional("o", s="bob", r="loves")


def test_names_without_a_vocabulary_and_mismatched_vocabularies(kg):
    model = ckg.models.create_model("cp", kg.num_entities, kg.num_relations, 2)
    with pytest.raises(EvidenceError, match="names need a vocabulary"):
        ckg.compile(model).topk("o", s="bob", r=0)
    other = KnowledgeGraph.from_triples(TRIPLES[:2])
    with pytest.raises(EvidenceError, match="names for 's'"):
        ckg.compile(model, vocabulary=other)
    (top,) = ckg.compile(model).topk("o", k=1, s=0, r=0)
    assert top.name == str(top.id)  # no vocabulary: ids stand in for names
