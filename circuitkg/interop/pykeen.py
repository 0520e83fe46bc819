"""PyKEEN interop: triples factories ↔ knowledge graphs, and PyKEEN models compiled to circuits.

* :func:`to_triples_factory` / :func:`to_triples_factories` give PyKEEN ``TriplesFactory`` objects
  for a :class:`~circuitkg.data.KnowledgeGraph`, and :func:`from_triples_factory` /
  :func:`from_dataset` go back; entity and relation ids are preserved both ways.
* :func:`compile_pykeen` turns a (trained) PyKEEN ``DistMult``, ``ComplEx``, ``RESCAL``,
  ``TuckER``, ``CP`` or ``TransE`` into the circuitkg model with the same score function:
  ``compile_pykeen(m).compile().score(hrt)`` equals ``m.score_hrt(hrt)`` (eval mode) up to
  float rounding, ids unchanged. In ``form="squared"`` the same parameters define the GeKC
  ``p = φ² / Z``, a start for fine-tuning into a normalised model.

PyKEEN is an optional dependency (``pip install circuitkg[pykeen]``), imported when first needed.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import torch

from circuitkg.compilers import CP, RESCAL, ComplEx, DistMult, KGEModel, TransE, TuckER
from circuitkg.data.kg import KnowledgeGraph
from circuitkg.errors import CircuitKGError, MissingExtraError

__all__ = [
    "PyKEENCompileError",
    "compile_pykeen",
    "from_dataset",
    "from_triples_factory",
    "to_triples_factories",
    "to_triples_factory",
]

#: the PyKEEN model classes :func:`compile_pykeen` accepts, by class name
SUPPORTED_MODELS = ("DistMult", "ComplEx", "RESCAL", "TuckER", "CP", "TransE")
#: PyKEEN's split names for circuitkg's
_PYKEEN_SPLITS = {"train": "training", "valid": "validation", "test": "testing"}


class PyKEENCompileError(CircuitKGError, ValueError):
    """A PyKEEN model (or a configuration of it) has no exact circuitkg counterpart."""


def _pykeen():
    try:
        import pykeen.models
        import pykeen.triples
    except ImportError:  # pragma: no cover - exercised only without the extra
        raise MissingExtraError(
            "circuitkg.interop.pykeen needs PyKEEN: pip install 'circuitkg[pykeen]'"
        ) from None
    return pykeen


# --- data ------------------------------------------------------------------------------------------
def to_triples_factory(kg: KnowledgeGraph, split: str = "train", **options: Any):
    """A PyKEEN ``TriplesFactory`` of ``kg``'s split ``split`` with ``kg``'s vocabularies and ids
    (``options`` go to ``TriplesFactory``, e.g. ``create_inverse_triples``)."""
    pykeen = _pykeen()
    return pykeen.triples.TriplesFactory(
        mapped_triples=kg.split(split).clone(),
        entity_to_id=dict(kg.entity_to_id),
        relation_to_id=dict(kg.relation_to_id),
        **options,
    )


def to_triples_factories(kg: KnowledgeGraph, **options: Any) -> dict[str, Any]:
    """One ``TriplesFactory`` per split of ``kg``, all sharing its vocabularies, keyed by PyKEEN's
    names (``training``, ``validation``, ``testing``; other splits keep their names): ready for
    ``pipeline(**to_triples_factories(kg), model=...)``."""
    return {
        _PYKEEN_SPLITS.get(s, s): to_triples_factory(kg, s, **options)
        for s in kg.splits
        if s in _PYKEEN_SPLITS
    }


def from_triples_factory(
    training, validation=None, testing=None, name: str = "pykeen", **others
) -> KnowledgeGraph:
    """A :class:`KnowledgeGraph` whose ids are ``training``'s (a PyKEEN ``TriplesFactory``, or a
    ``CoreTriplesFactory``, whose entities and relations are then named by their ids), with splits
    ``train``, ``valid``, ``test`` and any ``others`` (name → factory). Every factory must share
    ``training``'s vocabularies."""
    entities = _labels(training, "entity")
    relations = _labels(training, "relation")
    factories = {"train": training, "valid": validation, "test": testing, **others}
    splits = {}
    for split, factory in factories.items():
        if factory is None:
            continue
        if factory is not training and (
            _labels(factory, "entity") != entities or _labels(factory, "relation") != relations
        ):
            raise ValueError(f"split {split!r}: its factory has other vocabularies than training's")
        splits[split] = factory.mapped_triples.to(torch.long).cpu().clone()
    return KnowledgeGraph.from_vocabularies(name, entities, relations, splits)


def from_dataset(dataset, name: str | None = None) -> KnowledgeGraph:
    """A :class:`KnowledgeGraph` from a PyKEEN ``Dataset`` (``training``/``validation``/``testing``
    factories), ids preserved."""
    return from_triples_factory(
        dataset.training,
        getattr(dataset, "validation", None),
        dataset.testing,
        name=name or type(dataset).__name__.lower(),
    )


def _labels(factory, kind: str) -> list[str]:
    count = getattr(factory, "num_entities" if kind == "entity" else "num_relations")
    to_id = getattr(factory, f"{kind}_to_id", None)
    if to_id is None:  # a CoreTriplesFactory: no labels
        return [str(i) for i in range(count)]
    labels = sorted(to_id, key=to_id.__getitem__)
    if [to_id[x] for x in labels] != list(range(count)):
        raise ValueError(f"the factory's {kind} ids are not 0..{count - 1}")
    return labels


# --- models ----------------------------------------------------------------------------------------
def compile_pykeen(model, form: str = "score") -> KGEModel:
    """The circuitkg model with ``model``'s score function and (copied) parameters, ids unchanged.

    ``model`` is a PyKEEN ``DistMult``, ``ComplEx``, ``RESCAL``, ``TuckER``, ``CP`` or ``TransE``
    (trained or not). Scores are those of ``model`` in eval mode (no dropout; batch norms use their
    running statistics): representations are read through their normalisers, ComplEx's complex
    embeddings become ``[Re | Im]``, CP's ``(rank, dim)`` matrices become rank ``rank · dim``, and
    TuckER's batch norms, which are affine maps in eval mode, fold into a core one wider per mode
    (a constant feature 1 appended to every entity and relation). TransE must use the squared
    L2 distance (``scoring_fct_norm=2, power_norm=True``): other norms are not polynomial.

    ``form`` is ``"score"`` (the KGE itself) or ``"squared"`` (the same ``φ`` as a GeKC,
    ``p = φ² / Z``; not for TransE). Raises :class:`PyKEENCompileError` for other models or
    configurations, and for models trained with inverse triples.
    """
    pykeen = _pykeen()
    if form not in ("score", "squared"):
        raise PyKEENCompileError(f"form must be 'score' or 'squared', got {form!r}")
    kind = next((n for n in SUPPORTED_MODELS if isinstance(model, getattr(pykeen.models, n))), None)
    if kind is None:
        raise PyKEENCompileError(
            f"compile_pykeen supports PyKEEN {', '.join(SUPPORTED_MODELS)}; got "
            f"{type(model).__name__}"
        )
    if getattr(model, "use_inverse_triples", False):
        raise PyKEENCompileError(
            "the model was trained with inverse triples (create_inverse_triples=True); its "
            "relation table has inverse rows circuitkg does not model"
        )
    was_training = model.training
    model.eval()
    try:
        with torch.no_grad():
            compiled = _COMPILERS[kind](model, form)
    finally:
        model.train(was_training)
    return compiled


def _entities(model, index: int = 0) -> torch.Tensor:
    return model.entity_representations[index](indices=None).detach().cpu()


def _relations(model, index: int = 0) -> torch.Tensor:
    return model.relation_representations[index](indices=None).detach().cpu()


def _set(table, values: torch.Tensor) -> None:
    weight = table.weight
    weight.data.copy_(values.reshape(weight.shape).to(weight.dtype))


def _compile_distmult(model, form: str) -> KGEModel:
    e, r = _entities(model), _relations(model)
    out = DistMult(len(e), len(r), e.shape[1], form=form)
    _set(out.entity, e)
    _set(out.relation, r)
    return out


def _compile_complex(model, form: str) -> KGEModel:
    e, r = _entities(model), _relations(model)
    if not (e.is_complex() and r.is_complex()):
        raise PyKEENCompileError("expected ComplEx's representations to be complex tensors")
    out = ComplEx(len(e), len(r), e.shape[1], form=form)
    _set(out.entity, torch.cat([e.real, e.imag], dim=1))
    _set(out.relation, torch.cat([r.real, r.imag], dim=1))
    return out


def _compile_rescal(model, form: str) -> KGEModel:
    e, r = _entities(model), _relations(model)
    out = RESCAL(len(e), len(r), e.shape[1], form=form)
    _set(out.entity, e)
    _set(out.relation, r.flatten(1))  # W_r row-major: index a * K + b for e_s[a] e_o[b]
    return out


def _compile_cp(model, form: str) -> KGEModel:
    h, r, t = _entities(model, 0), _relations(model), _entities(model, 1)
    rank = h[0].numel()
    out = CP(len(h), len(r), rank, form=form)
    _set(out.subject, h.flatten(1))
    _set(out.relation, r.flatten(1))
    _set(out.object, t.flatten(1))
    return out


def _compile_transe(model, form: str) -> KGEModel:
    interaction = model.interaction
    if float(interaction.p) != 2.0 or not interaction.power_norm:
        raise PyKEENCompileError(
            f"TransE with scoring_fct_norm={interaction.p}, power_norm={interaction.power_norm} "
            "is not polynomial; circuitkg's TransE is -||h + r - t||², i.e. PyKEEN's "
            "TransE(scoring_fct_norm=2, power_norm=True)"
        )
    if form != "score":
        raise PyKEENCompileError("TransE has only the 'score' form")
    e, r = _entities(model), _relations(model)
    out = TransE(len(e), len(r), e.shape[1], form=form)
    _set(out.entity, e)
    _set(out.relation, r)
    return out


def _affine(batch_norm) -> tuple[torch.Tensor, torch.Tensor] | None:
    """``(a, b)`` with ``batch_norm(x) = a ⊙ x + b`` in eval mode, or None for no batch norm."""
    if batch_norm is None:
        return None
    if not batch_norm.track_running_stats or batch_norm.running_mean is None:
        raise PyKEENCompileError("TuckER's batch norms must track running statistics")
    scale = torch.rsqrt(batch_norm.running_var.detach().cpu().double() + batch_norm.eps)
    if batch_norm.affine:
        scale = scale * batch_norm.weight.detach().cpu().double()
    shift = -batch_norm.running_mean.detach().cpu().double() * scale
    if batch_norm.affine:
        shift = shift + batch_norm.bias.detach().cpu().double()
    return scale, shift


def _compile_tucker(model, form: str) -> KGEModel:
    interaction = model.interaction
    e, r = _entities(model).double(), _relations(model).double()
    core = interaction.core_tensor.detach().cpu().double()  # (d_e, d_r, d_e): head, relation, tail
    head_bn, out_bn = (
        _affine(interaction.head_batch_norm),
        _affine(interaction.head_relation_batch_norm),
    )
    if head_bn is None and out_bn is None:
        d_e, d_r = core.shape[0], core.shape[1]
        new_core = core
    else:
        # score = Σ_k (c_k z_k + d_k) t_k with z_k = Σ_ij W_ijk (a_i h_i + b_i) r_j: append a constant
        # 1 to every entity and relation and fold a, b, c, d into a core one wider per mode
        a, b = head_bn or (torch.ones(core.shape[0]), torch.zeros(core.shape[0]))
        c, d = out_bn or (torch.ones(core.shape[2]), torch.zeros(core.shape[2]))
        a, b, c, d = (x.double() for x in (a, b, c, d))
        d_e, d_r = core.shape[0] + 1, core.shape[1] + 1
        new_core = torch.zeros(d_e, d_r, d_e, dtype=torch.float64)
        new_core[:-1, :-1, :-1] = core * a[:, None, None] * c[None, None, :]
        new_core[-1, :-1, :-1] = torch.einsum("ijk,i,k->jk", core, b, c)
        new_core[-1, -1, :-1] = d
        e = torch.cat([e, torch.ones(len(e), 1, dtype=e.dtype)], dim=1)
        r = torch.cat([r, torch.ones(len(r), 1, dtype=r.dtype)], dim=1)
    out = TuckER(len(e), len(r), d_e, form=form, relation_rank=d_r)
    _set(out.entity, e)
    _set(out.relation, r)
    _set(out.core, new_core.reshape(1, -1))
    return out


_COMPILERS: Mapping[str, Any] = {
    "DistMult": _compile_distmult,
    "ComplEx": _compile_complex,
    "RESCAL": _compile_rescal,
    "TuckER": _compile_tucker,
    "CP": _compile_cp,
    "TransE": _compile_transe,
}
