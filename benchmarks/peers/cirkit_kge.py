"""Peer implementation of squared CP and squared ComplEx KGE models with ``cirkit``.

This module is a *benchmark peer*: it calls libcirkit 0.3.1 (``pip install libcirkit==0.3.1``,
GPLv3) as an external library so that a benchmark can time it side by side with ``circuitkg``.
No cirkit code is copied here.  It is only imported from ``benchmarks/`` and needs the separate
environment ``benchmarks/.venv-peers`` (torch 2.13.0 CPU + libcirkit 0.3.1)::

    python3 -m venv benchmarks/.venv-peers && . benchmarks/.venv-peers/bin/activate
    pip install torch==2.13.0 && pip install libcirkit==0.3.1

Sanity check (tiny model, exhaustive):  ``cd benchmarks && python -m peers.cirkit_kge``.

What is built
-------------
Both models are circuits over three categorical variables ``S`` (n states), ``R`` (m states) and
``O`` (n states), variable ids 0, 1, 2.  The *unsquared* circuit ``c(s, r, o)`` is the real-valued
KGE score; the model is the squared circuit ``p(s, r, o) = c(s, r, o)^2 / Z`` with
``Z = sum_{s,r,o} c(s, r, o)^2`` (the GeKC "squared" construction, Loconte et al. 2023).

* ``"cp"``: cirkit's own template ``cirkit.templates.tensor_factorizations.cp(shape=(n, m, n),
  rank=K)``: three ``EmbeddingLayer`` input layers of K units (independent subject / relation /
  object factor matrices, as in the CP KGE model), a ``HadamardLayer`` of arity 3 and a
  ``SumLayer`` with constant all-ones weights to one unit:  ``c = sum_k A[s,k] B[r,k] C[o,k]``.
* ``"complex"``: ComplEx ``c = Re(<e_s, w_r, conj(e_o)>)`` emulated in reals (cirkit has complex
  dtypes, but squaring a complex circuit via the conjugate gives ``|<e_s, w_r, conj e_o>|^2``,
  a different model from ComplEx^2 = ``Re(...)^2``).  Four learnable tensors ``E_re, E_im``
  (K x n) and ``W_re, W_im`` (K x m); S and O *share* the entity tensors.  Six K-unit
  ``EmbeddingLayer`` s (S_re, S_im, R_re, R_im, O_re, O_im), four arity-3 ``HadamardLayer`` s for
  the terms ``sR rR oR, sI rR oI, sR rI oI, sI rI oR``, four arity-1 ``SumLayer`` s (K -> 1,
  constant ones) and one arity-4 ``SumLayer`` with constant weights ``[+1, +1, +1, -1]``.

How cirkit computes each query
------------------------------
All circuits are compiled in one ``cirkit.pipeline.PipelineContext(backend="torch",
semiring=..., fold=True, optimize=True)`` so that they share the same torch parameters.

* ``log_partition``: the symbolic circuit ``integrate(multiply(c, c))`` (functions of
  ``cirkit.symbolic.functional``) compiled once.  The product of two embedding layers is an
  embedding layer of K^2 units with an outer-product weight; integrating it gives a constant
  layer whose reduce-sum(outer-product) parameter cirkit's optimiser fuses into one einsum, i.e.
  the K x K Gram matrices ``A^T A`` -- O(n K^2), never the (K^2, n) tensor.  The squared
  Hadamard layers (K^2 units) and the Kronecker-product sum weights (applied by cirkit as two
  tensor-dots) then give Z.  ComplEx needs 4 Gram matrices per variable and 16 K^2-unit
  Hadamard products (vs 1 and 1 for CP).
* ``log_prob``: the *unsquared* compiled circuit is evaluated on the batch and squared,
  ``2 log|c(s,r,o)| - log Z``.  (Evaluating the squared circuit on points would materialise its
  (K^2, n) outer-product embedding weights: infeasible for large K.)
* ``log_conditional_o``: the naive way -- the unsquared circuit is evaluated on all ``B * n``
  triples ``(s, r, o)`` (in chunks), then ``log p(o|s,r) = 2 log|c| - logsumexp_o 2 log|c|``,
  which is exact.  cirkit 0.3.1 has no query returning a vector over the states of one variable,
  and ``IntegrateQuery`` over O on the squared circuit would again materialise the K^2 x n
  outer-product weights, so no conditioning / marginalisation shortcut is used.

Semiring: default ``"complex-lse-sum"`` (cirkit's choice for non-monotonic / squared circuits:
log space with complex logarithms so that negative values keep their sign); ``"sum-product"``
(linear space, faster, can overflow for huge models) via ``semiring=``.  ``"lse-sum"`` is not
usable (real logs of negative scores are NaN).

cirkit 0.3.1 pitfalls met here
------------------------------
1. ``multiply`` of two sum layers with arity A > 1 *and* K > 1 input units is wrong: the weight
   is ``kron(w1, w2)`` (column order a, k1, b, k2) but the paired inputs are laid out as
   (a, b, k1, k2), so ``multiply(c, c) != c^2``.  Hence the ComplEx circuit first reduces each
   term to a single unit (arity-1 sums) and combines the 1-unit terms with an arity-4 sum.
2. A ``ReferenceParameter`` to a tensor owned by a layer of the *same* circuit goes stale when
   layers are folded (error "The tensor parameter has not been initialized").  The shared
   ComplEx tensors are therefore owned by a small "holder" circuit compiled first; every input
   layer of the KGE circuit references them (as cirkit's circuit operators do internally).
3. ``IndexParameter`` cannot be folded (its config holds a list: "unhashable type: 'list'"),
   so the 4K-unit "gathered" ComplEx layout is not an option with ``fold=True``.
4. ``cirkit.symbolic.registry.OperatorRegistry.add_rule`` reads ``__annotations__``; rules
   defined under ``from __future__ import annotations`` are rejected (not used here).
5. A circuit with empty scope (the integrated one) returns shape (1, 1), not (1, 1, 1).
"""

from collections.abc import Mapping

import cirkit.symbolic.functional as SF
import numpy as np
import torch
from cirkit.pipeline import PipelineContext
from cirkit.symbolic.circuit import Circuit
from cirkit.symbolic.initializers import NormalInitializer
from cirkit.symbolic.layers import EmbeddingLayer, HadamardLayer, SumLayer
from cirkit.symbolic.parameters import (
    ConstantParameter,
    Parameter,
    ReferenceParameter,
    TensorParameter,
)
from cirkit.templates.tensor_factorizations import cp as cp_template
from cirkit.templates.utils import Parameterization
from cirkit.utils.scope import Scope
from torch import Tensor

MODELS = ("cp", "complex")


def _tensor_of(layer: EmbeddingLayer) -> TensorParameter:
    (node,) = layer.weight.inputs
    assert isinstance(node, TensorParameter)
    return node


def _cp_symbolic(n: int, m: int, K: int, init_std: float):
    sc = cp_template(
        (n, m, n),
        K,
        input_layer="embedding",
        input_params={
            "weight": Parameterization(
                initialization="normal", initialization_kwargs={"mean": 0.0, "stddev": init_std}
            )
        },
        weight_param=None,  # constant all-ones sum weights
    )
    by_var = {next(iter(sl.scope)): sl for sl in sc.input_layers}
    tensors = {
        "subject": _tensor_of(by_var[0]),
        "relation": _tensor_of(by_var[1]),
        "object": _tensor_of(by_var[2]),
    }
    return None, sc, tensors


def _complex_symbolic(n: int, m: int, K: int, init_std: float):
    """Return ``(holder, circuit, tensors)``; ``holder`` is compiled first and owns the tensors."""
    init = NormalInitializer(0.0, init_std)
    e_re, e_im = TensorParameter(K, n, initializer=init), TensorParameter(K, n, initializer=init)
    w_re, w_im = TensorParameter(K, m, initializer=init), TensorParameter(K, m, initializer=init)

    def emb(var: int, states: int, p: TensorParameter, ref: bool = True) -> EmbeddingLayer:
        weight = Parameter.from_input(ReferenceParameter(p) if ref else p)
        return EmbeddingLayer(Scope([var]), K, num_states=states, weight=weight)

    def const_sum(k_in: int, arity: int, value) -> SumLayer:
        w = Parameter.from_input(ConstantParameter(1, arity * k_in, value=value))
        return SumLayer(k_in, 1, arity=arity, weight=w)

    # Holder circuit owning the four tensors (pitfall 2); never evaluated.
    h_in = [
        emb(0, n, e_re, False),
        emb(0, n, e_im, False),
        emb(1, m, w_re, False),
        emb(1, m, w_im, False),
    ]
    h_had = [HadamardLayer(K, arity=2), HadamardLayer(K, arity=2)]
    h_out = const_sum(K, 2, 1.0)
    holder = Circuit(
        layers=h_in + h_had + [h_out],
        in_layers={h_out: h_had, h_had[0]: h_in[0::2], h_had[1]: h_in[1::2]},
        outputs=[h_out],
    )

    s_re, s_im = emb(0, n, e_re), emb(0, n, e_im)
    r_re, r_im = emb(1, m, w_re), emb(1, m, w_im)
    o_re, o_im = emb(2, n, e_re), emb(2, n, e_im)  # the same entity tensors as the subject
    # Re(<s, r, conj o>) = sR rR oR + sI rR oI + sR rI oI - sI rI oR
    terms = [(s_re, r_re, o_re), (s_im, r_re, o_im), (s_re, r_im, o_im), (s_im, r_im, o_re)]
    hads = [HadamardLayer(K, arity=3) for _ in terms]
    term_sums = [const_sum(K, 1, 1.0) for _ in terms]  # K -> 1 unit (pitfall 1)
    out = const_sum(1, 4, np.array([[1.0, 1.0, 1.0, -1.0]], dtype=np.float32))
    in_layers = {out: term_sums}
    in_layers.update({ts: [h] for ts, h in zip(term_sums, hads, strict=True)})
    in_layers.update({h: list(t) for h, t in zip(hads, terms, strict=True)})
    inputs = [s_re, s_im, r_re, r_im, o_re, o_im]
    circuit = Circuit(layers=inputs + hads + term_sums + [out], in_layers=in_layers, outputs=[out])
    tensors = {"entity_re": e_re, "entity_im": e_im, "relation_re": w_re, "relation_im": w_im}
    return holder, circuit, tensors


class CirkitKGE(torch.nn.Module):
    """A squared KGE model compiled with cirkit (see the module docstring)."""

    def __init__(
        self,
        model: str,
        n: int,
        m: int,
        K: int,
        *,
        device: str | torch.device = "cpu",
        semiring: str = "complex-lse-sum",
        init_std: float = 1.0,
        chunk_size: int | None = None,
    ) -> None:
        super().__init__()
        if model not in MODELS:
            raise ValueError(f"unknown model {model!r}; expected one of {MODELS}")
        if semiring not in ("complex-lse-sum", "sum-product"):
            raise ValueError("semiring must be 'complex-lse-sum' or 'sum-product'")
        self.model, self.n, self.m, self.K = model, n, m, K
        self.semiring = semiring
        # Triples per chunk in log_conditional_o: bounds the (folds, chunk, K) activations.
        self.chunk_size = chunk_size if chunk_size is not None else max(1, (1 << 23) // K)
        build = _cp_symbolic if model == "cp" else _complex_symbolic
        holder, sc, sym_tensors = build(n, m, K, init_std)
        ctx = PipelineContext(backend="torch", semiring=semiring, fold=True, optimize=True)
        with ctx:
            if holder is not None:
                self._holder = ctx.compile(holder)
            self.circuit = ctx.compile(sc)
            self.z_circuit = ctx.compile(SF.integrate(SF.multiply(sc, sc)))
        # (compiled folded tensor, fold index) of every named embedding matrix
        self._slots = {
            name: ctx._compiler.state.retrieve_compiled_parameter(p)  # noqa: SLF001
            for name, p in sym_tensors.items()
        }
        self.to(device)
        self.device = torch.device(device)

    # -- parameters ------------------------------------------------------------------------
    def embeddings(self) -> dict[str, Tensor]:
        """Views (states, K) of the learnable embedding matrices (names depend on the model:
        cp: subject/relation/object; complex: entity_re/entity_im/relation_re/relation_im)."""
        return {
            name: tp._ptensor[fold].T  # noqa: SLF001  (F, K, states) folded storage
            for name, (tp, fold) in self._slots.items()
        }

    @torch.no_grad()
    def set_embeddings(self, values: Mapping[str, Tensor]) -> None:
        """Copy (states, K) matrices into the model, e.g. to match another implementation."""
        views = self.embeddings()
        for name, v in values.items():
            views[name].copy_(v)

    # -- helpers ---------------------------------------------------------------------------
    def _log_abs(self, out: Tensor) -> Tensor:
        if self.semiring == "sum-product":
            return torch.log(torch.abs(out))
        return out.real  # complex-lse-sum: Re(log c) = log|c|

    def log_abs_score(self, triples: Tensor) -> Tensor:
        """log |c(s, r, o)| for a (B, 3) LongTensor of triples (unsquared circuit)."""
        return self._log_abs(self.circuit(triples)[:, 0, 0])

    # -- queries ---------------------------------------------------------------------------
    def log_partition(self) -> Tensor:
        """log Z of the squared circuit, a differentiable scalar."""
        out = self.z_circuit().reshape(())  # empty-scope circuit: output (1, 1)
        return self._log_abs(out)

    def log_prob(self, triples: Tensor, log_z: Tensor | None = None) -> Tensor:
        """log p(s, r, o) = 2 log|c(s, r, o)| - log Z for a (B, 3) LongTensor."""
        if log_z is None:
            log_z = self.log_partition()
        return 2.0 * self.log_abs_score(triples) - log_z

    def log_conditional_o(self, s: Tensor, r: Tensor) -> Tensor:
        """(B, n) log p(o | s, r): c evaluated on all (s, r, o), chunked (naive but exact)."""
        n = self.n
        o_all = torch.arange(n, device=s.device)
        rows = max(1, self.chunk_size // n)
        outs = []
        for i in range(0, s.shape[0], rows):
            sb, rb = s[i : i + rows], r[i : i + rows]
            b = sb.shape[0]
            x = torch.stack(
                [sb[:, None].expand(b, n), rb[:, None].expand(b, n), o_all[None, :].expand(b, n)],
                dim=-1,
            ).reshape(b * n, 3)
            outs.append(2.0 * self.log_abs_score(x).reshape(b, n))
        scores = torch.cat(outs, dim=0)
        return scores - torch.logsumexp(scores, dim=1, keepdim=True)


def build_cirkit(
    model: str, n: int, m: int, K: int, device: str | torch.device = "cpu", **kwargs
) -> CirkitKGE:
    """Build a squared ``"cp"`` or ``"complex"`` KGE circuit with cirkit (see module docs).

    Keyword arguments: ``semiring`` ("complex-lse-sum" | "sum-product"), ``init_std``,
    ``chunk_size`` (triples per chunk in ``log_conditional_o``).
    """
    return CirkitKGE(model, n, m, K, device=device, **kwargs)


def reference_score(model: str, emb: Mapping[str, Tensor], triples: Tensor) -> Tensor:
    """Independent plain-torch score c(s, r, o) from ``CirkitKGE.embeddings()`` (for checks)."""
    s, r, o = triples.unbind(-1)
    if model == "cp":
        return (emb["subject"][s] * emb["relation"][r] * emb["object"][o]).sum(-1)
    e = torch.complex(emb["entity_re"], emb["entity_im"])
    w = torch.complex(emb["relation_re"], emb["relation_im"])
    return (e[s] * w[r] * e[o].conj()).sum(-1).real


@torch.no_grad()
def check_tiny(n: int = 5, m: int = 3, K: int = 4, seed: int = 0) -> list[dict]:
    """Exhaustive correctness check on a tiny model; returns one row of errors per setting."""
    torch.manual_seed(seed)
    grid = torch.cartesian_prod(torch.arange(n), torch.arange(m), torch.arange(n))
    rows = []
    for model in MODELS:
        for semiring in ("complex-lse-sum", "sum-product"):
            kge = build_cirkit(model, n, m, K, semiring=semiring)
            ref = reference_score(model, kge.embeddings(), grid)
            ref_log_z = torch.log((ref**2).sum())
            log_z = kge.log_partition()
            lp = kge.log_prob(grid, log_z)
            s, r = grid[:, 0], grid[:, 1]
            cond = kge.log_conditional_o(s, r)  # every (s, r), repeated n times -- fine
            ref_cond = torch.log_softmax(2 * torch.log(ref.abs()).reshape(n * m, n), -1)
            rows.append(
                {
                    "model": model,
                    "semiring": semiring,
                    "|sum p - 1|": abs(lp.exp().sum().item() - 1.0),
                    "|logZ - ref|": abs(log_z.item() - ref_log_z.item()),
                    "max|log c - ref|": (kge.log_abs_score(grid) - ref.abs().log())
                    .abs()
                    .max()
                    .item(),
                    "max|sum_o p(o|s,r) - 1|": (cond.exp().sum(-1) - 1).abs().max().item(),
                    "max|cond - ref|": (cond.reshape(n * m, n, n)[:, 0] - ref_cond)
                    .abs()
                    .max()
                    .item(),
                }
            )
    return rows


if __name__ == "__main__":  # pragma: no cover
    for row in check_tiny():
        print(
            "  ".join(
                f"{k}={v:.2e}" if isinstance(v, float) else f"{k}={v}" for k, v in row.items()
            )
        )
