"""One ReFactor training step in circuitkg against a hand-written torch floor of the same step.

A step is what the trainer does with ``create("distmult", kg, form="score", encoder="refactor",
layers=6)``: one ReFactor layer from the cached node states (the closed-form DistMult softmax
layer, ``h + η/|T| (z - n)``), the ``ce`` objective (object and subject cross-entropy) on a batch of
512 training triples, backward and an Adam step on the relation table. The cache is reset to the
features every ``L`` steps, in both implementations.

The floor is the best simple torch of the same math, written here without circuitkg: with
``q = h[s] ⊙ g[r]`` and ``P`` the softmax of ``q hᵀ``, ``z - n = scatter_s(g[r] ⊙ (h[o] - P h)) +
scatter_o(q) - Pᵀ q`` (two ``index_add_`` and three dense products). On FB15k-237 the full-batch
``P`` is ``|T| x N = 272k x 14.5k``: both sides use the stochastic layer (``subgraph_batch``, softmax
over each batch's induced nodes, the same seeded permutation); the floor builds its batches once.

Both are checked to compute the same table and the same step (allclose), then timed in one process,
interleaved, median of ``--repeats``. Also timed: the local message step (``scatter_s(g ⊙ h[o]) +
scatter_o(g ⊙ h[s])``, forward and backward) with ``index_add_`` and with a PyG ``MessagePassing``.

    python benchmarks/bench_encoders.py --dataset fb237_v1
    python benchmarks/bench_encoders.py --dataset fb15k-237 --subgraph-batch 256 --repeats 3

Rank 200 by default (the ReFactor paper uses 768). ``--profile`` prints a torch.profiler table of
one circuitkg step. Results go to ``benchmarks/results/encoders_speed.json`` (one entry per dataset).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import time
from pathlib import Path

import torch
import torch.nn.functional as F

import circuitkg as ckg
from circuitkg.compile import compile as compile_
from circuitkg.train.objectives import one_vs_all_loss

RESULTS = Path(__file__).resolve().parent / "results" / "encoders_speed.json"
KG_ROOT = os.environ.get("CIRCUITKG_DATA", "/work/shared/data/kg")


# --- the floor -------------------------------------------------------------------------------------
def floor_batches(edges, num_nodes, subgraph_batch, seed=0):
    """``[(s, r, o, candidates, local_o)]``: one entry (all nodes) or the seeded subgraph batches."""
    if subgraph_batch is None or subgraph_batch >= len(edges):
        s, r, o = edges.unbind(1)
        return [(s, r, o, None, o)]
    order = torch.randperm(len(edges), generator=torch.Generator().manual_seed(seed))
    where = torch.full((num_nodes,), -1, dtype=torch.long)
    out = []
    for index in torch.split(order, subgraph_batch):
        t = edges[index]
        cand = torch.unique(t[:, [0, 2]])
        where[cand] = torch.arange(len(cand))
        s, r, o = t.unbind(1)
        out.append((s, r, o, cand, where[o].clone()))
    return out


def floor_layer(h, g, batches, eta, total):
    """``h + η/|T| (z - n)`` (module docstring), differentiable in ``g``; one ``N x K``
    accumulator, updated in place (``index_add_``) over the batches."""
    delta = torch.zeros_like(h)
    for s, r, o, cand, _ in batches:
        hc = h if cand is None else h[cand]
        gr = g[r]
        q = h[s] * gr
        p = torch.softmax(q @ hc.T, dim=1)
        delta.index_add_(0, s, gr * (h[o] - p @ hc))
        delta.index_add_(0, o, q)
        spread = p.T @ q
        if cand is None:
            delta = delta - spread
        else:
            delta.index_add_(0, cand, -spread)
    return h + (eta / total) * delta


def floor_loss(table, g, batch):
    s, r, o = batch.unbind(1)
    gr = g[r]
    logits_o = (table[s] * gr) @ table.T
    logits_s = (gr * table[o]) @ table.T
    return F.cross_entropy(logits_o, o) + F.cross_entropy(logits_s, s)


class Floor:
    def __init__(self, features, g, edges, num_nodes, layers, subgraph_batch, lr):
        self.features = features
        self.g = torch.nn.Parameter(g.detach().clone())
        self.batches = floor_batches(edges, num_nodes, subgraph_batch)
        self.eta, self.total, self.layers = float(num_nodes), len(edges), layers
        self.opt = torch.optim.Adam([self.g], lr=lr)
        self.states, self.steps = None, 0

    def step(self, batch):
        self.opt.zero_grad(set_to_none=True)
        h = self.features if self.steps % self.layers == 0 else self.states
        table = floor_layer(h, self.g, self.batches, self.eta, self.total)
        self.states = table.detach()
        self.steps += 1
        loss = floor_loss(table, self.g, batch)
        loss.backward()
        self.opt.step()
        return float(loss.detach())


# --- circuitkg -------------------------------------------------------------------------------------
class Circuit:
    def __init__(self, kg, rank, layers, subgraph_batch, lr, seed=0):
        torch.manual_seed(seed)
        self.model = ckg.models.create(
            "distmult", kg, rank=rank, form="score", encoder="refactor", layers=layers,
            subgraph_batch=subgraph_batch, preconditioner="none",  # the plain step, as the floor
        )  # fmt: skip
        self.compiled = compile_(self.model)
        self.compiled.train()
        self.table = self.model.encoded_table
        self.opt = torch.optim.Adam([p for p in self.model.parameters() if p.requires_grad], lr=lr)

    def step(self, batch):
        self.opt.zero_grad(set_to_none=True)
        loss = one_vs_all_loss(self.compiled, batch)
        loss.backward()
        self.opt.step()
        return float(loss.detach())


# --- the message step: index_add_ against PyG ------------------------------------------------------
def local_messages_index_add(h, g, s, r, o):
    gr = g[r]
    m = torch.zeros_like(h).index_add(0, s, gr * h[o])
    return m.index_add(0, o, gr * h[s])


def make_pyg():
    try:
        from torch_geometric.nn import MessagePassing
    except ImportError:
        return None

    class LocalMessages(MessagePassing):
        """``Σ_j g(r_ij) ⊙ x_j`` into ``i`` over both directions of every edge (``aggr='add'``)."""

        def __init__(self):
            super().__init__(aggr="add", flow="source_to_target")

        def forward(self, x, edge_index, edge_type, g):
            return self.propagate(edge_index, x=x, edge_type=edge_type, g=g)

        def message(self, x_j, edge_type, g):
            return g[edge_type] * x_j

    return LocalMessages()


def median_time(fn, repeats):
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def load_kg(name):
    if name.lower().startswith(("fb237_v", "wn18rr_v", "nell_v")):
        root = None if name == "fb237_v1" else "/work/shared/data/inductive/grail"
        return ckg.data.load_inductive(name, root=root).train
    return ckg.data.load(name, KG_ROOT)


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--dataset", default="fb237_v1")
    parser.add_argument("--rank", type=int, default=200)
    parser.add_argument("--layers", type=int, default=6)
    parser.add_argument("--batch-size", type=int, default=512)
    parser.add_argument("--subgraph-batch", type=int, default=None)
    parser.add_argument("--repeats", type=int, default=12)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--profile", action="store_true")
    parser.add_argument("--no-save", action="store_true")
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)

    kg = load_kg(args.dataset)
    edges = kg.train
    n, total = kg.num_entities, len(edges)
    sb = args.subgraph_batch
    print(f"{args.dataset}: N={n} |T|={total} rank={args.rank} layers={args.layers} "
          f"batch={args.batch_size} subgraph_batch={sb} threads={args.threads} "
          f"torch={torch.__version__}")  # fmt: skip

    lr = 1e-2
    ours = Circuit(kg, args.rank, args.layers, sb, lr)
    features = ours.table.encoder.features(ours.table.graph).detach()
    g0 = ours.model.relation.full().detach()
    floor = Floor(features, g0, edges, n, args.layers, sb, lr)
    gen = torch.Generator().manual_seed(0)

    def batch():
        return edges[torch.randint(total, (args.batch_size,), generator=gen)]

    # --- same table, same step ---------------------------------------------------------------------
    with torch.no_grad():
        reference = floor_layer(features, g0, floor.batches, floor.eta, floor.total)
    # Adam divides by sqrt(v): after a step the parameters amplify float noise in tiny gradients,
    # so the floor restarts each check step from circuitkg's relations; the checks are the table
    # (step 2: from the cached states), the loss and the relation gradients
    ours_g = next(p for p in ours.model.parameters() if p.requires_grad)
    losses = []
    for b in [batch() for _ in range(2)]:
        with torch.no_grad():
            floor.g.copy_(ours_g)
        losses.append((ours.step(b), floor.step(b)))
    table_ok = torch.allclose(ours.table.node_states, floor.states, rtol=1e-4, atol=1e-4)
    ours_first = Circuit(kg, args.rank, args.layers, sb, lr)  # same seed: same g0
    first = ours_first.table.full().detach()  # training mode, grad on: one layer from features
    first_ok = torch.allclose(first, reference, rtol=1e-4, atol=1e-4)
    grad_ours = ours_g.grad
    scale = float(floor.g.grad.abs().max())
    g_ok = torch.allclose(grad_ours, floor.g.grad, rtol=1e-3, atol=1e-4 * scale)
    loss_ok = all(abs(a - b) <= 1e-4 * max(1.0, abs(b)) for a, b in losses)
    same = bool(table_ok and first_ok and g_ok and loss_ok)
    print(f"allclose: first-layer table {first_ok}, table after 2 steps {table_ok}, "
          f"relation gradients {g_ok}, losses {loss_ok} {losses}")  # fmt: skip
    del ours_first

    # --- timing --------------------------------------------------------------------------------------
    calls0, steps0 = ours.table.encoder_calls, int(ours.table.steps)
    t_ours, t_floor = [], []
    for _ in range(args.repeats):
        b = batch()
        start = time.perf_counter()
        ours.step(b)
        t_ours.append(time.perf_counter() - start)
        start = time.perf_counter()
        floor.step(b)
        t_floor.append(time.perf_counter() - start)
    calls = (ours.table.encoder_calls - calls0) / (int(ours.table.steps) - steps0)
    m_ours, m_floor = statistics.median(t_ours), statistics.median(t_floor)
    ratio = m_ours / m_floor
    print(f"step: circuitkg {m_ours * 1e3:.1f} ms, floor {m_floor * 1e3:.1f} ms, "
          f"ratio {ratio:.2f}; encoder forwards per step {calls:.2f}")  # fmt: skip

    # --- message step: index_add_ vs PyG --------------------------------------------------------------
    s, r, o = edges.unbind(1)
    g = torch.nn.Parameter(g0.clone())
    pyg = make_pyg()
    pyg_ratio = None
    if pyg is not None:
        edge_index = torch.stack([torch.cat([o, s]), torch.cat([s, o])])  # source row, target row
        edge_type = torch.cat([r, r])
        a = local_messages_index_add(features, g, s, r, o)
        b = pyg(features, edge_index, edge_type, g)
        msg_ok = torch.allclose(a, b, rtol=1e-4, atol=1e-4)

        def run_index_add():
            local_messages_index_add(features, g, s, r, o).sum().backward()

        def run_pyg():
            pyg(features, edge_index, edge_type, g).sum().backward()

        t_ia, t_pyg = [], []
        for _ in range(max(args.repeats, 10)):
            t_ia.append(median_time(run_index_add, 1))
            t_pyg.append(median_time(run_pyg, 1))
        m_ia, m_pyg = statistics.median(t_ia), statistics.median(t_pyg)
        pyg_ratio = m_pyg / m_ia
        print(f"message step (fwd+bwd, {total} edges x 2): index_add_ {m_ia * 1e3:.2f} ms, PyG "
              f"MessagePassing {m_pyg * 1e3:.2f} ms, ratio PyG/index_add_ {pyg_ratio:.2f} "
              f"(allclose {msg_ok})")  # fmt: skip
    else:
        print("torch_geometric not installed: PyG message step skipped")

    if args.profile:
        from torch.profiler import ProfilerActivity, profile

        with profile(activities=[ProfilerActivity.CPU]) as prof:
            for _ in range(2):
                ours.step(batch())
        print(prof.key_averages().table(sort_by="self_cpu_time_total", row_limit=25))

    if not args.no_save:
        record = {
            "dataset": args.dataset, "num_entities": n, "num_edges": total, "rank": args.rank,
            "layers": args.layers, "batch_size": args.batch_size, "subgraph_batch": sb,
            "repeats": args.repeats, "threads": args.threads, "allclose": same,
            "circuitkg_ms": m_ours * 1e3, "floor_ms": m_floor * 1e3, "ratio": ratio,
            "encoder_forwards_per_step": calls, "pyg_over_index_add": pyg_ratio,
            "torch": torch.__version__, "machine": platform.processor() or platform.machine(),
        }  # fmt: skip
        data = json.loads(RESULTS.read_text()) if RESULTS.exists() else {}
        data[f"{args.dataset}/sb={sb}/rank={args.rank}"] = record
        RESULTS.write_text(json.dumps(data, indent=2) + "\n")


if __name__ == "__main__":
    main()
