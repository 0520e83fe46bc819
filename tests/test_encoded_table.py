"""Encoded tables: the once-per-step contract, the node-state cache schedule, new graphs,
checkpoints, and exact queries of encoded models on unseen graphs (brute force)."""

import gc
import weakref

import pytest
import torch
from hypothesis import assume, given, settings
from hypothesis import strategies as st

import circuitkg as ckg
from circuitkg.encoders import Graph, GraphError, PyGEncoder, RandomFeatures
from circuitkg.testing import (
    assert_conditionals_consistent,
    assert_marginals_consistent,
    assert_normalised,
    tiny_inductive_splits,
)
from circuitkg.train import TrainConfig, Trainer, initialise, load_checkpoint, save_checkpoint
from circuitkg.train.checkpoint import TrainState
from circuitkg.train.objectives import pll_loss
from circuitkg.train.regularisers import n3

EDGES = torch.tensor([[0, 0, 1], [1, 1, 2], [2, 0, 0], [0, 1, 0], [3, 1, 1], [1, 0, 3]])


def graph(edges=EDGES, nodes=5, relations=2, names=None):
    rel_names = names or [f"r{i}" for i in range(relations)]
    return Graph.from_triples(edges, nodes, relations, None, rel_names)


def model(name="distmult", form="squared", g=None, **options):
    torch.manual_seed(0)
    return ckg.models.create(name, g or graph(), rank=3, form=form, encoder="refactor", **options)


def train_steps(m, steps, batch=EDGES):
    compiled = ckg.compile(m)
    opt = torch.optim.Adam(m.parameters(), lr=0.01)
    for _ in range(steps):
        opt.zero_grad()
        loss = pll_loss(compiled, batch) + 0.01 * n3(m, batch)
        loss.backward()
        opt.step()


def record_inputs(m):
    """Replace the encoder's train_step by one that records the states it is given."""
    encoder, seen = m.encoded_table.encoder, []
    original = encoder.train_step

    def recording(graph, states, decoder=None):
        seen.append(None if states is None else states.clone())
        return original(graph, states, decoder)

    encoder.train_step = recording
    return seen


@pytest.mark.parametrize("layers", [1, 3, None])
def test_the_cache_is_reset_every_l_steps_and_never_for_l_infinite(layers):
    m = model(layers=layers)
    seen = record_inputs(m)
    tables = []
    compiled = ckg.compile(m)
    opt = torch.optim.Adam(m.parameters(), lr=0.01)
    for _ in range(7):
        opt.zero_grad()
        pll_loss(compiled, EDGES).backward()
        tables.append(m.encoded_table.node_states.clone())
        opt.step()
    for t, states in enumerate(seen):
        if (layers is None and t == 0) or (layers is not None and t % layers == 0):
            assert states is None, f"step {t}: expected a reset to the features"
        else:
            assert torch.equal(states, tables[t - 1]), f"step {t}: expected the cached states"


def test_one_encoder_forward_per_training_step():
    m = model(layers=3)
    train_steps(m, 5)  # each step: three PLL conditionals (several Grams each) and N3
    assert m.encoded_table.encoder_calls == 5
    assert int(m.encoded_table.steps) == 5


def test_one_encoder_forward_per_no_grad_parameter_state():
    m = model(layers=2)
    compiled = ckg.compile(m)
    s, r = torch.tensor([0, 1]), torch.tensor([1, 0])
    with torch.no_grad():
        compiled.log_partition()
        compiled.log_conditional("o", s=s, r=r)
        compiled.log_prob(EDGES)
        assert m.encoded_table.encoder_calls == 1
        m.relation.weight.mul_(1.5)  # a parameter change invalidates the table
        z = compiled.log_partition()
        assert m.encoded_table.encoder_calls == 2
    assert torch.isfinite(z)


def test_gradient_accumulation_recomputes_without_advancing_the_schedule():
    m = model(layers=2)
    compiled = ckg.compile(m)
    seen = record_inputs(m)
    pll_loss(compiled, EDGES[:3]).backward()
    pll_loss(compiled, EDGES[3:]).backward()  # a second backward without an optimiser step
    assert int(m.encoded_table.steps) == 1 and len(seen) == 2
    assert seen[0] is None and seen[1] is None


def test_the_trainer_runs_one_forward_per_step():
    kg = ckg.data.load("umls")
    config = TrainConfig(rank=4, epochs=1, batch_size=2048, eval_every=0, model="distmult",
                         model_kwargs={"encoder": "refactor", "encoder_options": {"layers": 2}})  # fmt: skip
    trainer = Trainer(config, kg, progress=False, log=lambda line: None)
    trainer.fit()
    table = trainer.model.encoded_table
    assert table.encoder_calls == int(table.steps) == trainer.state.step == 3


def test_positive_initialisation_reaches_the_features():
    m = model(layers=2)
    initialise(m, "positive", noise=0.1)
    features = m.encoded_table.encoder.features
    assert isinstance(features, RandomFeatures)
    assert torch.all(features(m.encoded_graph) > 0)


@settings(max_examples=30)
@given(tiny_inductive_splits(), st.sampled_from(["distmult", "complex", "cp"]), st.integers(1, 3))
def test_a_squared_encoded_model_is_exact_on_an_unseen_graph(split, name, layers):
    """Trained on one graph, bound to a disjoint one: normalised, with marginals and conditionals
    equal to brute-force sums over the new graph's triples."""
    assume(len(split.train.train) and len(split.inference.train))  # an edgeless graph is an error
    torch.manual_seed(0)
    m = ckg.models.create(name, split.train, rank=2, form="squared", encoder="refactor",
                          layers=layers, step_size=0.3).double()  # fmt: skip
    train_steps(m, 2, split.train.train)
    new = m.on(Graph.from_kg(split.inference))
    assert new.num_entities == split.inference.num_entities
    compiled = ckg.compile(new)
    assert_normalised(compiled)
    assert_marginals_consistent(compiled)
    assert_conditionals_consistent(compiled)


def test_on_shares_the_relation_and_encoder_parameters():
    m = model(layers=2)
    new = m.on(graph(torch.tensor([[0, 1, 1], [1, 0, 0]]), nodes=2))
    assert new.relation.weight is m.relation.weight
    assert new.encoded_table.encoder is m.encoded_table.encoder
    assert new.encoded_table is not m.encoded_table
    with torch.no_grad():
        assert ckg.compile(new).log_conditional(
            "o", s=torch.tensor([0]), r=torch.tensor([1])
        ).shape == (1, 2)


def test_on_refuses_what_it_cannot_serve():
    with pytest.raises(GraphError, match=r"unknown to the model: \['likes'\]"):
        model(layers=2).on(graph(names=["r0", "likes"]))
    with pytest.raises(GraphError, match="1 relations, the model 2"):
        model(layers=2).on(Graph.from_triples(torch.tensor([[0, 0, 1]]), 2, 1))
    with pytest.raises(GraphError, match="transductive"):
        model(layers=None).on(graph())
    with pytest.raises(GraphError, match="lookup table"):
        ckg.models.DistMult(5, 2, 3).on(graph())
    with pytest.raises(GraphError, match="lookup features are transductive"):
        model(layers=2, features="lookup").on(graph())


def test_l_infinite_inference_reads_the_cache():
    m = model(layers=None)
    with pytest.raises(GraphError, match="train the model first"), torch.no_grad():
        ckg.compile(m).log_partition()
    train_steps(m, 3)
    m.eval()
    assert torch.equal(m.encoded_table.full(), m.encoded_table.node_states)


def test_checkpoint_round_trip(tmp_path):
    m = model(layers=None, form="squared")
    train_steps(m, 3)
    config = TrainConfig(model="distmult", rank=3,
                         model_kwargs={"encoder": "refactor", "encoder_options": {"layers": None}})  # fmt: skip
    save_checkpoint(tmp_path / "ckpt", m, config, TrainState(step=3))
    loaded = load_checkpoint(tmp_path / "ckpt").model
    assert torch.equal(loaded.encoded_graph.edges, m.encoded_graph.edges)
    assert int(loaded.encoded_table.steps) == 3
    with torch.no_grad():
        assert torch.equal(ckg.compile(loaded).log_partition(), ckg.compile(m).log_partition())


def test_checkpoint_round_trip_of_an_inductive_model_on_a_new_graph(tmp_path):
    m = model(layers=2, form="squared")
    train_steps(m, 2)
    config = TrainConfig(model="distmult", rank=3,
                         model_kwargs={"encoder": "refactor", "encoder_options": {"layers": 2}})  # fmt: skip
    save_checkpoint(tmp_path / "ckpt", m, config, TrainState())
    loaded = load_checkpoint(tmp_path / "ckpt").model
    new_graph = graph(torch.tensor([[0, 1, 1], [1, 0, 2], [2, 0, 0]]), nodes=3)
    with torch.no_grad():
        a = ckg.compile(m.on(new_graph)).log_partition()
        b = ckg.compile(loaded.on(new_graph)).log_partition()
    assert torch.equal(a, b)


def test_a_pyg_conv_stack_is_an_encoder():
    pyg = pytest.importorskip("torch_geometric.nn")
    g = graph()
    features = RandomFeatures(4, seed=1)
    convs = [pyg.RGCNConv(4, 4, num_relations=2), pyg.RGCNConv(4, 3, num_relations=2)]
    encoder = PyGEncoder(convs, features, width=3)
    m = ckg.models.DistMult(5, 2, 3, form="squared")
    from circuitkg.compilers.encoded import attach_encoder

    attach_encoder(m, encoder, g)
    m = m.double()
    compiled = ckg.compile(m)
    assert_normalised(compiled)
    expected = encoder.encode(g)
    m.eval()
    assert torch.allclose(m.encoded_table.full(), expected)
    loss = pll_loss(compiled, EDGES)
    loss.backward()
    assert convs[0].weight.grad is not None


def test_a_training_step_frees_the_previous_steps_graph():
    """With the cyclic garbage collector off, the previous step's table (and its autograd graph)
    is freed by reference counting alone: no reference cycle through the table's hook."""
    gc.disable()
    try:
        kg = ckg.data.load("nations")
        torch.manual_seed(0)
        model = ckg.models.create(
            "distmult", kg, rank=4, form="score", encoder="refactor", layers=None
        )
        config = TrainConfig(epochs=2, batch_size=512, eval_every=0, objective="ce", reg_weight=0.0)
        trainer = Trainer(config, kg, model=model, progress=False, log=lambda line: None)
        trainer.train_epoch(1)
        previous = weakref.ref(model.encoded_table._train.table)
        trainer.train_epoch(2)
        assert previous() is None
    finally:
        gc.enable()
