"""Back-pressure and the per-user quota as pure logic: the queue cap (ades.jobs.admission) with a counted store and a
clock given, and a user's ledger (ades.jobs.quota.Ledger) with its count and reservations."""

from __future__ import annotations

import pytest

from ades.jobs.admission import Admission, TooManyQueued
from ades.jobs.quota import ABANDONED_AFTER, Ledger, TooManyJobs, UserQuota


class Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


class Counter:
    """The store's count of queued jobs, and how often it was asked."""

    def __init__(self, value: int = 0) -> None:
        self.value = value
        self.asked = 0

    def __call__(self) -> int:
        self.asked += 1
        return self.value


def test_no_cap_admits_without_counting() -> None:
    count = Counter(10**6)
    admission = Admission(count, cap=0)
    for _ in range(3):
        admission.admit()
    assert count.asked == 0


def test_the_cap_counts_this_process_own_admissions_until_the_store_sees_them() -> None:
    clock, count = Clock(), Counter(7)
    admission = Admission(count, cap=10, ttl=1.0, lag=1.0, clock=clock)
    for _ in range(3):
        admission.admit()  # 7 + 0, 7 + 1, 7 + 2: the store counted once
    with pytest.raises(TooManyQueued, match="10 jobs are queued, the limit is 10") as refused:
        admission.admit()
    assert refused.value.retry_after == 5 and count.asked == 1
    clock.now += 1.0  # the next count; the three admissions are newer than it minus the lag: still added
    count.value = 9
    with pytest.raises(TooManyQueued, match="12 jobs are queued"):
        admission.admit()
    clock.now += 2.0  # counted again, and the three are surely in that count by now
    count.value = 9
    admission.admit()
    assert count.asked == 3


def test_a_refusal_leaves_no_trace() -> None:
    clock = Clock()
    admission = Admission(Counter(5), cap=5, clock=clock)
    for _ in range(3):
        with pytest.raises(TooManyQueued, match="5 jobs are queued"):
            admission.admit()


def test_a_ledger_counts_reservations_until_a_count_includes_them() -> None:
    counted = Counter(2)
    ledger = Ledger()
    assert ledger.unfinished(100.0, ttl=1.0, recount=counted) == 2
    first = ledger.reserve(100.0)
    assert ledger.unfinished(100.5, ttl=1.0, recount=counted) == 3  # not counted again within the ttl
    ledger.settle(first, submitted=True, now=100.6)
    assert ledger.unfinished(100.9, ttl=1.0, recount=counted) == 3  # indexed, but not in the count yet
    counted.value = 3
    assert ledger.unfinished(101.0, ttl=1.0, recount=counted) == 3  # the new count holds it: reservation dropped
    assert ledger.reservations == {} and counted.asked == 2


def test_a_failed_submission_gives_its_place_back_and_an_abandoned_one_expires() -> None:
    ledger = Ledger()
    assert ledger.unfinished(0.0, 1.0, Counter(0)) == 0
    failed, abandoned = ledger.reserve(0.5), ledger.reserve(0.5)
    ledger.settle(failed, submitted=False, now=0.6)
    assert ledger.unfinished(0.7, 1.0, Counter(0)) == 1
    assert ledger.unfinished(0.5 + ABANDONED_AFTER + 1, 1e9, Counter(0)) == 0  # its process died mid-submission
    assert abandoned not in ledger.reservations


def test_a_ledger_survives_its_file(tmp_path) -> None:
    ledger = Ledger()
    ledger.unfinished(5.0, 1.0, Counter(1))
    key = ledger.reserve(5.0)
    assert Ledger.model_validate_json(ledger.model_dump_json()).reservations[key].at == 5.0


def test_the_user_quota_refuses_past_the_cap_and_releases_on_failure(tmp_path) -> None:
    unfinished = {"alice": 1, "bob": 0}
    quota = UserQuota(lambda user: unfinished[user], cap=2, folder=tmp_path, ttl=0.0)
    with quota.hold("alice"):
        pass  # alice: 1 counted + this one
    unfinished["alice"] = 2  # the store now holds it
    with pytest.raises(TooManyJobs, match="user 'alice' has 2 unfinished") as refused, quota.hold("alice"):
        pass
    assert refused.value.retry_after == 5
    with pytest.raises(RuntimeError), quota.hold("bob"):
        raise RuntimeError("the submission failed")
    # the failed one gave its place back: two fit, and while both are held a third does not
    with (quota.hold("bob"), quota.hold("bob"), pytest.raises(TooManyJobs, match="user 'bob' has 2 unfinished"),
          quota.hold("bob")):
        pass


def test_the_disk_floor_reads_the_free_space_once_per_ttl(tmp_path) -> None:
    from ades.jobs.admission import DiskFloor, LowDisk, free_bytes

    assert free_bytes(tmp_path / "not" / "yet") == free_bytes(tmp_path)  # the nearest folder that exists
    clock, disk = Clock(), Counter(5000)
    DiskFloor(tmp_path, 0, clock=clock, read=lambda _: disk()).check()
    assert disk.asked == 0  # off: never read
    floor = DiskFloor(tmp_path, 6000, clock=clock, read=lambda _: disk())
    with pytest.raises(LowDisk, match=r"has 5,000 bytes free, under the 6,000 .*ADES_MIN_FREE_DISK_BYTES") as refused:
        floor.check()
    assert (refused.value.status, refused.value.retry_after) == (503, 60)
    disk.value = 7000  # space freed
    with pytest.raises(LowDisk):
        floor.check()  # within the ttl the last reading stands
    clock.now += 1.0
    floor.check()
    assert disk.asked == 2
