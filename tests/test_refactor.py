"""The ReFactor layer against its definition: one layer is one gradient step on the node states."""

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

import circuitkg as ckg
from circuitkg.encoders import Graph, GraphError, ReFactor, distmult_softmax_messages
from circuitkg.testing import joint_table, tiny_graphs


def softmax_nll(h, g, triples):
    """``1/|T| Σ -log softmax_w <h[s], g[r], h[w]>`` at the object, written directly."""
    s, r, o = triples.unbind(1)
    logits = torch.einsum("tk,tk,wk->tw", h[s], g[r], h)
    return -(logits.gather(1, o[:, None]).squeeze(1) - torch.logsumexp(logits, dim=1)).mean()


def gradient_step(h, g, triples, eta):
    leaf = h.detach().clone().requires_grad_(True)
    (grad,) = torch.autograd.grad(softmax_nll(leaf, g, triples), leaf)
    return h - eta * grad


def degrees(graph):
    """Edges at each node, both directions, counted one edge at a time."""
    degree = torch.zeros(graph.num_nodes, dtype=torch.float64)
    for s, _, o in graph.edges.tolist():
        degree[s] += 1
        degree[o] += 1
    return degree


def distmult(graph, rank, form="score", **options):
    torch.manual_seed(0)
    model = ckg.models.create(
        "distmult", graph, rank=rank, form=form, encoder="refactor", **options
    )
    return model.double()


@settings(max_examples=60)
@given(tiny_graphs(max_edges=14), st.integers(1, 4), st.floats(0.1, 3.0), st.integers(0, 1000))
def test_closed_form_layer_is_one_gradient_step(graph, rank, eta, seed):
    torch.manual_seed(seed)
    h = torch.randn(graph.num_nodes, rank, dtype=torch.float64)
    g = torch.randn(graph.num_relations, rank, dtype=torch.float64)
    expected = gradient_step(h, g, graph.edges, eta)
    update = distmult_softmax_messages(h, g, graph.edges, budget=7)  # several triple chunks
    got = h + eta / graph.num_edges * update
    assert torch.allclose(got, expected, atol=1e-6, rtol=0)


@settings(max_examples=40)
@given(tiny_graphs(max_edges=14), st.integers(1, 4), st.integers(0, 1000))
def test_messages_without_global_term_match_their_definition(graph, rank, seed):
    """z[v] = Σ_out g(r) ⊙ h[w] + Σ_in (1 - P(v | s, r)) g(r) ⊙ h[s], one edge at a time."""
    torch.manual_seed(seed)
    h = torch.randn(graph.num_nodes, rank, dtype=torch.float64)
    g = torch.randn(graph.num_relations, rank, dtype=torch.float64)
    expected = torch.zeros_like(h)
    for s, r, o in graph.edges.tolist():
        p = torch.softmax((h[s] * g[r]) @ h.T, dim=0)
        expected[s] += g[r] * h[o]
        expected[o] += (1 - p[o]) * g[r] * h[s]
    z = distmult_softmax_messages(h, g, graph.edges, global_term=False, budget=5)
    assert torch.allclose(z, expected, atol=1e-10)


@settings(max_examples=30)
@given(tiny_graphs(max_edges=14), st.integers(1, 3), st.sampled_from([None, 0.7]))
def test_encoder_layer_closed_form_equals_autograd_form(graph, rank, eta):
    """The ReFactor encoder on a DistMult score decoder: the closed form (messages) and the
    autograd form (a gradient step through the compiled circuit) give the same layer, and both
    equal the gradient step written directly (η = N when not given)."""
    model = distmult(graph, rank, layers=2, step_size=eta, preconditioner="none")
    table = model.encoded_table
    h = torch.randn(graph.num_nodes, rank, dtype=torch.float64)
    decoder = table.decoder
    closed = table.encoder.layer(graph, h, decoder)
    table.encoder.gradient = "autograd"
    auto = table.encoder.layer(graph, h, decoder)
    step = graph.num_nodes if eta is None else eta
    expected = gradient_step(h, model.relation.weight.detach(), graph.edges, step)
    assert torch.allclose(closed, expected, atol=1e-6, rtol=0)
    assert torch.allclose(auto, expected, atol=1e-6, rtol=0)


@settings(max_examples=30)
@given(
    tiny_graphs(max_edges=14),
    st.integers(1, 3),
    st.floats(0.1, 2.0),
    st.sampled_from(["closed", "autograd"]),
)
def test_degree_preconditioned_layer_is_a_step_in_the_degree_metric(graph, rank, eta, gradient):
    """``h - η D⁻¹ ∇L`` with ``D = diag(1 + deg) / |T|``, for the closed and the autograd form."""
    model = distmult(graph, rank, layers=1, step_size=eta, gradient=gradient)
    table = model.encoded_table
    h = torch.randn(graph.num_nodes, rank, dtype=torch.float64)
    g = model.relation.weight.detach()
    leaf = h.clone().requires_grad_(True)
    (grad,) = torch.autograd.grad(softmax_nll(leaf, g, graph.edges), leaf)
    expected = h - eta * graph.num_edges / (1 + degrees(graph))[:, None] * grad
    got = table.encoder.layer(graph, h, table.decoder)
    assert torch.allclose(got, expected, atol=1e-6, rtol=0)


@settings(max_examples=30)
@given(
    tiny_graphs(max_edges=14),
    st.integers(1, 3),
    st.floats(0.01, 1.0),
    st.sampled_from(["closed", "autograd"]),
    st.sampled_from(["degree", "none"]),
)
def test_layer_n3_is_a_step_of_the_regularised_objective(graph, rank, weight, gradient, metric):
    """``layer_n3 = λ``: the step descends ``L + λ/|T| Σ_T (‖h[s]‖₃³ + ‖h[o]‖₃³)``, by autograd."""
    model = distmult(
        graph, rank, layers=1, gradient=gradient, preconditioner=metric, layer_n3=weight
    )
    table = model.encoded_table
    h = torch.randn(graph.num_nodes, rank, dtype=torch.float64)
    g = model.relation.weight.detach()
    leaf = h.clone().requires_grad_(True)
    s, _, o = graph.edges.unbind(1)
    n3 = (leaf[s].abs().pow(3).sum() + leaf[o].abs().pow(3).sum()) / graph.num_edges
    (grad,) = torch.autograd.grad(softmax_nll(leaf, g, graph.edges) + weight * n3, leaf)
    if metric == "none":
        expected = h - graph.num_nodes * grad
    else:
        expected = h - graph.num_edges / (1 + degrees(graph))[:, None] * grad
    got = table.encoder.layer(graph, h, table.decoder)
    assert torch.allclose(got, expected, atol=1e-6, rtol=0)


@settings(max_examples=25)
@given(tiny_graphs(max_edges=10), st.integers(1, 3), st.integers(1, 4))
def test_subgraph_batches_are_a_step_of_the_restricted_objective(graph, rank, batch):
    """The stochastic layer: each batch's softmax over the nodes of its own subgraph."""
    model = distmult(graph, rank, layers=1, subgraph_batch=batch, step_size=1.0,
                     preconditioner="none")  # fmt: skip
    encoder = model.encoded_table.encoder
    h = torch.randn(graph.num_nodes, rank, dtype=torch.float64)
    g = model.relation.weight.detach()
    leaf = h.clone().requires_grad_(True)
    loss = 0
    for triples, candidates in encoder._batches(graph):
        nodes = candidates if candidates is not None else torch.arange(graph.num_nodes)
        logits = torch.einsum("tk,tk,wk->tw", leaf[triples[:, 0]], g[triples[:, 1]], leaf[nodes])
        answer = (nodes[None, :] == triples[:, 2:]).double()
        picked = (logits * answer).sum(1)
        loss = loss - (picked - torch.logsumexp(logits, dim=1)).sum() / graph.num_edges
    (grad,) = torch.autograd.grad(loss, leaf)
    got = encoder.layer(graph, h, model.encoded_table.decoder)
    assert torch.allclose(got, h - grad, atol=1e-6, rtol=0)


@settings(max_examples=15)
@given(
    tiny_graphs(max_edges=14),
    st.sampled_from(["cp", "complex", "rescal", "tucker"]),
    st.integers(0, 100),
)
def test_autograd_layer_is_a_gradient_step_of_the_pll(graph, name, seed):
    """Squared decoders: one layer is ``h - η ∇_h PLL(h)``, PLL computed by brute force."""
    torch.manual_seed(seed)
    model = ckg.models.create(name, graph, rank=2, form="squared", encoder="refactor", layers=1,
                              step_size=0.5, preconditioner="none").double()  # fmt: skip
    table = model.encoded_table
    h = torch.randn(graph.num_nodes, table.width, dtype=torch.float64)
    got = table.encoder.layer(graph, h, table.decoder)
    leaf = h.clone().requires_grad_(True)
    with table.evaluating_at(leaf):
        joint = joint_table(ckg.compile(model))  # (n, m, n) probabilities
    loss = 0
    for s, r, o in graph.edges.tolist():
        loss = loss - torch.log(joint[s, r, o] / joint[:, r, o].sum())
        loss = loss - torch.log(joint[s, r, o] / joint[s, :, o].sum())
        loss = loss - torch.log(joint[s, r, o] / joint[s, r, :].sum())
    (grad,) = torch.autograd.grad(loss / graph.num_edges, leaf)
    assert torch.allclose(got, h - 0.5 * grad, atol=1e-6, rtol=1e-6)


def test_without_global_term_an_isolated_node_keeps_its_feature_row():
    graph = Graph.from_triples(torch.tensor([[0, 0, 1], [1, 0, 2]]), 4, 1)
    model = distmult(graph, 3, layers=3, global_term=False)
    model.eval()
    table = model.encoded_table
    features = table.encoder.features(graph)
    assert torch.equal(table.full()[3], features[3])
    assert not torch.allclose(table.full()[:3], features[:3])


def test_global_term_ablation_needs_the_closed_form():
    graph = Graph.from_triples(torch.tensor([[0, 0, 1]]), 2, 1)
    model = ckg.models.create("cp", graph, rank=2, form="squared", encoder="refactor",
                              global_term=False)  # fmt: skip
    with pytest.raises(GraphError, match="closed form"):
        ckg.compile(model).log_partition()


def test_bad_options_are_clear_errors():
    graph = Graph.from_triples(torch.tensor([[0, 0, 1]]), 2, 1)
    with pytest.raises(GraphError, match="layers"):
        ckg.models.create("distmult", graph, rank=2, encoder="refactor", layers=0)
    with pytest.raises(GraphError, match="unknown encoder"):
        ckg.models.create("distmult", graph, rank=2, encoder="nope")
    with pytest.raises(GraphError, match="without an encoder"):
        ckg.models.create("distmult", graph, rank=2, layers=3)
    with pytest.raises(GraphError, match="empty graph"):
        Graph.from_triples(torch.zeros(0, 3, dtype=torch.long), 3, 1)
    assert isinstance(ReFactor.build(2, 2), ReFactor)


@settings(max_examples=20)
@given(tiny_graphs(max_edges=14), st.integers(1, 3), st.sampled_from([None, 2]))
def test_relation_gradients_through_the_closed_form_equal_autograd(graph, rank, batch):
    """What training backpropagates: d(loss of the layer's output)/d g, closed form (in-place
    scatters) against the double-backward of the autograd form."""
    grads = []
    for gradient in ("closed", "autograd"):
        if gradient == "autograd" and batch is not None:
            continue
        model = distmult(graph, rank, layers=1, gradient=gradient, subgraph_batch=batch)
        torch.manual_seed(1)
        h = torch.randn(graph.num_nodes, rank, dtype=torch.float64)
        out = model.encoded_table.encoder.layer(graph, h, model.encoded_table.decoder)
        (grad,) = torch.autograd.grad((out * out).sum(), model.relation.weight)
        grads.append(grad)
    if batch is None:
        assert torch.allclose(grads[0], grads[1], atol=1e-6)
    else:
        assert torch.isfinite(grads[0]).all()


def test_edge_dropout_thins_training_layers_only():
    edges = torch.tensor([[i % 6, i % 2, (i * 5 + 1) % 6] for i in range(40)])
    graph = Graph.from_triples(edges, 6, 2)
    model = distmult(graph, 3, layers=2, edge_dropout=0.5)
    encoder, seen = model.encoded_table.encoder, []
    original = encoder.layer

    def recording(g, h, decoder):
        seen.append(g.num_edges)
        return original(g, h, decoder)

    encoder.layer = recording
    h = torch.randn(6, 3, dtype=torch.float64)
    encoder.train_step(graph, h, model.encoded_table.decoder)
    encoder.train_step(graph, h, model.encoded_table.decoder)
    assert all(0 < n < 40 for n in seen) and len(set(seen)) >= 1
    seen.clear()
    encoder.encode(graph, model.encoded_table.decoder)
    assert seen == [40, 40]
    with pytest.raises(GraphError, match="edge_dropout"):
        distmult(graph, 3, edge_dropout=1.0)


def test_redrawn_features_start_training_cycles_only():
    edges = torch.tensor([[i % 6, i % 2, (i * 5 + 1) % 6] for i in range(20)])
    graph = Graph.from_triples(edges, 6, 2)
    model = distmult(graph, 3, layers=2, redraw_features=True)
    encoder, decoder = model.encoded_table.encoder, model.encoded_table.decoder
    starts = []
    original = encoder.layer

    def recording(g, h, dec):
        starts.append(h.detach().clone())
        return original(g, h, dec)

    encoder.layer = recording
    fixed = encoder.features(graph).detach()
    encoder.train_step(graph, None, decoder)
    encoder.train_step(graph, None, decoder)
    assert not torch.allclose(starts[0], fixed) and not torch.allclose(starts[0], starts[1])
    starts.clear()
    encoder.encode(graph, decoder)
    assert torch.equal(starts[0], fixed)  # inference keeps the encoder's own draw
    with pytest.raises(GraphError, match="redraw_features"):
        distmult(graph, 3, features="lookup", redraw_features=True)


def test_steps_per_layer_keeps_each_depth_for_k_steps():
    edges = torch.tensor([[i % 6, i % 2, (i * 5 + 1) % 6] for i in range(20)])
    graph = Graph.from_triples(edges, 6, 2)
    model = distmult(graph, 3, layers=2, steps_per_layer=3)
    table = model.encoded_table
    inputs, original = [], table.encoder.train_step

    def recording(g, states, decoder):
        inputs.append(None if states is None else states.clone())
        return original(g, states, decoder)

    table.encoder.train_step = recording
    model.train()
    outputs = []
    for _ in range(7):
        outputs.append(table.full().detach().clone())
        with torch.no_grad():  # an optimiser step: a new parameter state
            next(model.parameters()).add_(0.01)
    assert [x is None for x in inputs] == [True, True, True, False, False, False, True]
    assert all(torch.equal(inputs[i], outputs[2]) for i in (3, 4, 5))
    with pytest.raises(GraphError, match="steps_per_layer"):
        distmult(graph, 3, steps_per_layer=0)
