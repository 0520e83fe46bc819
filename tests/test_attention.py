"""The relational attention and MEAN encoders against direct per-node loops and their properties:
weights normalised per neighbourhood, order invariance, unseen rows that read only their aux edges,
exact normalisation of squared decoders over a graph with unseen entities."""

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

import circuitkg as ckg
from circuitkg.encoders import Graph, GraphError, RelationalAttention
from circuitkg.testing import assert_normalised, tiny_graphs

ENCODERS = [
    ("attention", {"heads": 1}),
    ("attention", {"heads": 2}),
    ("attention", {"heads": 3, "combine": "mean", "activation": "tanh"}),
    ("mean", {}),
]


def model_for(graph, encoder="attention", name="transe", form="score", rank=4, seed=0, **options):
    torch.manual_seed(seed)
    model = ckg.models.create(name, graph, rank=rank, form=form, encoder=encoder, **options)
    return model.double()


def table_of(model):
    model.eval()
    with torch.no_grad():
        return model.encoded_table.full().clone()


def loop_encoder(encoder, graph, relation_rows):
    """The encoder's output written per node, from its definition: pairs (r, u) for out-edges and
    (r⁻¹, u) for in-edges, c = W_c [x_u ; g(ρ)], b = LeakyReLU(a · [W_q x_v ; c]), softmax, sum."""
    x = encoder.node_features(graph)
    g = relation_rows
    g_inv = g @ encoder.inverse.T
    out = x.clone()
    attention = isinstance(encoder, RelationalAttention)
    k = encoder.heads if attention else 1
    w = encoder.head_width if attention else encoder.width
    for v in range(graph.num_nodes):
        pairs = [(g[r], u) for h, r, u in graph.edges.tolist() if h == v]
        pairs += [(g_inv[r], h) for h, r, u in graph.edges.tolist() if u == v]
        if not pairs:
            continue
        c = torch.stack([encoder.pair @ torch.cat([x[u], rel]) for rel, u in pairs])  # (P, k w)
        heads = []
        for head in range(k):
            ch = c[:, head * w : (head + 1) * w]
            if attention:
                q = encoder.query[head * w : (head + 1) * w] @ x[v]
                b = torch.stack([encoder.attend[head] @ torch.cat([q, row]) for row in ch])
                alpha = torch.softmax(torch.nn.functional.leaky_relu(b, 0.2), 0)
            else:
                alpha = torch.full((len(pairs),), 1 / len(pairs), dtype=x.dtype)
            heads.append(alpha @ ch)
        row = torch.cat(heads) if not attention or encoder.combine == "concat" else sum(heads) / k
        out[v] = torch.tanh(row) if encoder.activation == "tanh" else row
    return out


@settings(max_examples=25)
@given(tiny_graphs(), st.sampled_from(ENCODERS), st.integers(0, 100))
def test_encoder_matches_a_per_node_loop(graph, encoder, seed):
    name, options = encoder
    model = model_for(graph, name, rank=6, seed=seed, **options)
    with torch.no_grad():
        model.encoded_table.encoder.features.weight.normal_()  # rows of unit scale
    expected = loop_encoder(model.encoded_table.encoder, graph, model.relation.full()).detach()
    assert torch.allclose(table_of(model), expected, atol=1e-10)


@settings(max_examples=30)
@given(tiny_graphs(), st.integers(1, 3), st.integers(0, 100))
def test_attention_weights_sum_to_one_over_each_neighbourhood(graph, heads, seed):
    model = model_for(graph, heads=heads, combine="mean", seed=seed)
    table = model.encoded_table
    alpha, centre = table.encoder.attention(graph, table.decoder)
    assert alpha.shape == (2 * graph.num_edges, heads) and bool((alpha > 0).all())
    sums = torch.zeros(graph.num_nodes, heads, dtype=alpha.dtype).index_add_(0, centre, alpha)
    has = torch.zeros(graph.num_nodes, dtype=torch.bool)
    has[centre] = True
    assert torch.allclose(sums[has], torch.ones_like(sums[has]), atol=1e-12)
    assert bool((sums[~has] == 0).all())


@settings(max_examples=30)
@given(tiny_graphs(), st.sampled_from(ENCODERS), st.randoms(use_true_random=False))
def test_invariant_to_the_order_of_neighbours(graph, encoder, rng):
    name, options = encoder
    model = model_for(graph, name, **options)
    order = list(range(graph.num_edges))
    rng.shuffle(order)
    shuffled = Graph.from_triples(graph.edges[order], graph.num_nodes, graph.num_relations)
    assert torch.allclose(table_of(model), table_of(model.on(shuffled)), atol=1e-12)


def test_softmax_is_stable_for_large_scores():
    scores = torch.tensor([[1000.0], [999.0], [-1000.0]], dtype=torch.float64)
    alpha = ckg.encoders.scatter_softmax(scores, torch.tensor([0, 0, 1]), 2)
    assert torch.allclose(alpha[:, 0], torch.tensor([1 / (1 + torch.e**-1), 1 / (1 + torch.e), 1.0],
                                                     dtype=torch.float64))  # fmt: skip


# --- unseen entities ------------------------------------------------------------------------------
@st.composite
def ookb_splits(draw):
    """Seen nodes ``0..n-1`` with training edges among them, unseen nodes ``n..n+u-1`` whose aux
    edges reach seen nodes and, sometimes, other unseen nodes."""
    n, u, m = draw(st.integers(2, 5)), draw(st.integers(1, 3)), draw(st.integers(1, 3))
    seen, every = st.integers(0, n - 1), st.integers(0, n + u - 1)
    rel = st.integers(0, m - 1)
    train = draw(st.lists(st.tuples(seen, rel, seen), min_size=1, max_size=8))
    aux = []
    for v in range(n, n + u):
        for _ in range(draw(st.integers(1, 3))):
            other = draw(every)
            edge = (v, draw(rel), other) if draw(st.booleans()) else (other, draw(rel), v)
            aux.append(edge)
    return n, u, m, train, aux


@settings(max_examples=30)
@given(ookb_splits(), st.sampled_from(ENCODERS), st.integers(0, 1000))
def test_an_unseen_row_depends_only_on_its_aux_edges(split, encoder, seed):
    n, u, m, train, aux = split
    name, options = encoder
    model = model_for(Graph.from_triples(torch.tensor(train), n, m), name, **options)
    full = Graph.from_triples(torch.tensor(train + aux), n + u, m)
    before = table_of(model.on(full))
    gen = torch.Generator().manual_seed(seed)
    for v in range(n, n + u):
        own = [e for e in aux if v in (e[0], e[2])]
        neighbours = {e[0] for e in own} | {e[2] for e in own}
        # everything else moves: other training and aux edges, and non-neighbours' rows
        others = torch.randint(0, n + u, (6, 3), generator=gen)
        others[:, 1] %= m
        others = [e for e in others.tolist() if v not in (e[0], e[2])]
        perturbed = model_for(Graph.from_triples(torch.tensor(train), n, m), name, **options)
        perturbed.load_state_dict(model.state_dict())
        with torch.no_grad():
            weight = perturbed.encoded_table.encoder.features.weight
            for w in range(n):
                if w not in neighbours:
                    weight[w] += torch.randn(weight.shape[1], generator=gen, dtype=weight.dtype)
        graph = Graph.from_triples(torch.tensor(own + others), n + u, m)
        after = table_of(perturbed.on(graph))
        assert torch.allclose(after[v], before[v], atol=1e-12), v


@settings(max_examples=12)
@given(ookb_splits(), st.sampled_from(["distmult", "complex"]), st.sampled_from(ENCODERS))
def test_squared_decoder_over_unseen_entities_is_normalised(split, name, encoder):
    n, u, m, train, aux = split
    kind, options = encoder
    model = model_for(Graph.from_triples(torch.tensor(train), n, m), kind, name, "squared",
                      rank=2, **options)  # fmt: skip
    with torch.no_grad():
        model.encoded_table.encoder.features.weight.normal_()
    bound = model.on(Graph.from_triples(torch.tensor(train + aux), n + u, m))
    bound.eval()
    compiled = ckg.compile(bound)
    assert compiled.domains == {"s": n + u, "r": m, "o": n + u}
    assert_normalised(compiled, rtol=1e-8, atol=1e-10)


def test_unseen_nodes_in_the_training_graph_keep_their_zero_rows():
    graph = Graph.from_triples(torch.tensor([[0, 0, 1], [1, 0, 2]]), 3, 1)
    model = model_for(graph)
    bigger = Graph.from_triples(torch.tensor([[0, 0, 1], [1, 0, 2]]), 5, 1)
    table = table_of(model.on(bigger))
    assert torch.equal(table[3:], torch.zeros(2, 4, dtype=torch.float64))
    assert torch.allclose(table[:3], table_of(model))


def test_training_reaches_the_encoder_and_the_decoder():
    graph = Graph.from_triples(torch.tensor([[0, 0, 1], [1, 1, 2], [2, 0, 0]]), 3, 2)
    model = model_for(graph, heads=2)
    model.train()
    compiled = ckg.compile(model)
    compiled.score(graph.edges).sum().backward()
    encoder = model.encoded_table.encoder
    for p in (
        encoder.query,
        encoder.attend,
        encoder.pair,
        encoder.inverse,
        encoder.features.weight,
    ):
        assert p.grad is not None and bool(p.grad.abs().sum() > 0)
    assert model.relation.weight.grad.abs().sum() > 0


def test_bad_options_are_clear_errors():
    graph = Graph.from_triples(torch.tensor([[0, 0, 1]]), 2, 1)
    with pytest.raises(GraphError, match="do not divide"):
        model_for(graph, heads=3)
    with pytest.raises(GraphError, match="combine"):
        model_for(graph, combine="max")
    with pytest.raises(GraphError, match="activation"):
        model_for(graph, "mean", activation="gelu")
    cp = ckg.models.create("cp", graph, rank=2, form="squared", encoder="attention")
    with pytest.raises(GraphError, match="relation_width=2"):
        ckg.compile(cp).log_partition()
    cp = ckg.models.create("cp", graph, rank=2, form="squared", encoder="attention",
                           relation_width=2)  # fmt: skip
    assert torch.isfinite(ckg.compile(cp).log_partition())
    model = model_for(Graph.from_triples(torch.tensor([[0, 0, 1], [1, 0, 2]]), 3, 1))
    with pytest.raises(GraphError, match="not an extension"):
        model.on(graph)
