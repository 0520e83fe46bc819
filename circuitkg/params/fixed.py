"""Fixed tables (buffers, no parameters): constants and 0/1 indicators (constraint circuits)."""

from __future__ import annotations

from collections.abc import Iterator

import torch
from torch import Tensor

from circuitkg.params.tables import DEFAULT_CHUNK, Table


class ConstantTable(Table):
    """A fixed table (a buffer): constants, 0/1 indicators, or the rows of a conditioned layer."""

    def __init__(self, values: Tensor) -> None:
        values = torch.as_tensor(values)
        if values.ndim != 2:
            raise ValueError(
                f"a constant table must be 2-D (values x units), got shape {tuple(values.shape)}"
            )
        super().__init__(values.shape[0], values.shape[1])
        self.register_buffer("values", values.clone())
        self.nonnegative = bool((values >= 0).all())

    def rows(self, index: Tensor) -> Tensor:
        return self.values[index]

    def chunks(self, chunk_size: int = DEFAULT_CHUNK) -> Iterator[Tensor]:
        yield from torch.split(self.values, chunk_size)


class IndicatorTable(ConstantTable):
    """A 0/1 table: ``T[x, k] = 1`` iff value ``x`` is allowed by unit ``k`` (constraint circuits)."""

    def __init__(self, mask: Tensor) -> None:
        super().__init__(torch.as_tensor(mask).to(torch.get_default_dtype()))
        if not bool(((self.values == 0) | (self.values == 1)).all()):
            raise ValueError("an indicator table holds only 0 and 1")
