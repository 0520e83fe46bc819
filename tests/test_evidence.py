"""One evidence validator behind every query surface: the same bad evidence is the same error
from a compiled circuit, a schema-constrained one, the sampler and the symbolic ``condition``."""

import pytest
import torch
from circuitkg.constraints import biomedical_kg, constrain

import circuitkg as ckg
from circuitkg.errors import EvidenceError
from circuitkg.executor import KGQueries
from circuitkg.ir import condition
from circuitkg.sampling import sample

pytestmark = pytest.mark.usefixtures("one_thread")


@pytest.fixture(scope="module")
def circuits():
    kg, schema = biomedical_kg()
    model = ckg.models.create_model("cp", kg.num_entities, kg.num_relations, 3)
    compiled = ckg.compile(model)
    return compiled, constrain(compiled, schema.bind(kg))


BAD = [
    ({"x": 0}, r"unknown variables \['x'\]"),
    ({"s": 10_000}, r"value 10000 of variable 's' is outside its domain"),
    ({"s": torch.tensor([[0], [1]])}, r"ids of variable 's' must be a scalar or a 1-D tensor"),
    ({"s": torch.tensor([True])}, r"values of variable 's' must be integer ids"),
    ({"s": [0, 1], "r": [0, 1, 2]}, r"variable '.' has \d rows but the batch has \d"),
]


@pytest.mark.parametrize(("given", "message"), BAD)
def test_the_same_bad_evidence_is_the_same_error_everywhere(circuits, given, message):
    compiled, constrained = circuits
    for circuit in circuits:
        with pytest.raises(EvidenceError, match=message):
            circuit.log_marginal(**given)
    if "r" not in given:  # the sampler's batch is num_samples, not the rows given
        with pytest.raises(EvidenceError, match=message):
            sample(compiled, 2, given=given)
    with pytest.raises(EvidenceError, match=message.replace(r"\d rows", r"\d+ rows")):
        condition(compiled.circuit, {k: v for k, v in given.items()})


def test_weights_only_where_a_query_sums_with_them(circuits):
    compiled, constrained = circuits
    weights = torch.rand(1, compiled.domains["s"])
    assert compiled.log_marginal(s=weights).shape == (1,)
    for refuse in (
        lambda: constrained.log_marginal(s=weights),
        lambda: sample(compiled, 2, given={"s": weights}),
    ):
        with pytest.raises(EvidenceError, match="must be integer ids here"):
            refuse()


def test_both_circuits_have_the_one_query_interface(circuits):
    for circuit in circuits:
        assert isinstance(circuit, KGQueries)
    assert not isinstance(object(), KGQueries)
