"""The dashboard's bars tell the truth: every non-zero part shows, and what was cancelled is not done."""

from __future__ import annotations

import pytest

from legaldoc.lifecycle import BatchStatus
from legaldoc.services.summary import BatchSummary
from legaldoc.tui import format as fmt
from legaldoc.tui.app import _progress


@pytest.mark.parametrize(("counts", "total", "width"), [
    ([31, 0, 1, 0], 32, 16), ([999, 1], 1000, 16), ([1, 1, 1, 1, 1], 1000, 16), ([62, 0, 0, 25], 87, 16),
    ([5, 5, 5], 15, 16), ([0, 0, 0], 10, 16), ([3, 0, 2], 1_000_000, 8), ([1] * 20, 20, 16),
])  # fmt: skip
def test_every_part_above_zero_gets_a_cell_and_the_bar_never_overflows(counts, total, width):
    cells = fmt.allot(counts, total, width)
    assert sum(cells) <= width
    if sum(1 for c in counts if c) <= width:
        assert all(cell >= 1 for cell, count in zip(cells, counts, strict=True) if count)
    assert all(cell == 0 for cell, count in zip(cells, counts, strict=True) if not count)
    if sum(counts) == total and sum(1 for c in counts if c) <= width:
        assert sum(cells) == width  # a finished batch fills its bar


def _summary(**counts: int) -> BatchSummary:
    fields = {"name": "n", "project": "p", "priority": "5", "status": counts.pop("status", "finished"),
              "total": str(sum(counts.values())), "created_at": "1.0", "finished_at": "2.0",
              **{k: str(v) for k, v in counts.items()}}  # fmt: skip
    return BatchSummary.from_live("b", fields, 3.0)


def test_one_failure_in_32_shows_and_a_cancelled_batch_is_not_100_percent():
    bar = _progress(_summary(succeeded=31, failed=1), width=16)
    assert [span.style for span in bar.spans].count("red") == 1 and str(bar).endswith("100%")
    cancelled = _progress(_summary(status=BatchStatus.CANCELLED, succeeded=62, cancelled=25), width=16)
    assert str(cancelled).endswith(" 71%")  # 62 of 87 were processed; 25 were cancelled, not done
