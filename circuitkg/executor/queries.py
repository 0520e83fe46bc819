"""The query interface every knowledge-graph circuit shares.

:class:`~circuitkg.executor.CompiledCircuit` (any model, any form) and
:class:`~circuitkg.constraints.ConstrainedCircuit` (the same model under a schema) answer the same
queries with the same arguments, so objectives, evaluators, samplers and the CLI take either.
Evidence is validated by one function (:func:`circuitkg.evidence.validated`) behind both. A new
kind of circuit plugs in by implementing these methods; ``isinstance(c, KGQueries)`` checks that
they are there.
"""

from __future__ import annotations

from typing import Any, Protocol, runtime_checkable

import torch
from torch import Tensor

from circuitkg.executor.names import Prediction


@runtime_checkable
class KGQueries(Protocol):
    """Scores, exact probabilities, conditionals, ranking and sampling of one circuit."""

    @property
    def form(self) -> str: ...

    @property
    def variables(self) -> list[str]: ...

    @property
    def domains(self) -> dict[str, int]: ...

    @property
    def device(self) -> torch.device: ...

    def score(self, x: Tensor) -> Tensor: ...

    def log_partition(self) -> Tensor: ...

    def log_prob(self, x: Tensor) -> Tensor: ...

    def log_marginal(self, **given: Any) -> Tensor: ...

    def log_conditional(self, target: str, **given: Any) -> Tensor: ...

    def log_conditional_of(self, target: str, value: Any, **given: Any) -> Tensor: ...

    def score_all(self, target: str, **given: Any) -> Tensor: ...

    def topk(self, target: str, k: int = 10, **given: Any) -> list[Prediction]: ...

    def sample(self, num_samples: int, *args: Any, **kwargs: Any) -> Tensor: ...
