"""PyKEEN interop: factories ↔ knowledge graphs, and compiled PyKEEN models score as PyKEEN."""

import pytest
import torch

pykeen = pytest.importorskip("pykeen")
import pykeen.models as pkm  # noqa: E402
from pykeen.triples import CoreTriplesFactory, TriplesFactory  # noqa: E402

from circuitkg.data import from_triples  # noqa: E402
from circuitkg.interop.pykeen import (  # noqa: E402
    PyKEENCompileError,
    compile_pykeen,
    from_triples_factory,
    to_triples_factories,
    to_triples_factory,
)

NUM_ENTITIES, NUM_RELATIONS = 9, 3


@pytest.fixture(scope="module")
def kg():
    # names out of sorted order in the rows, so ids differ from first-appearance order
    rows = [
        (f"e{(7 * i) % NUM_ENTITIES}", f"r{i % NUM_RELATIONS}", f"e{(5 * i + 2) % 9}")
        for i in range(40)
    ]
    return from_triples({"train": rows[:30], "valid": rows[30:35], "test": rows[35:]}, name="toy")


@pytest.fixture(scope="module")
def factory(kg):
    return to_triples_factory(kg)


def test_factory_round_trip_preserves_ids(kg, factory):
    assert factory.entity_to_id == kg.entity_to_id
    assert factory.relation_to_id == kg.relation_to_id
    assert torch.equal(factory.mapped_triples.long(), kg.train)
    factories = to_triples_factories(kg)
    assert set(factories) == {"training", "validation", "testing"}
    back = from_triples_factory(**factories, name="toy")
    assert back.entity_to_id == kg.entity_to_id and back.id_to_relation == kg.id_to_relation
    for split in ("train", "valid", "test"):
        assert torch.equal(back.split(split), kg.split(split))


def test_labelled_pykeen_factory_to_kg():
    labelled = [["a", "likes", "b"], ["b", "knows", "c"], ["c", "likes", "a"]]
    import numpy as np

    tf = TriplesFactory.from_labeled_triples(np.array(labelled))
    kg = from_triples_factory(tf)
    assert kg.entity_to_id == tf.entity_to_id and kg.relation_to_id == tf.relation_to_id
    assert sorted(
        [kg.id_to_entity[h], kg.id_to_relation[r], kg.id_to_entity[t]]
        for h, r, t in kg.train.tolist()
    ) == sorted(labelled)


def test_core_factory_names_by_id(kg):
    core = CoreTriplesFactory.create(
        kg.train.clone(), num_entities=kg.num_entities, num_relations=kg.num_relations
    )
    back = from_triples_factory(core)
    assert back.id_to_entity == [str(i) for i in range(kg.num_entities)]
    assert torch.equal(back.train, kg.train)


def test_mismatched_vocabularies_raise(kg, factory):
    other = from_triples([("x", "y", "z")])
    with pytest.raises(ValueError, match="vocabularies"):
        from_triples_factory(factory, testing=to_triples_factory(other))


def all_triples() -> torch.Tensor:
    grid = torch.cartesian_prod(
        torch.arange(NUM_ENTITIES), torch.arange(NUM_RELATIONS), torch.arange(NUM_ENTITIES)
    )
    return grid


def perturb_(model: torch.nn.Module) -> None:
    """Random parameters and batch-norm statistics, away from the initialisers' structure."""
    generator = torch.Generator().manual_seed(0)
    with torch.no_grad():
        for parameter in model.parameters():
            noise = torch.randn(parameter.shape, generator=generator, dtype=torch.float32)
            parameter.copy_(
                noise.to(parameter.dtype) if not parameter.is_complex() else parameter + noise
            )
        for module in model.modules():
            if isinstance(module, torch.nn.BatchNorm1d):
                module.running_mean.normal_(generator=generator)
                module.running_var.uniform_(0.5, 2.0, generator=generator)


MODELS = {
    "DistMult": lambda tf: pkm.DistMult(triples_factory=tf, embedding_dim=5),
    "ComplEx": lambda tf: pkm.ComplEx(triples_factory=tf, embedding_dim=4),
    "RESCAL": lambda tf: pkm.RESCAL(triples_factory=tf, embedding_dim=4),
    "TuckER": lambda tf: pkm.TuckER(triples_factory=tf, embedding_dim=4, relation_dim=3),
    "TuckER-no-bn": lambda tf: pkm.TuckER(
        triples_factory=tf, embedding_dim=4, relation_dim=3, apply_batch_normalization=False
    ),
    "CP": lambda tf: pkm.CP(triples_factory=tf, embedding_dim=3, rank=2),
    "TransE": lambda tf: pkm.TransE(
        triples_factory=tf, embedding_dim=5, scoring_fct_norm=2, power_norm=True
    ),
}


@pytest.mark.parametrize("name", list(MODELS))
def test_compiled_scores_equal_score_hrt(name, factory):
    torch.manual_seed(0)
    model = MODELS[name](factory)
    perturb_(model)
    model.train()  # compile_pykeen must score as eval mode and restore the mode
    ours = compile_pykeen(model)
    assert model.training
    assert (ours.num_entities, ours.num_relations) == (NUM_ENTITIES, NUM_RELATIONS)
    model.eval()
    hrt = all_triples()
    with torch.no_grad():
        expected = model.score_hrt(hrt).reshape(-1)
        got = ours.compile().score(hrt)
    assert got.shape == expected.shape
    torch.testing.assert_close(got, expected, rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("name", ["DistMult", "ComplEx", "TuckER"])
def test_squared_form_keeps_phi_and_normalises(name, factory):
    torch.manual_seed(0)
    model = MODELS[name](factory)
    perturb_(model)
    model.eval()
    squared = compile_pykeen(model, form="squared").compile()
    hrt = all_triples()
    with torch.no_grad():
        torch.testing.assert_close(
            squared.score(hrt), model.score_hrt(hrt).reshape(-1), rtol=1e-5, atol=1e-5
        )
        total = torch.logsumexp(squared.log_prob(hrt), dim=0)
    torch.testing.assert_close(total, torch.tensor(0.0), atol=1e-4, rtol=0)


def test_unsupported_models_and_configurations_raise(factory):
    with pytest.raises(PyKEENCompileError, match="not polynomial"):
        compile_pykeen(pkm.TransE(triples_factory=factory, embedding_dim=3))  # L1 by default
    with pytest.raises(PyKEENCompileError, match="supports"):
        compile_pykeen(pkm.RotatE(triples_factory=factory, embedding_dim=3))
    with pytest.raises(PyKEENCompileError, match="form"):
        compile_pykeen(pkm.DistMult(triples_factory=factory, embedding_dim=3), form="monotone")
    inverse = TriplesFactory(
        mapped_triples=factory.mapped_triples,
        entity_to_id=factory.entity_to_id,
        relation_to_id=factory.relation_to_id,
        create_inverse_triples=True,
    )
    with pytest.raises(PyKEENCompileError, match="inverse"):
        compile_pykeen(pkm.DistMult(triples_factory=inverse, embedding_dim=3))
