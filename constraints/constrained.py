"""Exact queries on a model conditioned on a domain schema: ``p(s, r, o) ∝ φ(s, r, o)^2 · c(s, r, o)``.

:class:`ConstrainedCircuit` wraps a :class:`~circuitkg.CompiledCircuit` (squared: ``φ² · c``;
monotone: ``φ · c``; score: ``φ`` masked to ``-inf``) and a :class:`BoundSchema`, and answers the
same queries. Every triple that breaks the schema gets probability exactly 0 (``log p = -inf``).

**Plans.** With the deterministic constraint ``c = Σ_g [r ∈ R_g][s ∈ S_g][o ∈ O_g]``, the
unnormalised mass of any evidence ``e`` (observed ids, the rest summed out) is

    M(e) = Σ_{g consistent with e}  Σ_{unobserved x}  φ(x, e)² · Π_{v unobserved} [x_v ∈ V_g],

a weighted integral of the *unconstrained* model: each unobserved variable is summed with the 0/1
mask of group ``g`` as weights, which the executor's weighted evidence computes with Gram matrices
grouped by entity class (``Σ_{x in class} T[x]ᵀ T[x]`` once, then a ``(G x C)`` mix). Rows of the
batch and groups are paired only where the observed values are allowed:

* ``r`` observed: one group per row, ``M = [s ∈ S_g][o ∈ O_g] · Σ ...`` (``B`` weighted rows);
* ``s`` and ``o`` observed, ``r`` summed: one row with weights ``[(s, r, o) consistent]`` over ``r``;
* otherwise: up to ``B·G`` (row, group) pairs, combined with a log-sum-exp.

``log Z = log M(∅)`` is the ``G`` groups batched: ``O(n K² + G C K² + m K²)`` for CP-shaped models,
never a per-relation copy of a table. ``log_conditional`` over all values of the target with every
other variable observed (link prediction) is the model's all-value scores plus ``log c``
(``0``/``-inf``), then a softmax: ``O(B K n)`` as without constraint. With other variables summed,
each target value is a row of ``M`` (``O(B |target|)`` rows).

Training under the constraint (paper 004's D-ComplEx²) uses :meth:`ConstrainedCircuit.log_prob`
(MLE) or :meth:`ConstrainedCircuit.log_conditional_of` (PLL) in place of the compiled circuit's;
conditioning a trained model post hoc is wrapping its compiled circuit (:func:`constrain`).
"""

from __future__ import annotations

from collections.abc import Mapping

import torch
from circuitkg.compilers.base import KG_VARIABLES, check_kg_circuit
from circuitkg.constraints.binding import BoundSchema
from circuitkg.constraints.circuit import constraint_circuit
from circuitkg.constraints.pll import AllowedRuns, grouped_normaliser, masked_normaliser
from circuitkg.constraints.schema import DomainSchema, MissingPolicy, _hint
from torch import Tensor, nn

from circuitkg.errors import EvidenceError, FormError
from circuitkg.evidence import validated
from circuitkg.executor import CompiledCircuit
from circuitkg.executor.names import Prediction
from circuitkg.executor.step import memoised_in_step
from circuitkg.ir import Circuit, multiply
from circuitkg.sampling import sample

__all__ = ["ConstrainedCircuit", "constrain"]

Ids = Tensor | int | list[int]


class ConstrainedCircuit(nn.Module):
    """A compiled KG circuit conditioned on a schema, with the query API of ``CompiledCircuit``.

    Evidence values are entity / relation ids (ints or long tensors ``(B,)``); :meth:`topk` also
    takes names. Moving the module (``.to``) moves the model and the masks.
    """

    def __init__(self, compiled: CompiledCircuit, bound: BoundSchema) -> None:
        super().__init__()
        check_kg_circuit(
            compiled, bound.num_entities, bound.num_relations, "the schema's knowledge graph"
        )
        self.compiled = compiled
        self.bound = bound
        self._product: Circuit | None = None
        self._allowed: dict[tuple[str, torch.device], AllowedRuns] = {}
        s, r, o = bound.group_masks()
        self.register_buffer("group_masks_s", s, persistent=False)
        self.register_buffer("group_masks_r", r, persistent=False)
        self.register_buffer("group_masks_o", o, persistent=False)
        self.register_buffer("group_of_relation", bound.group_of_relation, persistent=False)
        self.register_buffer("entity_class", bound.entity_class, persistent=False)
        self.register_buffer("subject_class", bound.subject_class, persistent=False)
        self.register_buffer("object_class", bound.object_class, persistent=False)

    # --- properties --------------------------------------------------------------------------------
    @property
    def form(self) -> str:
        return self.compiled.form

    @property
    def variables(self) -> list[str]:
        return self.compiled.variables

    @property
    def domains(self) -> dict[str, int]:
        return self.compiled.domains

    @property
    def device(self) -> torch.device:
        return self.entity_class.device

    def constraint_circuit(self) -> Circuit:
        """The constraint circuit ``c``, compatible with the model's circuit."""
        return constraint_circuit(self.bound, like=self.compiled.circuit)

    @property
    def circuit(self) -> Circuit:
        """The constrained model as one IR circuit, ``φ · c`` (built once, sharing the parameters).

        Its square is ``φ² · c`` (``c² = c``), so ``ckg.compile(circuit, form)`` is this model too;
        the queries here avoid its ``K·G``-wide layers.
        """
        if self._product is None:
            self._product = multiply(self.compiled.circuit, self.constraint_circuit())
        return self._product

    # --- queries -----------------------------------------------------------------------------------
    def consistent(self, x: Tensor) -> Tensor:
        """``c(x)`` as bool for full assignments ``x`` ``(B, 3)`` in ``variables`` order."""
        ev, _ = self._ids(self._columns(x))
        return self._allowed_full(ev)

    def score(self, x: Tensor) -> Tensor:
        """``φ(x) · c(x)`` for full assignments ``x`` ``(B, 3)``."""
        return self.compiled.score(x) * self.consistent(x).to(self._dtype)

    def log_partition(self) -> Tensor:
        """``log Σ_x φ(x)² c(x)`` (squared) or ``log Σ_x φ(x) c(x)`` (monotone); differentiable."""
        return self._log_mass({v: None for v in KG_VARIABLES}, 1)[0]

    def log_prob(self, x: Tensor) -> Tensor:
        """``log p(x)`` for full assignments ``x`` ``(B, 3)``; ``-inf`` where the schema is broken."""
        ev, batch = self._ids(self._columns(x))
        return self._log_mass(ev, batch) - self.log_partition()

    def log_marginal(self, **given: Ids) -> Tensor:
        """``log p(given)``, the other variables summed out. Shape ``(B,)``."""
        ev, batch = self._ids(given)
        return self._log_mass(ev, batch) - self.log_partition()

    def log_conditional(self, target: str, **given: Ids) -> Tensor:
        """``log p(target = x | given)`` for every value ``x``: ``(B, |target|)``, ``-inf`` if forbidden.

        Raises :class:`EvidenceError` naming the schema rule when ``given`` itself is impossible.
        In ``score`` form: ``log_softmax`` of the scores with forbidden values at ``-inf``.
        """
        ev, batch = self._ids(given, target)
        if all(ev[v] is not None for v in KG_VARIABLES if v != target):
            values = self.score_all(target, **given)
        else:
            self._require_normalised(f"log_conditional of {target!r} with unobserved variables")
            size = self.domains[target]
            expanded = {
                v: (None if i is None else i.repeat_interleave(size)) for v, i in ev.items()
            }
            expanded[target] = torch.arange(size, device=self.device).repeat(batch)
            values = self._log_mass(expanded, batch * size).reshape(batch, size)
        norm = torch.logsumexp(values, dim=1, keepdim=True)
        self._check_possible(norm[:, 0], ev)
        return values - norm

    def log_conditional_of(self, target: str, value: Ids, **given: Ids) -> Tensor:
        """``log p(target = value | given)`` for the observed value only, shape ``(B,)``.

        The pseudo-log-likelihood term. Squared, every other variable observed:
        ``2 log|φ| + log c - log qᵀ G_w q`` where ``G_w = Σ_x w[x] T[x]ᵀ T[x]`` is the target's Gram
        restricted to the values the schema allows (weighted evidence), independent of ``|target|``
        per query.
        """
        if self.form == "score":
            rows = self.log_conditional(target, **given)
            ev, _ = self._ids({target: value}, batch_hint=rows.shape[0])
            return rows.gather(1, ev[target].expand(rows.shape[0]).unsqueeze(1))[:, 0]
        ev, batch = self._ids({**given, target: value})
        norm = self._class_normaliser(target, ev) if self.form == "squared" else None
        if norm is None:
            norm = self._log_mass({**ev, target: None}, batch)
        self._check_possible(norm, {**ev, target: None})
        full = memoised_in_step(  # the PLL's three terms share it
            self, "log φ² c", [ev[v] for v in KG_VARIABLES], lambda: self._log_mass(ev, batch)
        )
        return full - norm

    def score_all(self, target: str, **given: Ids) -> Tensor:
        """The model's scores over every value of ``target`` plus ``log c``: ``-inf`` where forbidden.

        ``φ`` (score form; so forbidden values score ``-inf``), ``log φ`` (monotone) or ``log φ²``
        (squared). Every other variable must be observed. ``O(B K |target|)``.
        """
        ev, _ = self._ids(given, target)
        values = self.compiled.score_all(target, **{v: i for v, i in ev.items() if i is not None})
        return values + self._log_c_over(target, ev)

    def topk(self, target: str, k: int = 10, **given: str | int) -> list[Prediction]:
        """The ``k`` most probable values of ``target`` given named (or id) evidence, by name.

        ``topk("o", s="loxoprofen", r="interacts", k=10)``. Unobserved variables other than the
        target are summed out. An unknown name, or evidence the schema forbids, raises
        :class:`EvidenceError` saying which and why.
        """
        if target not in KG_VARIABLES:
            raise EvidenceError(
                f"unknown target {target!r}; the variables are {list(KG_VARIABLES)}"
            )
        if isinstance(k, bool) or not isinstance(k, int) or k < 1:
            raise EvidenceError(f"k must be a positive integer, got {k!r}")
        ids = {v: self._resolve(v, x) for v, x in given.items()}
        with torch.no_grad():
            probs = self.log_conditional(target, **ids)[0].exp()
        top = torch.topk(probs, min(k, probs.numel()))
        names = self.bound.relation_names if target == "r" else self.bound.entity_names
        return [
            Prediction(names[i], i, p)
            for i, p in zip(top.indices.tolist(), top.values.tolist(), strict=True)
            if p > 0
        ]

    def sample(
        self,
        num_samples: int,
        given: Mapping[str, Ids] | None = None,
        generator: torch.Generator | None = None,
    ) -> Tensor:
        """Exact samples ``(N, 3)`` of ``p(· | given)``: never a triple that breaks the schema.

        The chain rule over this module's exact conditionals (:func:`circuitkg.sampling.sample_sequential`),
        for squared and monotone models alike: ``p(s)``, ``p(r | s)`` per distinct ``s``,
        ``p(o | s, r)`` per distinct ``(s, r)``.
        """
        given = {
            v: self._resolve(v, x) if isinstance(x, str) else x for v, x in (given or {}).items()
        }
        return sample(self, num_samples, given=given, generator=generator)

    # --- plans -------------------------------------------------------------------------------------
    def _log_mass(self, ev: dict[str, Tensor | None], batch: int) -> Tensor:
        """``log M(e)`` per row (module docstring): ``-inf`` where ``e`` breaks the schema."""
        self._require_normalised("this query")
        s, r, o = ev["s"], ev["r"], ev["o"]
        rows = torch.arange(batch, device=self.device)
        if r is not None:
            groups = self.group_of_relation[r]
            slots = torch.zeros_like(rows)
        elif s is not None and o is not None:
            groups, slots = None, torch.zeros_like(rows)
        else:
            num_groups = self.group_masks_r.shape[0]
            groups = torch.arange(num_groups, device=self.device).repeat(batch)
            rows, slots = rows.repeat_interleave(num_groups), groups
        base: dict[str, Tensor] = {}
        keep = torch.ones_like(rows, dtype=torch.bool)
        if groups is None:
            allowed_r = self._relation_allowed(s, o)
            keep &= allowed_r.any(dim=1)
            base["r"] = allowed_r.to(self._dtype)
        for var, masks in (
            ("s", self.group_masks_s),
            ("r", self.group_masks_r),
            ("o", self.group_masks_o),
        ):
            if ev[var] is not None:
                base[var] = ev[var][rows]
                if groups is not None and var != "r":
                    keep &= masks[groups, ev[var][rows]]
            elif var not in base:
                # an empty mask has no mass (and no log 0 to differentiate)
                keep &= masks[groups].any(dim=1)
                base[var] = masks[groups].to(self._dtype)
        dense = torch.full(
            (batch, int(slots.max()) + 1), -torch.inf, dtype=self._dtype, device=self.device
        )
        if bool(keep.any()):
            if not bool(keep.all()):
                base = {v: x[keep] for v, x in base.items()}
            mass = self._unconstrained_log_mass(base)
            dense = dense.index_put((rows[keep], slots[keep]), mass)
        return torch.logsumexp(dense, dim=1)

    def _class_normaliser(self, target: str, ev: dict[str, Tensor]) -> Tensor | None:
        """The PLL normaliser from the allowed values' rows (:mod:`circuitkg.constraints.pll`),
        or ``None`` where that plan does not apply (a target read through several tables)."""
        if len(self.compiled.expansions.bases(target)) != 1:
            return None
        given = {v: i for v, i in ev.items() if v != target}
        if target == "r":
            mask = self._relation_allowed(ev["s"], ev["o"])
            return masked_normaliser(self.compiled, target, mask, given)
        anchor, other = ("s", self.subject_class) if target == "o" else ("o", self.object_class)
        anchor_ok = other[ev["r"], self.entity_class[ev[anchor]]]
        groups = self.group_of_relation[ev["r"]]
        allowed = self._allowed_runs(target)
        return grouped_normaliser(self.compiled, target, groups, anchor_ok, allowed, given)

    def _allowed_runs(self, side: str) -> AllowedRuns:
        """The entities in an order where each signature group's allowed ``side`` is a few runs."""
        key = (side, self.device)
        if key not in self._allowed:
            masks = self.group_masks_s if side == "s" else self.group_masks_o
            self._allowed[key] = AllowedRuns.of(masks)
        return self._allowed[key]

    def _unconstrained_log_mass(self, given: Mapping[str, Tensor]) -> Tensor:
        """``log Σ w φ²`` (or ``Σ w φ``) with ids and weight evidence: the executor's weighted evidence."""
        return self.compiled.log_mass(**given)

    def _allowed_full(self, ev: dict[str, Tensor]) -> Tensor:
        s_cls, o_cls = self.entity_class[ev["s"]], self.entity_class[ev["o"]]
        return self.subject_class[ev["r"], s_cls] & self.object_class[ev["r"], o_cls]

    def _relation_allowed(self, s: Tensor, o: Tensor) -> Tensor:
        """``(B, m)``: relations allowing subject ``s[b]`` and object ``o[b]``."""
        return (
            self.subject_class[:, self.entity_class[s]] & self.object_class[:, self.entity_class[o]]
        ).T

    def _log_c_over(self, target: str, ev: dict[str, Tensor | None]) -> Tensor:
        """``log c`` (``0``/``-inf``) over every value of ``target``, the others observed: ``(B, |t|)``."""
        if target == "r":
            allowed = self._relation_allowed(ev["s"], ev["o"])
        else:
            anchor, own, other = ("s", self.object_class, self.subject_class)
            if target == "s":
                anchor, own, other = ("o", self.subject_class, self.object_class)
            r = ev["r"]
            anchor_ok = other[r, self.entity_class[ev[anchor]]]
            allowed = own[r][:, self.entity_class] & anchor_ok.unsqueeze(1)
        zero = torch.zeros((), dtype=self._dtype, device=self.device)
        return torch.where(allowed, zero, -torch.inf)

    # --- evidence ------------------------------------------------------------------------------------
    @property
    def _dtype(self) -> torch.dtype:
        return self.compiled.circuit.tables()[0].dtype

    def _require_normalised(self, what: str) -> None:
        if self.form == "score":
            raise FormError(
                f"{what} needs a normalised model, but this one is in 'score' form; compile the "
                "model with form='squared' or form='monotone'"
            )

    def _columns(self, x: Tensor) -> dict[str, Tensor]:
        x = torch.as_tensor(x)
        if x.ndim != 2 or x.shape[1] != 3:
            raise EvidenceError(
                f"expected assignments of shape (B, 3) for variables {self.variables}, got {tuple(x.shape)}"
            )
        return {v: x[:, i] for i, v in enumerate(self.variables)}

    def _ids(
        self, given: Mapping[str, Ids | None], target: str | None = None, batch_hint: int = 1
    ) -> tuple[dict[str, Tensor | None], int]:
        """Validated long ids ``(B,)`` per variable (``None`` = unobserved) and the batch size
        (:func:`circuitkg.evidence.validated`; the schema's masks are this circuit's weighted
        evidence, so float weight rows are refused)."""
        return validated(
            given, KG_VARIABLES, self.domains, self.device, target=target, min_batch=batch_hint
        )

    def _check_possible(self, log_mass: Tensor, ev: dict[str, Tensor | None]) -> None:
        """Raise :class:`EvidenceError` on the first row whose evidence has probability zero."""
        impossible = torch.isneginf(log_mass.detach())
        if not bool(impossible.any()):
            return
        b = int(impossible.nonzero()[0, 0])
        ids = {v: (None if i is None else int(i[b])) for v, i in ev.items()}
        reason = self.bound.explain(**ids) or "the model gives it zero mass"
        shown = ", ".join(f"{v}={self._name(v, i)}" for v, i in ids.items() if i is not None)
        raise EvidenceError(
            f"the evidence ({shown or 'none'}) of row {b} is impossible under the schema: {reason}"
        )

    def _name(self, var: str, index: int) -> str:
        names = self.bound.relation_names if var == "r" else self.bound.entity_names
        return repr(names[index])

    def _resolve(self, var: str, value: str | int) -> int:
        if not isinstance(value, str):
            return int(value)
        to_id = self.bound.relation_to_id if var == "r" else self.bound.entity_to_id
        if value not in to_id:
            kind = "relation" if var == "r" else "entity"
            raise EvidenceError(f"unknown {kind} {value!r}{_hint(value, to_id)}")
        return to_id[value]

    def extra_repr(self) -> str:
        return f"form={self.form!r}, schema={self.bound!r}"


def constrain(
    model,
    schema: DomainSchema | BoundSchema,
    kg=None,
    missing: MissingPolicy = "unconstrained",
    strict: bool = True,
) -> ConstrainedCircuit:
    """Condition a KGE model (or a :class:`CompiledCircuit`) on a schema.

    ``schema`` is a :class:`BoundSchema`, or a :class:`DomainSchema` bound to ``kg`` here (with
    ``missing`` and ``strict`` as in :meth:`DomainSchema.bind`). The result shares the model's
    parameters: training it trains the model under the constraint; wrapping a trained model is
    post-hoc conditioning.
    """
    compiled = model if isinstance(model, CompiledCircuit) else model.compile()
    if isinstance(schema, DomainSchema):
        if kg is None:
            raise ValueError(
                "binding a DomainSchema needs the knowledge graph: constrain(model, schema, kg)"
            )
        schema = schema.bind(kg, missing=missing, strict=strict)
    return ConstrainedCircuit(compiled, schema)
