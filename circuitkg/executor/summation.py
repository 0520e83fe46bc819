"""Summing one variable out of a squared circuit: ``log Σ_x w[x] φ(x, e)²``, by the cheaper plan.

The adjoint pass gives ``φ(x, e) = Σ_l q_l · T_l[x]`` over the input layers ``l`` over ``X``. Each
view folds into its base (:meth:`~circuitkg.params.Table.fold`), so ``φ = Σ_a c_a · base_a[x]``
over the distinct base tables, with ``c_a = Σ_{l reads a} fold_l(q_l)`` of width ``W_a`` (ComplEx:
one ``2K``-wide base for its four ``K``-wide views). Two plans compute the sum exactly:

* **Gram**: ``Σ_ab c_aᵀ G_ab c_b`` with ``G_ab = Σ_x w[x] base_a[x]ᵀ base_b[x]``. ``O(|X| W²)`` for
  the Grams, computed once per parameter state (shared within a
  :func:`~circuitkg.executor.training_step`, kept across no-grad queries), then ``O(B W²)``.
* **values**: ``C = Σ_a c_a base_aᵀ``, ``φ`` for every value ``(B x |X|)``, then ``Σ_x w[x] C²``,
  a row norm. ``O(B |X| W)``, no Gram.

The choice (``plan="auto"``) counts multiply-adds, forward and backward when autograd is on:

* values: ``3 B |X| W`` (the product and its two backward products) plus ``100 B |X|`` for the
  elementwise passes over the ``(B, |X|)`` values (squares, sum, their backward; measured on one
  CPU core: 6 ns an entry, where a matmul does 20 multiply-adds a ns); ``B |X| W + 30 B |X|``
  without autograd;
* Gram: ``3 B W²`` for the forms, plus ``2 |X| W_a²`` (the Gram and its one-matmul backward) for
  each base whose Gram is not computed yet, divided among the variables whose layers read that
  base (in a PLL step DistMult's and ComplEx's entity Gram serves ``s`` and ``o``).

Without autograd the factors are 1 and the Gram, once computed, is kept, so repeated queries
take the Gram plan. ``bench_train.py --crossover`` measures both plans against the pick.
"""

from __future__ import annotations

import torch
from torch import Tensor

from circuitkg.ir.circuit import Circuit
from circuitkg.numerics import Scaled, scaled_sum
from circuitkg.params.tables import Table

PLANS = ("auto", "gram", "values")


def fold_to_bases(coefs: list[tuple]) -> list[tuple[Table, Scaled]]:
    """``[(base_a, c_a)]``: the adjoint's ``(layer, q_l)`` pairs folded into their base tables."""
    by_base: dict[int, tuple[Table, list[Scaled]]] = {}
    for layer, q in coefs:
        base = layer.table.as_view()[0]
        folded = Scaled(layer.table.fold(q.value, dim=1), q.log_scale)
        by_base.setdefault(id(base), (base, []))[1].append(folded)
    return [(base, scaled_sum(parts)) for base, parts in by_base.values()]


def log_sum_out(
    circuit: Circuit,
    target: str,
    bases: list[tuple[Table, Scaled]],
    weights: Tensor | None,
    grams,
    plan: str = "auto",
) -> Tensor:
    """``log Σ_x w[x] φ(x, e)²`` per batch row (``w = 1`` when ``weights`` is None), by ``plan``."""
    if plan not in PLANS:
        raise ValueError(f"unknown summation plan {plan!r}; choose one of {PLANS}")
    if plan == "auto":
        plan = "values" if _values_cheaper(circuit, target, bases, grams) else "gram"
    if plan == "values":
        phi = scaled_sum([base.contract(c) for base, c in bases]).normalised()
        squares = phi.value.square()
        mass = (squares if weights is None else squares * weights).sum(dim=1)
        return torch.log(mass) + 2.0 * phi.log_scale
    terms = [
        _bilinear(ca, grams.gram(ta, tb, weights=weights), cb)
        for ta, ca in bases
        for tb, cb in bases
    ]
    return scaled_sum(terms).log_abs()


def _values_cheaper(circuit: Circuit, target: str, bases, grams) -> bool:
    batch = bases[0][1].value.shape[0]
    values = bases[0][0].num_values
    width = sum(base.width for base, _ in bases)
    grad = torch.is_grad_enabled()
    products, gram_products, per_entry = (3, 2, 100) if grad else (1, 1, 30)  # module docstring
    readers: dict[int, set[str]] = {}
    for layer in circuit.input_layers():
        if layer.variable is not None:
            readers.setdefault(id(layer.table.as_view()[0]), set()).add(layer.variable)
    unpaid = sum(
        gram_products * values * base.width**2 / len(readers.get(id(base), {target}))
        for base, _ in bases
        if not grams.has(base, base)
    )
    gram_cost = unpaid + products * batch * width**2
    values_cost = products * batch * values * width + per_entry * batch * values
    return values_cost < gram_cost


def _bilinear(qa: Scaled, gram: Scaled, qb: Scaled) -> Scaled:
    """``qa[b]ᵀ G[b] qb[b]`` per row; a shared Gram (one row) is never broadcast to the batch."""
    if gram.value.shape[0] == 1:
        value = ((qa.value @ gram.value[0]) * qb.value).sum(dim=1)
    else:
        value = torch.einsum("ni,nij,nj->n", qa.value, gram.value, qb.value)
    return Scaled(value, qa.log_scale + gram.log_scale + qb.log_scale).normalised()
