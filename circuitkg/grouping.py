"""Rows sorted by a group label, so that each group's rows are one contiguous span.

Several plans run one product per group (class Grams, a schema's signature groups, the draws at
one node of a Gram tree): they sort the rows by group once (``O(B log B)``, stable), slice each
group's span, and put the results back in the rows' order.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from itertools import accumulate

import torch
from torch import Tensor


@dataclass(frozen=True)
class RowsByGroup:
    """Rows sorted by their group (stably): ``order[i]`` is the row at position ``i``; group
    ``g``'s ``counts[g]`` rows sit at positions ``spans[g] = (start, stop)``."""

    order: Tensor
    counts: tuple[int, ...]

    @staticmethod
    def of(group_of_row: Tensor, num_groups: int) -> RowsByGroup:
        """From each row's group ``group_of_row[b]`` in ``[0, num_groups)``."""
        counts = torch.bincount(group_of_row, minlength=num_groups).tolist()
        return RowsByGroup(torch.argsort(group_of_row, stable=True), tuple(counts))

    @property
    def spans(self) -> list[tuple[int, int]]:
        """Each group's ``(start, stop)`` positions in the sorted order."""
        stops = accumulate(self.counts)
        return [(z - n, z) for n, z in zip(self.counts, stops, strict=True)]

    def split(self, rows: Tensor) -> tuple[Tensor, ...]:
        """``rows`` (in the sorted order) cut into the groups' spans."""
        return rows.split(list(self.counts))

    def members(self) -> Iterator[tuple[int, Tensor]]:
        """``(group, its rows)`` for every group with rows."""
        for g, (start, stop) in enumerate(self.spans):
            if stop > start:
                yield g, self.order[start:stop]

    def restore(self, sorted_rows: Tensor) -> Tensor:
        """Rows given in the sorted order, back in the original one."""
        return sorted_rows[torch.argsort(self.order)]
