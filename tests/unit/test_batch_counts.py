"""A batch's counts and what they make of its status: pure functions (ades.store.batches, ades.jobs.batches)."""

from __future__ import annotations

from ades.jobs.batches import decide, summary
from ades.status import Status
from ades.store.batches import BatchCounts


def _doc(status: str = "submitted") -> dict:
    return {"id": "p", "status": status, "batch-size": 3, "batch-leaves": 4}


def test_leaves_not_searchable_yet_count_as_accepted() -> None:
    counts = BatchCounts(total=4, counts={"running": 1, "succeeded": 1})
    assert counts.all_counts == {"submitted": 2, "running": 1, "succeeded": 1, "failed": 0, "dismissed": 0}
    assert sum(counts.all_counts.values()) == 4 and counts.ended == 1 and counts.progress == 25
    assert summary(counts, _doc())["counts"]["accepted"] == 2


def test_a_batch_starts_with_its_first_leaf_and_ends_with_its_last() -> None:
    assert decide(_doc(), BatchCounts(total=4, counts={"submitted": 4})) is None
    assert decide(_doc(), BatchCounts(total=4, counts={})) is None  # nothing searchable yet
    started = decide(_doc(), BatchCounts(total=4, counts={"submitted": 3, "succeeded": 1}))
    assert started is not None and started.status is Status.RUNNING
    assert decide(_doc("running"), BatchCounts(total=4, counts={"running": 1, "succeeded": 3})) is None
    ended = decide(_doc("running"), BatchCounts(total=4, counts={"succeeded": 4}))
    assert ended is not None and ended.status is Status.SUCCEEDED and ended.progress == 100
    failed = decide(_doc("running"), BatchCounts(total=4, counts={"succeeded": 2, "failed": 1, "dismissed": 1}))
    assert failed is not None and failed.status is Status.FAILED
    assert "2 successful, 1 failed, 1 dismissed" in (failed.message or "")
    assert decide(_doc("dismissed"), BatchCounts(total=4, counts={"succeeded": 4})) is None  # ended stays ended


def test_progress_is_floored_so_100_means_every_leaf_ended() -> None:
    assert BatchCounts(total=1000, counts={"succeeded": 999, "running": 1}).progress == 99
    assert BatchCounts(total=0, counts={}).progress == 0
