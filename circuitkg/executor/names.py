"""Names of a circuit's values: what lets a query say ``s="usa"`` instead of an id.

A :class:`Vocabulary` holds, per variable, the name of each value (a knowledge graph's entities for
``s`` and ``o``, its relations for ``r``). Bound to a compiled circuit
(``ckg.compile(model, vocabulary=kg)``), every query takes names where it takes ids, and
:func:`top_values` answers ``topk`` by name. An unknown name is an
:class:`~circuitkg.errors.EvidenceError` that names it and the closest names. Lookups are dict
reads, ``O(1)`` a name; building the index is ``O(n)`` once.
"""

from __future__ import annotations

import difflib
from collections.abc import Callable, Mapping, Sequence
from typing import NamedTuple, Protocol

import torch
from torch import Tensor

from circuitkg.errors import EvidenceError


class Prediction(NamedTuple):
    """One ranked value: its name, its id and its (conditional) probability."""

    name: str
    id: int
    probability: float


class NamedValues(Protocol):
    """Anything that can name the values of each variable (a
    :class:`~circuitkg.data.KnowledgeGraph` does: ``variable_names()``)."""

    def variable_names(self) -> Mapping[str, Sequence[str]]: ...


class Vocabulary:
    """``names[var][id]`` per variable, and the reverse index."""

    def __init__(self, names: Mapping[str, Sequence[str]]) -> None:
        self.names = {var: list(values) for var, values in names.items()}
        self._ids = {var: {n: i for i, n in enumerate(v)} for var, v in self.names.items()}

    @classmethod
    def of(cls, source: NamedValues | Mapping[str, Sequence[str]]) -> Vocabulary:
        """From a knowledge graph (``variable_names()``) or a mapping ``var -> names``."""
        names = getattr(source, "variable_names", None)
        return cls(names() if callable(names) else source)

    def check(self, domains: Mapping[str, int]) -> None:
        """Each named variable's name list must cover its domain exactly."""
        for var, values in self.names.items():
            if var not in domains:
                raise EvidenceError(
                    f"the vocabulary names variable {var!r}, which the circuit does not have "
                    f"(it has {list(domains)})"
                )
            if len(values) != domains[var]:
                raise EvidenceError(
                    f"the vocabulary has {len(values)} names for {var!r}, whose domain has "
                    f"{domains[var]} values"
                )

    def id(self, var: str, name: str) -> int:
        """The id of ``name``; an :class:`EvidenceError` with the closest names if unknown."""
        ids = self._ids.get(var)
        if ids is None:
            raise EvidenceError(f"variable {var!r} has no names; give its ids")
        if name in ids:
            return ids[name]
        close = difflib.get_close_matches(name, ids, n=3)
        hint = f"; did you mean {', '.join(map(repr, close))}?" if close else ""
        raise EvidenceError(f"unknown name {name!r} for variable {var!r}{hint}")

    def name(self, var: str, index: int) -> str:
        return self.names[var][index]


def resolve(vocabulary: Vocabulary | None, var: str, value):
    """``value`` with names (a ``str`` or a list of them) turned into ids; other values as given."""
    if isinstance(value, str):
        return _require(vocabulary).id(var, value)
    if isinstance(value, (list, tuple)) and value and all(isinstance(v, str) for v in value):
        vocabulary = _require(vocabulary)
        return [vocabulary.id(var, v) for v in value]
    return value


def _require(vocabulary: Vocabulary | None) -> Vocabulary:
    if vocabulary is None:
        raise EvidenceError(
            "names need a vocabulary: compile with ckg.compile(model, vocabulary=kg), or give ids"
        )
    return vocabulary


def top_values(
    log_conditional: Callable[..., Tensor],
    vocabulary: Vocabulary | None,
    variables: Sequence[str],
    device: torch.device,
    target: str,
    k: int,
    given: Mapping[str, str | int],
) -> list[Prediction]:
    """The ``k`` most probable values of ``target`` given names or ids of other variables (those
    not given are summed out), most probable first, named when a vocabulary is bound. One
    all-value conditional, ``O(n K)``; values of probability zero are left out."""
    if target not in variables or target in given:
        raise EvidenceError(
            f"target must be one of {list(variables)} and not given, got {target!r}"
        )
    if isinstance(k, bool) or not isinstance(k, int) or k < 1:
        raise EvidenceError(f"k must be a positive integer, got {k!r}")
    evidence = {
        v: torch.tensor([resolve(vocabulary, v, x)], device=device) for v, x in given.items()
    }
    with torch.no_grad():
        probs = log_conditional(target, **evidence)[0].exp()
    top = torch.topk(probs, min(k, probs.numel()))
    named = vocabulary is not None and target in vocabulary.names
    return [
        Prediction(vocabulary.name(target, i) if named else str(i), i, p)
        for i, p in zip(top.indices.tolist(), top.values.tolist(), strict=True)
        if p > 0
    ]
