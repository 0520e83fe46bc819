"""Sem@k: how often a model's top-k predictions respect the domain schema.

For a test triple ``(s, r, o)`` the ``"o"`` query ``(s, r, ?)`` takes the ``k`` entities the model
scores highest, over *all* entities and unfiltered, and counts those that are allowed objects of
``r`` (their types meet ``r``'s object types); the ``"s"`` query ``(?, r, o)`` likewise with subject
types. Following Hubert et al. (2023, "Sem@K: is my knowledge graph embedding model
semantic-aware?") and paper 004,

    Sem@k = mean over queries of  |{e in top-k : e allowed}| / d_k,

pooled over both directions, with ``d_k = k`` (``normalise="k"``, the published definition), or
``d_k = min(k, number of allowed entities)`` (``normalise="attainable"``: a relation that admits
fewer than ``k`` entities does not cap the score below 1). Queries whose relation admits no entity
are left out. Ties in the top-k are broken by ``torch.topk``. Cost: the ``score_all`` calls plus
``O(N n)`` for ``N`` queries and ``n`` entities; memory ``O(batch_size · n)``.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Literal, Protocol

import torch
from torch import Tensor

from circuitkg.eval.ranking import ScoreAll

__all__ = ["AllowedEntities", "SemanticResult", "semantic_at_k"]

_ANCHOR = {"o": 0, "s": 2}  # direction -> the anchor column of a (s, r, o) triple


class AllowedEntities(Protocol):
    """What Sem@k needs from a schema (e.g. :class:`circuitkg.constraints.BoundSchema`)."""

    def allowed(self, target: str, relations: Tensor) -> Tensor:
        """``(B, n)`` bool: entity ``e`` is an allowed ``target`` (``"s"``/``"o"``) of ``relations[b]``."""
        ...


@dataclass(frozen=True)
class SemanticResult:
    """Per direction, the per-query fractions ``(Q, len(ks))``; metrics pool the directions."""

    values: dict[str, Tensor]
    ks: tuple[int, ...]
    normalise: str

    def metrics(self, direction: str = "both") -> dict[str, float]:
        """``{"sem@k": mean over queries}`` for each ``k``, plus the number of queries."""
        v = torch.cat(list(self.values.values())) if direction == "both" else self.values[direction]
        out = {"num_queries": float(len(v))}
        for i, k in enumerate(self.ks):
            out[f"sem@{k}"] = float(v[:, i].mean()) if len(v) else float("nan")
        return out

    def as_dict(self) -> dict[str, dict[str, float]]:
        return {d: self.metrics(d) for d in ("both", *self.values)}

    def __str__(self) -> str:
        m = self.metrics()
        cells = ", ".join(f"Sem@{k} {100 * m[f'sem@{k}']:.2f}%" for k in self.ks)
        return f"{cells} ({int(m['num_queries'])} queries, normalise={self.normalise!r})"


def semantic_at_k(
    score_all: ScoreAll,
    triples: Tensor,
    schema: AllowedEntities,
    *,
    ks: Sequence[int] = (1, 10, 100),
    batch_size: int = 256,
    directions: Sequence[str] = ("o", "s"),
    normalise: Literal["k", "attainable"] = "k",
) -> SemanticResult:
    """Sem@k of the model behind ``score_all`` on the queries of ``triples`` (module docstring).

    ``score_all(target, anchor, relation) -> (B, n)`` is the interface of
    :func:`circuitkg.eval.evaluate_ranking` (wrap ``CompiledCircuit.score_all`` or
    ``ConstrainedCircuit.score_all`` with :func:`circuitkg.eval.keyword_scorer`).
    """
    if normalise not in ("k", "attainable"):
        raise ValueError(f"normalise must be 'k' or 'attainable', got {normalise!r}")
    if not ks or min(ks) < 1 or batch_size < 1:
        raise ValueError(f"ks and batch_size must be positive, got {ks} and {batch_size}")
    if not directions or set(directions) - {"o", "s"}:
        raise ValueError(f"directions must be among 'o', 's', got {directions!r}")
    values = {}
    with torch.no_grad():
        for direction in directions:
            parts = []
            for start in range(0, len(triples), batch_size):
                batch = triples[start : start + batch_size]
                relations = batch[:, 1]
                scores = score_all(direction, batch[:, _ANCHOR[direction]], relations)
                allowed = schema.allowed(direction, relations).to(scores.device)
                parts.append(_fractions(scores, allowed, ks, normalise))
            values[direction] = torch.cat(parts)
    return SemanticResult(values, tuple(ks), normalise)


def _fractions(scores: Tensor, allowed: Tensor, ks: Sequence[int], normalise: str) -> Tensor:
    """``(Q, len(ks))`` fractions of allowed entities among each row's top-k; rows with none left out."""
    n = scores.shape[1]
    top = torch.topk(scores, min(max(ks), n), dim=1).indices
    hits = allowed.gather(1, top).to(torch.float64).cumsum(dim=1)  # allowed among the top-j
    num_allowed = allowed.sum(dim=1)
    cols = []
    for k in ks:
        kk = min(k, n)
        d = torch.full_like(hits[:, 0], float(k))
        if normalise == "attainable":
            d = num_allowed.clamp(max=kk).to(torch.float64)
        cols.append(hits[:, kk - 1] / d)
    return torch.stack(cols, dim=1)[num_allowed > 0].cpu()
