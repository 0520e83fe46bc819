"""Exact queries on a model whose entity table is split across processes.

:func:`shard_model` replaces a model's entity tables (``entity``; CP's ``subject`` and
``object``) by :class:`~circuitkg.distributed.sharded_table.ShardedTable`\\ s; relation tables and
sum weights stay replicated. :class:`ShardedCircuit` answers on it; every rank calls each query
with the same arguments and gets the same result (``B`` queries, ``n`` entities over ``N``
processes, ``W`` the entity width: ``K`` for CP, ``2K`` for ComplEx; bytes per process of the
collectives, float32, ring all-reduce ``≈ 2×`` its size):

==========================  ===================================================  ==============
query                       math                                                  bytes
==========================  ===================================================  ==============
``log_partition``           ``Z`` from the Grams ``G = Σ_i T_iᵀ T_i``: one        ``≈ 8 W²`` per
                            all-reduce per entity table, then the unsharded       entity table
                            contraction (``O(n W² / N)`` per rank)
``log_prob``, ``score``     rows of ``s`` and ``o`` gathered (owner fills,         ``≈ 16 B W``
                            all-reduce), ``log φ² - log Z``                        + ``log Z``
``log_marginal``            the summed variable's Gram (reduced) in ``qᵀ G q``     as above
``log_conditional_of``      PLL term ``φ² / qᵀ G q``, rows gathered, Gram          as above
                            reduced
``log_conditional_shard``   ``φ(x) = c · T_i[x]`` on the rank's ``n_i`` rows     ``≈ 16 W B``
                            (``c`` from the gathered rows of the evidence); with   (rows) + 16 B
                            another variable summed out ``Σ_rest φ² =`` (score)
                            ``T_i[x] Q T_i[x]ᵀ``. Squared: divided by the mass
                            ``qᵀ G q`` of the reduced Gram (``log_mass``); score:
                            a distributed log-sum-exp, max and ``Σ exp`` each
                            all-reduced
``topk``                    per-shard top-k of the above, all-gathered            ``12 N B k``
                            ``(value, id)`` candidates, merged
``log_conditional``         the shards all-gathered (``(B, n)`` on every rank;    ``4 B n``
                            tests and small graphs)
``sample``                  :mod:`~circuitkg.distributed.sharded_sampling`
==========================  ===================================================  ==============

Queries run without autograd. Squared and score forms only: a monotone model's log-space tables
are refused (:class:`~circuitkg.errors.DistributedError`).
"""

from __future__ import annotations

import copy

import torch
from torch import Tensor

from circuitkg.compile import compile as compile_
from circuitkg.compilers import KGEModel
from circuitkg.distributed.sharded_sampling import sample_sharded
from circuitkg.distributed.sharded_table import Partition, ShardedTable
from circuitkg.distributed.world import World
from circuitkg.errors import DistributedError, EvidenceError
from circuitkg.numerics import Scaled, scaled_sum
from circuitkg.params import FreeTable, Table

#: the model attributes that hold entity tables (CP: subject and object)
ENTITY_TABLES = ("entity", "subject", "object")
ENTITY_VARIABLES = ("s", "o")


def shard_model(model: KGEModel, world: World) -> KGEModel:
    """A copy of ``model`` whose entity tables hold only this rank's rows (module docstring)."""
    if model.form == "monotone":
        raise DistributedError(
            f"{model.name} in monotone form runs in log space; entity sharding supports the "
            "squared and score forms"
        )
    tables = {
        n: getattr(model, n) for n in ENTITY_TABLES if isinstance(getattr(model, n, None), Table)
    }
    if not tables:
        raise DistributedError(f"{model.name} has no entity table ({', '.join(ENTITY_TABLES)})")
    for name, table in tables.items():
        if type(table) is not FreeTable:
            raise DistributedError(
                f"{model.name}.{name} is a {type(table).__name__}; entity sharding splits free "
                "(looked-up) tables only"
            )
    # the copy refers to this rank's rows wherever the model referred to a whole entity table
    # (DistMult's one table twice), and never copies the whole tables
    memo = {id(t): ShardedTable.of(t, world) for t in tables.values()}
    sharded = copy.deepcopy(model, memo)
    sharded._circuit = None
    if hasattr(sharded, "circuit_modules"):
        del sharded.circuit_modules
    sharded.circuit()
    return sharded


class ShardedCircuit:
    """The queries of :class:`~circuitkg.CompiledCircuit` on an entity-sharded model
    (module docstring); ``model`` is the whole model, of which this rank keeps its rows."""

    def __init__(self, model: KGEModel, world: World) -> None:
        self.world = world
        self.model = shard_model(model, world).to(world.device)
        self.compiled = compile_(self.model).eval()
        self.form = self.compiled.form
        self.partition = Partition(model.num_entities, world.size)
        self.start, self.stop = self.partition.span(world.rank)

    @property
    def variables(self) -> list[str]:
        return self.compiled.variables

    @property
    def domains(self) -> dict[str, int]:
        return self.compiled.domains

    # --- queries the executor answers on the sharded tables ----------------------------------------
    def score(self, triples: Tensor) -> Tensor:
        with torch.no_grad():
            return self.compiled.score(triples)

    def log_partition(self) -> Tensor:
        with torch.no_grad():
            return self.compiled.log_partition()

    def log_prob(self, triples: Tensor) -> Tensor:
        with torch.no_grad():
            return self.compiled.log_prob(triples)

    def log_marginal(self, **given: Tensor | int) -> Tensor:
        with torch.no_grad():
            return self.compiled.log_marginal(**given)

    def log_conditional_of(self, target: str, value: Tensor | int, **given: Tensor | int) -> Tensor:
        with torch.no_grad():
            return self.compiled.log_conditional_of(target, value, **given)

    # --- all-value queries, per shard ---------------------------------------------------------------
    def log_conditional_shard(self, target: str, **given: Tensor | int) -> Tensor:
        """``log p(target = x | given)`` for this rank's values ``x`` of an entity ``target``:
        ``(B, stop - start)``; normalised over all ``n`` values by a distributed log-sum-exp."""
        if target not in ENTITY_VARIABLES:
            raise EvidenceError(
                f"per-shard conditionals are over entities (s or o); {target!r} is replicated: "
                "use log_conditional"
            )
        with torch.no_grad():
            observed = all(v in given for v in self.variables if v != target)
            scores = self._local_scores(target, given, observed)
            if self.form == "squared" and observed:
                # Σ_x φ² over all ranks is the mass with the target summed out, qᵀ G q through
                # the reduced Gram (kept across queries): O(B W²) instead of O(B n_i)
                return scores.sub_(self.compiled.log_mass(**given).unsqueeze(1))
            # score form (a softmax of the scores), or rows each up to a constant of their own
            return scores.sub_(self._log_normaliser(scores))

    def log_conditional(self, target: str, **given: Tensor | int) -> Tensor:
        """``(B, |target|)`` on every rank: relations replicated, entities all-gathered shards."""
        if target not in ENTITY_VARIABLES:
            with torch.no_grad():
                return self.compiled.log_conditional(target, **given)
        local = self.log_conditional_shard(target, **given)
        padded = local.new_full((local.shape[0], self.partition.largest), -torch.inf)
        padded[:, : local.shape[1]] = local
        gathered = self.world.all_gather(padded)
        spans = [self.partition.span(r) for r in range(self.world.size)]
        return torch.cat([g[:, : b - a] for g, (a, b) in zip(gathered, spans, strict=True)], dim=1)

    def topk(self, target: str, k: int, **given: Tensor | int) -> tuple[Tensor, Tensor]:
        """The ``k`` most probable values of ``target`` given ``given``: ``(log p, ids)``, each
        ``(B, k)`` in decreasing order; entities merged from per-shard top-k."""
        if target not in ENTITY_VARIABLES:
            return self.log_conditional(target, **given).topk(k, dim=1)
        if not 0 < k <= self.partition.num_values:
            raise EvidenceError(f"k must lie in 1..{self.partition.num_values}, got {k}")
        local = self.log_conditional_shard(target, **given)
        values = local.new_full((local.shape[0], k), -torch.inf)
        ids = torch.full((local.shape[0], k), -1, dtype=torch.long, device=local.device)
        kk = min(k, local.shape[1])
        top, where = local.topk(kk, dim=1)
        values[:, :kk], ids[:, :kk] = top, where + self.start
        all_values = self.world.all_gather(values).permute(1, 0, 2).reshape(local.shape[0], -1)
        all_ids = self.world.all_gather(ids).permute(1, 0, 2).reshape(local.shape[0], -1)
        best, pick = all_values.topk(k, dim=1)
        return best, all_ids.gather(1, pick)

    def sample(
        self, num_samples: int, given: dict[str, int] | None = None, seed: int = 0
    ) -> Tensor:
        """Exact samples ``(num_samples, 3)``, the same on every rank:
        :func:`~circuitkg.distributed.sharded_sampling.sample_sharded`."""
        return sample_sharded(self, num_samples, given=given, seed=seed)

    # --- helpers ------------------------------------------------------------------------------------
    def _local_scores(self, target: str, given: dict[str, Tensor | int], observed: bool) -> Tensor:
        """Unnormalised log-masses of this rank's values of ``target``, ``(B, n_i)``: with every
        other variable ``observed``, ``log φ²`` (squared) or ``φ`` (score); else ``log Σ_rest φ²``,
        each row up to a constant of its own."""
        plan = self.compiled.expansions
        bases = plan.bases(target)
        local = [b.local_rows for b in bases]
        if observed:
            expansion = plan.linear(target, **given)
            phi = scaled_sum(
                [
                    Scaled(c.value @ rows.T, c.log_scale)
                    for c, rows in zip(expansion.blocks, local, strict=True)
                ]
            )
            if self.form == "score":
                return phi.dense()
            scale = 2.0 * phi.log_scale.reshape(-1, 1)
            log_abs = phi.value.abs_().log_()
            return torch.add(scale, log_abs, alpha=2.0, out=log_abs)  # in place: 2 log|φ|
        if self.form == "score":
            raise EvidenceError("a score circuit has no conditional with a variable summed out")
        q = plan.quadratic(target, **given).coefficients([torch.zeros(()) for _ in bases])
        rows = torch.cat(local, dim=1)
        mass = torch.einsum("xi,bij,xj->bx", rows, q, rows)
        return mass.clamp_min_(0).log_()

    def _log_normaliser(self, scores: Tensor) -> Tensor:
        """``(B, 1)``: ``log Σ_x exp(scores[b, x])`` over the values of every rank."""
        top = self.world.all_reduce(scores.amax(dim=1), "max")
        top = torch.where(torch.isfinite(top), top, torch.zeros_like(top))
        total = self.world.all_reduce(torch.exp(scores - top.unsqueeze(1)).sum(dim=1))
        return (torch.log(total) + top).unsqueeze(1)
