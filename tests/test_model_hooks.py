"""Models register by decorator, and tell the trainer what it needs through hooks."""

import pytest
import torch
from circuitkg.compilers import MODELS, KGEModel, cp_circuit, create_model, register_model

from circuitkg.errors import ModelSpecError
from circuitkg.forms import FORMS
from circuitkg.train import initialise, n3
from circuitkg.train.initialisation import positive_init_defined


@pytest.mark.parametrize(
    ("name", "kwargs", "expected"),
    [
        ("cp", {}, (5, 3)),  # Σ_k S R O: K terms of three factors
        ("distmult", {}, (5, 3)),
        ("rescal", {}, (25, 3)),  # Σ_ab S[a] W_r[a, b] O[b]: K² terms
        ("tucker", {"relation_rank": 2}, (5 * 2 * 5, 4)),  # core · S · R · O
        ("complex", {}, (5, 3)),  # only the K real terms are shifted
    ],
)
def test_positive_init_terms(name, kwargs, expected):
    model = create_model(name, 6, 3, 5, "squared", **kwargs)
    assert model.positive_init_terms() == expected
    assert positive_init_defined(model)


@pytest.mark.parametrize("name", ["kd-distmult", "kd-rel-distmult"])
def test_models_without_a_positive_start_keep_their_own(name):
    model = create_model(name, 6, 3, 2, "squared")
    before = {n: p.detach().clone() for n, p in model.named_parameters()}
    assert model.positive_init_terms() is None and not positive_init_defined(model)
    initialise(model, "auto")
    assert all(torch.equal(before[n], p) for n, p in model.named_parameters())


def test_transe_has_no_positive_start():
    assert create_model("transe", 6, 3, 4, "score").positive_init_terms() is None


def test_complex_n3_uses_the_moduli():
    torch.manual_seed(0)
    model = create_model("complex", 4, 2, 3, "squared")
    triples = torch.tensor([[0, 1, 2], [3, 0, 3]])

    def modulus_cubes(table, index):
        re, im = table.full()[index].chunk(2, dim=-1)
        return (re**2 + im**2).sqrt().pow(3).sum()

    with torch.no_grad():
        expected = sum(
            modulus_cubes(table, triples[:, column])
            for table, column in ((model.entity, 0), (model.relation, 1), (model.entity, 2))
        )
        got = float(n3(model, triples))
    assert got == pytest.approx(float(expected) / 2, rel=1e-5)


def test_a_decorated_model_is_reachable_by_name():
    @register_model
    class Tiny(KGEModel):
        """CP of three tables, registered from a test."""

        name = "tiny-test-model"
        forms = ("squared",)

        def __init__(self, num_entities, num_relations, rank, form="squared", init_std=None):
            super().__init__(num_entities, num_relations, rank, form, init_std)
            self.subject = self.table(num_entities, rank)
            self.relation = self.table(num_relations, rank)
            self.object = self.table(num_entities, rank)

        def build_circuit(self):
            return cp_circuit(self.subject, self.relation, self.object, name=self.name)

    try:
        model = create_model("tiny-test-model", 5, 2, 3, "squared")
        assert isinstance(model, Tiny) and model.positive_init_terms() == (3, 3)

        class Clash(Tiny):
            pass

        with pytest.raises(ModelSpecError, match="taken"):
            register_model(Clash)
    finally:
        MODELS.pop("tiny-test-model")


def test_every_registered_model_has_forms_of_the_one_form_type():
    for cls in MODELS.values():
        assert set(cls.forms) <= set(FORMS) and cls.forms
