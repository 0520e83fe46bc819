"""``CompiledCircuit``: one torch module that answers every query on a circuit.

``form`` says how the circuit output ``φ`` becomes a distribution:

* ``"score"``: ``φ`` as is (a KGE score). ``log_conditional`` is the softmax over the target's values
  (what 1-vs-all training uses); ``log_prob``/``log_partition`` are refused (unnormalised).
* ``"monotone"``: ``p = φ / Z``; needs a monotone circuit; evaluated in log space.
* ``"squared"``: ``p = φ² / Z``; any signs; evaluated in scaled linear space.

Plans (n = |target domain|, K = width, B = batch), chosen per query:

==============================  ==================================================  ==============
query                           plan                                                cost (CP)
==============================  ==================================================  ==============
``score``/``log_prob``          forward pass, square if squared                     O(BK)
``log_partition`` (squared)     pair mode over Gram matrices                        O((n+m)K²)
``log_partition`` (monotone)    forward pass over column sums                       O((n+m)K)
``log_marginal``                monotone: column sums; squared, one variable out:   O(BK²)
                                adjoint ``q`` then ``qᵀGq``; else pair mode
``log_conditional`` (all        adjoint ``q`` (one forward, one backward pass),     O(BKn)
values of the target)           then ``q @ Tᵀ`` in chunks of table rows
``log_conditional_of`` (PLL)    adjoint ``q``; squared: ``φ² / qᵀ G q``              O(nK² + BK²)
==============================  ==================================================  ==============

When evidence leaves other variables unobserved, those are integrated (column sums in log space for
monotone circuits; pair mode for squared circuits, with the target enumerated in batch chunks).
Everything is differentiable and runs on whichever device the parameters are on.
"""

from __future__ import annotations

import itertools
from collections.abc import Callable

import torch
from torch import Tensor, nn

from circuitkg.errors import EvidenceError, FormError
from circuitkg.evidence import require_mass, validated
from circuitkg.executor.enumerated import enumerated_log_mass, row_max_in_range
from circuitkg.executor.expansions import Expansions
from circuitkg.executor.folds import folded_coefficients
from circuitkg.executor.grams import GramCache
from circuitkg.executor.names import Prediction, Vocabulary, resolve, top_values
from circuitkg.executor.pairs import PairEvaluator
from circuitkg.executor.passes import Evidence, Plan, adjoint, forward, is_integrated
from circuitkg.executor.semirings import LinearSemiring, LogSemiring, PlainSemiring
from circuitkg.executor.step import memoised_in_step
from circuitkg.executor.summation import fold_to_bases, log_sum_out
from circuitkg.forms import check_form
from circuitkg.ir.circuit import Circuit
from circuitkg.numerics import (
    Scaled,
    all_finite,
    is_unscaled,
    log_in_range,
    robustly,
    row_norms_in_range,
    scaled_sum,
)
from circuitkg.params.tables import Table
from circuitkg.sampling import sample

PLAIN = PlainSemiring()
#: ids (int or long tensor ``(B,)``) or summation weights (float tensor ``(B, |X|)`` or ``(|X|,)``)
EvidenceValue = Tensor | int


class CompiledCircuit(nn.Module):
    """A circuit lowered to torch, with its form (``score``, ``monotone`` or ``squared``).

    ``batch_chunk`` bounds how many query rows are processed at once in the plans whose memory
    grows with ``B · n`` or ``B · K²`` (all-value conditionals, pair-mode marginals).
    """

    def __init__(
        self,
        circuit: Circuit,
        form: str = "squared",
        batch_chunk: int = 1024,
        vocabulary: Vocabulary | None = None,
    ) -> None:
        super().__init__()
        check_form(form)
        circuit.require("smooth", "decomposable", operation=f"compiling the {form} form")
        if form == "monotone":
            circuit.require("monotone", operation="the monotone form")
        if form == "squared":
            circuit.require("structured-decomposable", operation="the squared form")
        if circuit.output.width != 1:
            raise FormError(
                f"the output layer {circuit.output.name!r} has width {circuit.output.width}; a circuit needs one output unit"
            )
        self.circuit = circuit
        self.form = form
        self.batch_chunk = int(batch_chunk)
        self.parameterisations = circuit.modules()
        self.plan = Plan(circuit)
        self.semiring = LogSemiring() if form == "monotone" else LinearSemiring()
        self.grams = GramCache()
        #: the names of each variable's values (queries then take names where they take ids)
        self.vocabulary = vocabulary
        if vocabulary is not None:
            vocabulary.check(self.domains)
        #: how a squared query sums one variable out: ``"gram"``, ``"values"`` or ``"auto"`` (the
        #: cheaper by :mod:`~circuitkg.executor.summation`'s count)
        self.summation_plan = "auto"
        # a parameter stays the same object when the module moves (its data is swapped), so it
        # tells the device without walking the module tree on every query; kept in a list so that
        # nn.Module does not register it a second time
        self._device_reference = list(itertools.islice(self.parameters(), 1))

    # --- properties --------------------------------------------------------------------------------
    @property
    def variables(self) -> list[str]:
        return self.circuit.variables

    @property
    def domains(self) -> dict[str, int]:
        return self.circuit.domains

    @property
    def device(self) -> torch.device:
        if self._device_reference:
            return self._device_reference[0].device
        for p in self.parameters():
            return p.device
        for b in self.buffers():
            return b.device
        return torch.device("cpu")

    @property
    def dtype(self) -> torch.dtype:
        """The dtype queries compute in: the parameters' (the first table's if there are none)."""
        if self._device_reference:
            return self._device_reference[0].dtype
        return next(iter(self.circuit.tables())).dtype

    @property
    def normalised(self) -> bool:
        return self.form != "score"

    def extra_repr(self) -> str:
        return f"form={self.form!r}, variables={self.variables}, domains={self.domains}"

    # --- queries -----------------------------------------------------------------------------------
    def score(self, x: Tensor) -> Tensor:
        """``φ(x)`` for full assignments ``x`` of shape ``(B, V)`` (columns in ``variables`` order)."""
        evidence = self._full_evidence(x)
        if self.form == "monotone":
            return torch.exp(self._output(evidence)[:, 0])
        return robustly(lambda: self._output(evidence).dense()[:, 0], all_finite)

    def log_partition(self) -> Tensor:
        """``log Z``: ``log Σ_x φ(x)`` (monotone) or ``log Σ_x φ(x)²`` (squared); differentiable."""
        self._require_normalised("log_partition")
        evidence = {v: None for v in self.variables}
        if self.form == "monotone":
            return self._output(evidence)[0, 0]
        return robustly(
            lambda: (
                PairEvaluator(self.plan, evidence, self.grams.query()).root().log_abs().reshape(())
            ),
            log_in_range,  # finite is not enough: a subnormal Z is finite but imprecise
        )

    def log_prob(self, x: Tensor) -> Tensor:
        """``log p(x)`` for full assignments ``x`` of shape ``(B, V)``."""
        self._require_normalised("log_prob")
        return self._log_unnormalised(self._full_evidence(x)) - self.log_partition()

    def log_marginal(self, **given: EvidenceValue) -> Tensor:
        """``log p(given)``: the variables not given are summed out. Shape ``(B,)``."""
        self._require_normalised("log_marginal")
        return self.log_mass(**given) - self.log_partition()

    def log_mass(self, **given: EvidenceValue) -> Tensor:
        """The unnormalised mass of ``given``: ``log Σ_{not given} w·φ`` or ``log Σ w·φ²``, ``(B,)``.

        ``given`` holds ids or weight rows ``(B, |X|)`` (a weight row sums ``x`` with weights
        ``w[x]``, a 0/1 row restricts ``x`` to a subset). ``log_mass()`` with nothing given is
        ``log Z``; ``log_marginal = log_mass - log Z``. Same cost as :meth:`log_marginal`.
        """
        self._require_normalised("log_mass")
        evidence, _ = self._evidence(given)
        return self._log_unnormalised(evidence)

    def log_conditional(self, target: str, **given: EvidenceValue) -> Tensor:
        """``log p(target = x | given)`` for every value ``x``: shape ``(B, |target|)``.

        In ``score`` form this is ``log_softmax`` of the scores over the target's values.
        """
        evidence, batch = self._evidence(given, target=target)
        require_mass(evidence, target)
        return self._by_chunks(
            lambda chunk, n: self._log_conditional_chunk(target, chunk, n), evidence, batch
        )

    def score_all(self, target: str, **given: EvidenceValue) -> Tensor:
        """Scores over every value of ``target`` (``φ``; ``log φ`` monotone; ``log φ²`` squared).

        For ranking: higher is better and the unnormalised forms are cheaper than conditionals.
        Other unobserved variables are not allowed here.
        """
        evidence, batch = self._evidence(given, target=target)
        if any(is_integrated(i) for v, i in evidence.items() if v != target):
            raise EvidenceError("score_all needs every variable except the target observed")
        return self._by_chunks(
            lambda chunk, n: self._target_values(target, chunk, n), evidence, batch
        )

    def log_conditional_of(
        self, target: str, value: EvidenceValue, **given: EvidenceValue
    ) -> Tensor:
        """``log p(target = value | given)`` for the observed value only, shape ``(B,)``.

        The pseudo-log-likelihood term. Squared: ``2 log|φ| - log qᵀ G q`` with one Gram matrix of
        the target's table, independent of ``|target|`` per query.
        """
        evidence, batch = self._evidence({**given, target: value})
        require_mass(evidence, target)
        if self.form == "score" or any(
            is_integrated(v) for k, v in evidence.items() if k != target
        ):
            rows = self.log_conditional(target, **given)
            return rows.gather(1, evidence[target].expand(rows.shape[0]).unsqueeze(1))[:, 0]
        full = memoised_in_step(  # the PLL's three terms share it
            self, "log φ²", [evidence[v] for v in self.variables],
            lambda: self._log_unnormalised(evidence),
        )  # fmt: skip
        norm = self._log_unnormalised({**evidence, target: None})
        return full - norm

    def topk(self, target: str, k: int = 10, **given: str | int) -> list[Prediction]:
        """The ``k`` most probable values of ``target`` given names (with a bound vocabulary) or
        ids: ``c.topk("o", s="usa", r="embassy", k=3)``; variables not given are summed out.
        One all-value conditional, ``O(n K)``."""
        return top_values(
            self.log_conditional, self.vocabulary, self.variables, self.device, target, k, given
        )

    def sample(
        self,
        num_samples: int,
        *,
        given: dict[str, EvidenceValue] | None = None,
        generator: torch.Generator | None = None,
    ) -> Tensor:
        """Exact samples ``(num_samples, V)`` from ``p(rest | given)``, given names or ids:
        :func:`circuitkg.sampling.sample`."""
        given = {v: self._resolve(v, x) for v, x in (given or {}).items()}
        return sample(self, num_samples, given=given, generator=generator)

    @property
    def expansions(self) -> Expansions:
        """The public plan samplers read: expansions of ``φ`` in one variable's base rows
        (:mod:`circuitkg.executor.expansions`)."""
        return Expansions(self.plan, self.form, self.grams, self._evidence, self.dtype, self.device)

    # --- plans ---------------------------------------------------------------------------------------
    def _by_chunks(
        self, compute: Callable[[Evidence, int], Tensor], evidence: Evidence, batch: int
    ) -> Tensor:
        """``compute(rows of evidence, number of rows)`` over chunks of ``batch_chunk`` query rows,
        concatenated along the batch."""
        if batch <= self.batch_chunk:
            return compute(evidence, batch)
        out = []
        for start in range(0, batch, self.batch_chunk):
            chunk = {v: _rows(i, start, self.batch_chunk) for v, i in evidence.items()}
            out.append(compute(chunk, min(self.batch_chunk, batch - start)))
        return torch.cat(out)

    def _pass_semiring(self):
        """The forward and adjoint passes' semiring: in :func:`robustly`'s unscaled attempt of a
        score or squared circuit, plain tensors (:class:`PlainSemiring`)."""
        return PLAIN if self.form != "monotone" and is_unscaled() else self.semiring

    def _output(self, evidence: Evidence):
        semiring = self._pass_semiring()
        out = forward(self.plan, semiring, evidence)[id(self.circuit.output)]
        return Scaled.of(out) if semiring is PLAIN else out

    def _log_unnormalised(self, evidence: Evidence) -> Tensor:
        """``log Σ_{unobserved} φ`` (monotone) or ``log Σ_{unobserved} φ²`` (squared)."""
        if self.form == "monotone":
            return self._log_unnormalised_plan(evidence)
        # Σ φ² from Grams: see log_in_range; full assignments (2 log|φ|): φ itself in range
        integrated = any(is_integrated(i) for i in evidence.values())
        check = log_in_range if integrated else _phi_in_range
        return robustly(lambda: self._log_unnormalised_plan(evidence), check)

    def _log_unnormalised_plan(self, evidence: Evidence) -> Tensor:
        missing = [v for v, i in evidence.items() if is_integrated(i)]
        batch = _batch_size(evidence)
        if self.form == "monotone":
            return self._output(evidence)[:, 0].expand(batch)
        if not missing:
            return 2.0 * self._output(evidence).log_abs()[:, 0]
        if len(missing) == 1:
            return self._quadratic_form(missing[0], evidence, batch)
        grams = self.grams.query()
        return self._by_chunks(
            lambda chunk, _: PairEvaluator(self.plan, chunk, grams).root().log_abs().reshape(-1),
            evidence,
            batch,
        ).expand(batch)

    def _coefficients(self, target: str, evidence: Evidence, batch: int):
        semiring = self._pass_semiring()
        values = forward(self.plan, semiring, evidence, skip=target)
        coefs = adjoint(self.plan, semiring, values, target, batch, self.dtype, self.device)
        return [(layer, Scaled.of(q)) for layer, q in coefs] if semiring is PLAIN else coefs

    def _base_coefficients(
        self, target: str, evidence: Evidence, batch: int
    ) -> list[tuple[Table, Scaled]]:
        """``[(base, c)]`` with ``φ(x, e_b) = Σ c_b · base[x]``: the circuit's linear fold
        (:mod:`~circuitkg.executor.folds`) where every other variable is observed, else the
        adjoint's coefficients folded into their bases."""
        folded = folded_coefficients(self.circuit, target, evidence)
        if folded is not None:
            return folded
        return fold_to_bases(self._coefficients(target, evidence, batch))

    def _quadratic_form(self, target: str, evidence: Evidence, batch: int) -> Tensor:
        """``log Σ_x w[x] φ(x, e)²`` for the one summed-out variable, by the Gram or the all-values
        plan, whichever :mod:`~circuitkg.executor.summation` counts cheaper (``summation_plan``)."""
        bases = self._base_coefficients(target, evidence, batch)
        grams = self.grams.query()
        plan = self.summation_plan
        return log_sum_out(self.circuit, target, bases, evidence[target], grams, plan).expand(batch)

    def _target_values(self, target: str, evidence: Evidence, batch: int) -> Tensor:
        """``φ`` (score), ``log φ`` (monotone) or ``log φ²`` (squared) over every target value."""
        if self.form == "monotone":
            coefs = self._coefficients(target, evidence, batch)
            parts = [layer.table.log_contract(q) for layer, q in coefs]
            return torch.logsumexp(torch.stack(parts), dim=0) if len(parts) > 1 else parts[0]
        total, _ = self._target_contraction(target, evidence, batch)
        if self.form == "score":
            return total.dense()
        if torch.is_grad_enabled():
            return 2.0 * total.log_abs()
        # no autograd: the same numbers in place, one pass fewer over the (B, |X|) scores each
        return total.value.abs_().log_().mul_(2.0).add_(2.0 * total.log_scale.reshape(-1, 1))

    def _target_contraction(
        self, target: str, evidence: Evidence, batch: int
    ) -> tuple[Scaled, Tensor]:
        """``φ`` over every target value, ``Σ_l q_l T_lᵀ`` of shape ``(B, |X|)`` with one scale a
        row, and the 2-norms ``(B, 1)`` of its rows.

        Computed unscaled and kept when every row is in range (:func:`row_norms_in_range`), else
        recomputed with scaling, each row's largest entry brought to 1. Either way the squares of
        a row sum to a finite, positive number.
        """

        def contract() -> tuple[Scaled, Tensor]:
            bases = self._base_coefficients(target, evidence, batch)
            total = scaled_sum([base.contract(c) for base, c in bases]).normalised()
            value = total.value.detach() if total.value.requires_grad else total.value
            return total, torch.linalg.vector_norm(value, dim=1, keepdim=True)

        return robustly(contract, lambda out: row_norms_in_range(out[1], out[0].value.shape[1]))

    def _log_conditional_chunk(self, target: str, evidence: Evidence, batch: int) -> Tensor:
        others_missing = [v for v, i in evidence.items() if is_integrated(i) and v != target]
        if others_missing and self.form == "squared":
            grams = self.grams.query()
            log_mass = robustly(
                lambda: enumerated_log_mass(self.plan, evidence, grams, target, batch),
                row_max_in_range,
            )
            return log_mass - torch.logsumexp(log_mass, dim=1, keepdim=True)
        if self.form == "squared" and not torch.is_grad_enabled():
            # log(φ² / Σ φ²) = 2 (log|φ| - log‖φ‖): a row norm instead of a logsumexp, in place
            phi, norm = self._target_contraction(target, evidence, batch)
            log_abs = phi.value.abs_().log_()
            return torch.add(norm.log_().mul_(-2.0), log_abs, alpha=2.0, out=log_abs)
        values = self._target_values(target, evidence, batch)
        if self.form == "score":
            return torch.log_softmax(values, dim=1)
        return values - torch.logsumexp(values, dim=1, keepdim=True)

    # --- evidence ------------------------------------------------------------------------------------
    def _require_normalised(self, what: str) -> None:
        if self.form == "score":
            raise FormError(
                f"{what} needs a normalised circuit, but this one is in 'score' form (unnormalised); "
                "compile the model with form='squared' or form='monotone'"
            )

    def _full_evidence(self, x: Tensor) -> Evidence:
        x = torch.as_tensor(x, device=self.device)
        if x.ndim != 2 or x.shape[1] != len(self.variables):
            raise EvidenceError(
                f"expected assignments of shape (B, {len(self.variables)}) for variables {self.variables}, "
                f"got {tuple(x.shape)}"
            )
        evidence, _ = self._evidence({v: x[:, i] for i, v in enumerate(self.variables)})
        return evidence

    def _evidence(
        self, given: dict[str, EvidenceValue], target: str | None = None
    ) -> tuple[Evidence, int]:
        """Ids ``(B,)`` or weight rows ``(B, |X|)`` per variable, validated
        (:func:`circuitkg.evidence.validated`; names through the bound vocabulary)."""
        return validated(
            given, self.variables, self.domains, self.device, target=target,
            weights_dtype=self.dtype, resolve=self._resolve,
        )  # fmt: skip

    def _resolve(self, var: str, value: EvidenceValue) -> EvidenceValue:
        return resolve(self.vocabulary, var, value)


def _phi_in_range(log_phi_squared: Tensor) -> bool:
    """``2 log|φ|`` of full assignments: ``φ`` in range (:func:`log_in_range`)."""
    return log_in_range(log_phi_squared / 2)


def _batch_size(evidence: Evidence) -> int:
    sizes = {i.shape[0] for i in evidence.values() if i is not None}
    return max(sizes) if sizes else 1


def _rows(index: Tensor | None, start: int, size: int) -> Tensor | None:
    return None if index is None else index[start : start + size]


__all__ = ["CompiledCircuit", "Scaled"]
