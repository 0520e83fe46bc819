"""RowsByGroup: the sorted order holds each group's rows in one span, and restore undoes it."""

import torch
from hypothesis import given
from hypothesis import strategies as st

from circuitkg.grouping import RowsByGroup


@given(st.integers(1, 6).flatmap(lambda g: st.tuples(st.just(g), st.lists(st.integers(0, g - 1)))))
def test_spans_hold_each_groups_rows_and_restore_inverts(case):
    num_groups, labels = case
    group_of_row = torch.tensor(labels, dtype=torch.long)
    by_group = RowsByGroup.of(group_of_row, num_groups)
    values = torch.arange(len(labels), dtype=torch.float64) * 10 + group_of_row
    ordered = values[by_group.order]
    pieces = by_group.split(ordered)
    assert len(pieces) == len(by_group.spans) == num_groups
    for g, ((start, stop), piece) in enumerate(zip(by_group.spans, pieces, strict=True)):
        expected = [i for i, label in enumerate(labels) if label == g]  # stable: rising rows
        assert by_group.order[start:stop].tolist() == expected
        assert piece.tolist() == values[expected].tolist()
    members = dict((g, rows.tolist()) for g, rows in by_group.members())
    assert members == {g: [i for i, x in enumerate(labels) if x == g] for g in set(labels)}
    assert torch.equal(by_group.restore(ordered), values)
