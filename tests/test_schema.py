"""Domain schemas: construction, files, inference, binding, masks, validation."""

import gzip
import json

import pytest
import torch
from circuitkg.constraints import (
    DomainSchema,
    SchemaError,
    SchemaFormatError,
    Signature,
    biomedical_kg,
)
from hypothesis import given
from hypothesis import strategies as st

from circuitkg.data import KnowledgeGraph
from circuitkg.testing import tiny_kgs


def tiny_kg(n, m, triples):
    entities, relations = [f"e{i}" for i in range(n)], [f"r{r}" for r in range(m)]
    return KnowledgeGraph(
        "tiny",
        {e: i for i, e in enumerate(entities)},
        entities,
        {r: i for i, r in enumerate(relations)},
        relations,
        {"train": triples},
    )


@st.composite
def typed_kgs(draw):
    """(kg, entity types by name, schema with random multi-type signatures, some unsigned)."""
    n, m, triples, types = draw(tiny_kgs(max_entities=6, max_relations=4, max_types=4))
    kg = tiny_kg(n, m, triples)
    entity_types = {f"e{i}": {f"t{t}" for t in ts} for i, ts in enumerate(types)}
    known = sorted(set().union(*entity_types.values()))
    side = st.sets(st.sampled_from(known), min_size=1)
    signatures = {f"r{r}": (draw(side), draw(side)) for r in range(m) if draw(st.booleans())}
    return kg, entity_types, DomainSchema(entity_types, signatures)


# --- construction -----------------------------------------------------------------------------------
def test_dict_construction_and_clear_errors():
    schema = DomainSchema(
        {"aspirin": "drug", "COX2": ["protein", "enzyme"], "x": []},
        {"interacts": ("drug", ["protein"]), "inhibits": {"subject": "drug", "object": "enzyme"}},
    )
    assert schema.types == ("drug", "enzyme", "protein")
    assert schema.signature("interacts") == Signature(frozenset({"drug"}), frozenset({"protein"}))
    assert schema.types_of("x") == frozenset()
    assert schema.consistent("aspirin", "inhibits", "COX2")
    assert not schema.consistent("COX2", "inhibits", "aspirin")
    with pytest.raises(
        SchemaError, match="relation 'treats' has unknown object type 'protien'.*'protein'"
    ):
        DomainSchema({"a": "drug", "b": "protein"}, {"treats": ("drug", "protien")})
    with pytest.raises(SchemaError, match="entity 'b' has unknown type 'protein'"):
        DomainSchema({"a": "drug", "b": "protein"}, {}, types=["drug"])
    with pytest.raises(SchemaError, match="relation 'r' allows no subject types"):
        DomainSchema({"a": "drug"}, {"r": ([], "drug")})
    with pytest.raises(SchemaError, match="exactly the keys 'subject' and 'object'"):
        DomainSchema({"a": "drug"}, {"r": {"domain": "drug", "object": "drug"}})
    with pytest.raises(SchemaError, match="unknown entity 'asprin'; did you mean 'aspirin'"):
        schema.types_of("asprin")
    with pytest.raises(SchemaError, match="relation 'treats' has no signature"):
        schema.consistent("aspirin", "treats", "COX2")


# --- files --------------------------------------------------------------------------------------------
@pytest.mark.parametrize("suffix", ["", ".gz"])
def test_file_round_trips(tmp_path, suffix):
    _, schema = biomedical_kg(seed=3)
    schema.to_json(tmp_path / f"s.json{suffix}")
    assert DomainSchema.from_json(tmp_path / f"s.json{suffix}") == schema
    schema.to_tsv(tmp_path / f"e.tsv{suffix}", tmp_path / f"r.tsv{suffix}")
    assert DomainSchema.from_tsv(tmp_path / f"e.tsv{suffix}", tmp_path / f"r.tsv{suffix}") == schema


def test_tsv_format_with_comments_and_repeated_entities(tmp_path):
    (tmp_path / "e.tsv").write_text("# entities\nCOX2\tprotein\nCOX2\tenzyme\n\naspirin\tdrug\n")
    (tmp_path / "r.tsv").write_text("inhibits\tdrug\tenzyme , protein\n")
    schema = DomainSchema.from_tsv(tmp_path / "e.tsv", tmp_path / "r.tsv")
    assert schema.types_of("COX2") == {"protein", "enzyme"}
    assert schema.signature("inhibits").object == {"enzyme", "protein"}


@pytest.mark.parametrize(
    ("entities", "signatures", "bad", "line", "match"),
    [
        ("a\tdrug\nb\n", "r\tdrug\tdrug\n", "e", 2, "expected 2 non-empty tab-separated fields"),
        ("a\tdrug,\n", "r\tdrug\tdrug\n", "e", 1, "empty type name"),
        ("a\tdrug\n", "# c\nr\tdrug\n", "r", 2, "expected 3 non-empty"),
        (
            "a\tdrug\n",
            "r\tdrug\tdrug\nr\tdrug\tdrug\n",
            "r",
            2,
            "already has a signature \\(line 1\\)",
        ),
        ("a\tdrug\n", "\nr\tdrug\tdrg\n", "r", 2, "unknown object type 'drg'; did you mean 'drug'"),
    ],
)
def test_tsv_errors_name_file_and_line(tmp_path, entities, signatures, bad, line, match):
    (tmp_path / "e.tsv").write_text(entities)
    (tmp_path / "r.tsv").write_text(signatures)
    with pytest.raises(SchemaError, match=match) as err:
        DomainSchema.from_tsv(tmp_path / "e.tsv", tmp_path / "r.tsv")
    assert str(err.value).startswith(f"{tmp_path / (bad + '.tsv')}:{line}:")


@pytest.mark.parametrize(
    ("text", "line", "match"),
    [
        ('{"entities": {"a": "drug"},\n "relations": {\n}', 3, "invalid JSON"),
        ('{"entities": {}}', 1, "keys 'entities' and 'relations'"),
        ('{"entities": {\n"a": 3}, "relations": {}}', 2, "entity 'a': types must be"),
        (
            '{"entities": {"a": "drug"},\n"relations": {\n"r": ["drug"]}}',
            3,
            "relation 'r': expected",
        ),
        (
            '{"entities": {"a": "drug"},\n"relations": {"q": {"subject": "drug", "object": "drug"},\n'
            '"r": {"subject": "drug", "object": "drog"}}}',
            3,
            "unknown object type 'drog'",
        ),
        ('{"entities": {}, "relations": {},\n"extra": 1}', 2, "unexpected key 'extra'"),
    ],
)
def test_json_errors_name_file_and_line(tmp_path, text, line, match):
    path = tmp_path / "schema.json"
    path.write_text(text)
    with pytest.raises(SchemaError, match=match) as err:
        DomainSchema.from_json(path)
    assert str(err.value).startswith(f"{path}:{line}:")
    assert isinstance(err.value, SchemaFormatError) or "unknown" in match


# --- inference ----------------------------------------------------------------------------------------
@given(typed_kgs())
def test_inferred_schema_is_the_tightest_one_consistent_with_train(case):
    kg, entity_types, _ = case
    schema = DomainSchema.infer(kg, {**entity_types, "not-in-kg": {"t0"}})
    assert set(schema.entities) == set(kg.id_to_entity)
    bound = schema.bind(kg)
    assert bool(bound.consistent(kg.train).all())
    for r, sig in schema.signatures.items():
        rows = kg.train[kg.train[:, 1] == kg.relation_id(r)]
        assert sig.subject == set().union(
            *(entity_types[kg.id_to_entity[s]] for s in rows[:, 0].tolist())
        )
        assert sig.object == set().union(
            *(entity_types[kg.id_to_entity[o]] for o in rows[:, 2].tolist())
        )
    assert set(schema.relations) == {kg.id_to_relation[r] for r in kg.train[:, 1].tolist()}


def test_infer_on_codex_s_types():
    import circuitkg.data

    root = "/work/shared/data/kg"
    try:
        kg = circuitkg.data.load("codex-s", root=root)
        with gzip.open(f"{root}/codex-entity2types.json.gz") as f:
            types = json.load(f)
    except FileNotFoundError:
        pytest.skip("CoDEx-S and its entity types are not available here")
    bound = DomainSchema.infer(kg, types).bind(kg)
    assert (bound.num_entities, bound.num_relations) == (2034, 42)
    assert bound.num_classes < bound.num_entities
    report = bound.check(kg, ("train", "test"))
    assert report.violating["train"] == 0 and report.total["test"] == len(kg.test)


# --- binding --------------------------------------------------------------------------------------------
@given(typed_kgs())
def test_masks_classes_and_groups_match_the_names(case):
    kg, _, schema = case
    bound = schema.bind(kg)
    n, m = kg.num_entities, kg.num_relations
    expected = torch.ones(n, m, n, dtype=torch.bool)
    for r, rel in enumerate(kg.id_to_relation):
        if rel in schema.signatures:
            for s in range(n):
                for o in range(n):
                    expected[s, r, o] = schema.consistent(
                        kg.id_to_entity[s], rel, kg.id_to_entity[o]
                    )
    all_triples = torch.cartesian_prod(torch.arange(n), torch.arange(m), torch.arange(n))
    assert torch.equal(bound.consistent(all_triples), expected.reshape(-1))
    sub, obj = bound.subject_allowed(), bound.object_allowed()
    assert torch.equal(expected, sub.T[:, :, None] & obj[None, :, :])
    pairs = torch.cartesian_prod(torch.arange(n), torch.arange(n))
    assert torch.equal(
        bound.relation_allowed(pairs[:, 0], pairs[:, 1]),
        expected.permute(0, 2, 1).reshape(n * n, m),
    )
    # classes: one per distinct type set; groups: a partition of the relations by allowed sets
    assert bound.num_classes == len({schema.types_of(e) for e in kg.id_to_entity})
    s_mask, r_mask, o_mask = bound.group_masks()
    assert torch.equal(r_mask.sum(dim=0), torch.ones(m, dtype=torch.long))
    for r in range(m):
        g = int(bound.group_of_relation[r])
        assert torch.equal(s_mask[g], sub[r]) and torch.equal(o_mask[g], obj[r])
    assert (
        len({(tuple(sub[r].tolist()), tuple(obj[r].tolist())) for r in range(m)})
        == bound.num_groups
    )


def test_binding_policies_name_the_culprits():
    kg = tiny_kg(3, 2, torch.tensor([[0, 0, 1], [1, 1, 2]]))
    types = {"e0": "a", "e1": "b", "e2": "a"}
    schema = DomainSchema(types, {"r0": ("a", "b")})
    with pytest.raises(SchemaError, match="1 relation.*no signature.*'r1'"):
        schema.bind(kg, missing="error")
    bound = schema.bind(kg)
    assert bound.consistent(torch.tensor([[2, 1, 0], [1, 0, 0]])).tolist() == [True, False]
    with pytest.raises(SchemaError, match="absent from 'tiny': 'e9'"):
        DomainSchema({**types, "e9": "a"}, {}).bind(kg)
    with pytest.raises(SchemaError, match="relation.*absent from 'tiny': 'r7'"):
        DomainSchema(types, {"r7": ("a", "a")}).bind(kg)
    with pytest.raises(SchemaError, match="entity\\(ies\\) of 'tiny' have no entry.*'e2'"):
        DomainSchema({"e0": "a", "e1": "b"}, {}).bind(kg)
    loose = DomainSchema({"e0": "a", "e1": "b", "e9": "a"}, {"r0": ("a", "b")}).bind(
        kg, strict=False
    )
    assert loose.entity_class.shape == (3,) and not bool(loose.subject_allowed()[0, 2])
    with pytest.raises(ValueError, match="missing must be"):
        schema.bind(kg, missing="ignore")


def test_violations_are_counted_and_dropped():
    kg, schema = biomedical_kg(num_triples=400, noise=0.1, seed=4)
    bound = schema.bind(kg)
    report = bound.check(kg)
    assert report.num_violating == 40 and sum(report.by_relation.values()) == 40
    assert report.examples and all(not schema.consistent(*t) for t in report.examples)
    assert "violate the schema" in str(report)
    clean = bound.drop_violations(kg)
    assert bound.check(clean, ("train",)).num_violating == 0
    assert len(clean.train) == len(kg.train) - report.violating["train"]
    assert torch.equal(clean.test, kg.test)


def test_explain():
    kg = tiny_kg(3, 2, torch.tensor([[0, 0, 1]]))
    schema = DomainSchema({"e0": "a", "e1": "b", "e2": []}, {"r0": ("a", "b"), "r1": ("b", "a")})
    bound = schema.bind(kg)
    assert bound.explain(s=0, r=0, o=1) is None
    assert "not an allowed object of relation 'r0' (allowed object types: b)" in bound.explain(
        s=0, r=0, o=0
    )
    assert "'e2' (untyped) is an allowed subject of no relation" in bound.explain(s=2)
    assert "no relation allows subject 'e0' (types: a) with object 'e0'" in bound.explain(s=0, o=0)


def test_synthetic_generator_is_seeded_and_typed():
    kg1, schema1 = biomedical_kg(seed=7)
    kg2, schema2 = biomedical_kg(seed=7)
    assert schema1 == schema2 and torch.equal(kg1.train, kg2.train)
    assert not torch.equal(biomedical_kg(seed=8)[0].train, kg1.train)
    assert schema1.types_of("COX2") == {"protein", "enzyme"}
    assert len(kg1.known_triples()) == 1500 and schema1.bind(kg1).check(kg1).num_violating == 0
