"""The pure merge: monotonic, idempotent, and independent of arrival order."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from hypothesis import given, settings
from hypothesis import strategies as st

from ades.merge import Outcome, fold, merge, public_view
from ades.models import Job, StatusUpdate
from ades.status import Status

T0 = datetime(2026, 1, 1, tzinfo=UTC)


def fresh() -> dict:
    return Job(id="job-1", process_id="echo", created=T0).to_document()


def created() -> dict:
    """A job made by POST /jobs (OGC API Processes Part 4): `created`, no host answers for it yet."""
    return {**fresh(), "status": Status.CREATED.value, "host": None}


def upd(status: Status, seconds: float, **kw) -> StatusUpdate:
    return StatusUpdate(job_id="job-1", status=status, timestamp=T0 + timedelta(seconds=seconds), **kw)


def test_ordered_lifecycle():
    events = [
        upd(Status.RUNNING, 1, progress=0, message="started"),
        upd(Status.RUNNING, 2, progress=50, message="half way"),
        upd(Status.SUCCEEDED, 3, outputs={"out": "http://x/out.txt"}),
    ]
    doc = fold(fresh(), events)
    assert doc["status"] == "succeeded"
    assert doc["progress"] == 100
    assert doc["message"] == "half way"
    assert doc["outputs"] == {"out": "http://x/out.txt"}
    assert doc["start-time"] == "2026-01-01T00:00:01.000000Z"
    assert doc["stop-time"] == "2026-01-01T00:00:03.000000Z"
    assert doc["duration"] == 2.0
    assert doc["applied-events"] == [e.event_id for e in events]


def test_duplicate_is_detected_and_changes_nothing():
    e = upd(Status.RUNNING, 1, progress=10)
    outcome, doc = merge(fresh(), e)
    assert outcome is Outcome.APPLIED
    again, same = merge(doc, e)
    assert again is Outcome.DUPLICATE
    assert same is doc


def test_late_running_after_terminal_keeps_status_and_message_but_fills_start_time():
    _, doc = merge(fresh(), upd(Status.FAILED, 5, message="boom"))
    outcome, after = merge(doc, upd(Status.RUNNING, 1, message="starting"))
    assert outcome is Outcome.APPLIED
    assert after["status"] == "failed"
    assert after["message"] == "boom"
    assert after["start-time"] == "2026-01-01T00:00:01.000000Z"
    assert after["duration"] == 4.0


def test_older_event_that_adds_nothing_is_stale():
    doc = fold(fresh(), [upd(Status.RUNNING, 1), upd(Status.RUNNING, 5, progress=80, message="m")])
    outcome, after = merge(doc, upd(Status.RUNNING, 3, progress=20, message="old"))
    assert outcome is Outcome.STALE
    assert after is doc


def test_first_terminal_wins():
    _, doc = merge(fresh(), upd(Status.DISMISSED, 5, message="dismissed by user"))
    outcome, after = merge(doc, upd(Status.SUCCEEDED, 6, outputs={"o": "u"}))
    assert outcome is Outcome.STALE
    assert after["status"] == "dismissed"
    assert after["outputs"] == {}


def test_older_running_update_does_not_overwrite_newer_progress():
    _, doc = merge(fresh(), upd(Status.RUNNING, 5, progress=80))
    outcome, after = merge(doc, upd(Status.RUNNING, 2, progress=20))
    assert after["progress"] == 80
    # It still tells us the job started earlier than we knew.
    assert outcome is Outcome.APPLIED
    assert after["start-time"] == "2026-01-01T00:00:02.000000Z"


def test_host_moves_with_running_or_later_events_only():
    doc = {**fresh(), "host": "node-accepting"}
    outcome, same = merge(doc, upd(Status.SUBMITTED, 1, host="node-other"))
    assert outcome is Outcome.STALE and same["host"] == "node-accepting"
    running = merge(doc, upd(Status.RUNNING, 2, host="worker-1"))[1]
    assert running["host"] == "worker-1"
    # an older running event (reordered) does not take the host back; a later one without a host keeps it
    assert merge(running, upd(Status.RUNNING, 1.5, progress=5, host="worker-0"))[1]["host"] == "worker-1"
    assert merge(running, upd(Status.SUCCEEDED, 3))[1]["host"] == "worker-1"


def test_input_document_is_never_modified():
    doc = fresh()
    snapshot = repr(doc)
    merge(doc, upd(Status.SUCCEEDED, 1, outputs={"a": {"nested": [1]}}))
    assert repr(doc) == snapshot


@st.composite
def lifecycle(draw):
    """A job's real event sequence: running events with rising times, then at most one terminal event."""
    n_running = draw(st.integers(min_value=0, max_value=6))
    gaps = draw(st.lists(st.floats(min_value=0.0, max_value=5.0), min_size=n_running + 1, max_size=n_running + 1))
    times, t = [], 0.0
    for g in gaps:
        t += g
        times.append(t)
    events = []
    for i in range(n_running):
        events.append(
            upd(
                Status.RUNNING,
                times[i],
                progress=draw(st.one_of(st.none(), st.integers(0, 100))),
                message=draw(st.one_of(st.none(), st.text(max_size=8))),
                host=draw(st.one_of(st.none(), st.sampled_from(["node-a", "worker-b"]))),
            )
        )
    terminal = draw(st.sampled_from([None, Status.SUCCEEDED, Status.FAILED, Status.DISMISSED]))
    if terminal is not None:
        events.append(
            upd(
                terminal,
                times[-1],
                message=draw(st.one_of(st.none(), st.text(max_size=8))),
                outputs={"out": "file:///o"} if terminal is Status.SUCCEEDED else None,
            )
        )
    return events


@settings(max_examples=400, deadline=None)
@given(data=st.data(), events=lifecycle())
def test_any_permutation_with_duplicates_gives_the_ordered_result(data, events):
    expected = fold(fresh(), events)
    with_dups = events + data.draw(st.lists(st.sampled_from(events), max_size=8)) if events else []
    shuffled = data.draw(st.permutations(with_dups))
    got = fold(fresh(), shuffled)
    assert public_view(got) == public_view(expected)
    assert sorted(got["applied-events"]) == sorted(set(got["applied-events"]))


@settings(max_examples=200, deadline=None)
@given(data=st.data(), events=lifecycle())
def test_status_never_moves_backwards(data, events):
    doc = fresh()
    for e in data.draw(st.permutations(events + events)):
        before = Status(doc["status"])
        _, doc = merge(doc, e)
        after = Status(doc["status"])
        assert after.rank >= before.rank
        if before.terminal:
            assert after is before


def test_submitted_event_moves_a_created_job_and_carries_only_its_status():
    outcome, doc = merge(created(), upd(Status.SUBMITTED, 1, message="ignored", progress=7, host="node-x"))
    assert outcome is Outcome.APPLIED
    assert doc["status"] == "submitted"
    assert doc["updated"] == "2026-01-01T00:00:01.000000Z"
    assert (doc["message"], doc["progress"], doc["host"], doc["merge-clock"]) == (None, 0, None, {})
    # from there on a submitted event tells nothing, as for any job submitted directly
    again, same = merge(doc, upd(Status.SUBMITTED, 2))
    assert again is Outcome.STALE and same is doc


def test_no_event_makes_a_job_created_again():
    for start in (fresh(), created()):
        outcome, same = merge(start, upd(Status.CREATED, 1, message="back"))
        assert outcome is Outcome.STALE and same is start
    dismissed = merge(created(), upd(Status.DISMISSED, 1, message="dismissed on request"))[1]
    assert dismissed["status"] == "dismissed" and dismissed["stop-time"] == "2026-01-01T00:00:01.000000Z"
    assert merge(dismissed, upd(Status.SUBMITTED, 2))[0] is Outcome.STALE


@settings(max_examples=300, deadline=None)
@given(data=st.data(), events=lifecycle())
def test_a_created_job_merges_its_start_in_any_order(data, events):
    """A created job's life is its start (`submitted`, before anything else happened to it) then a submitted job's:
    any permutation, with duplicates, gives what the ordered events give, and the status never moves back."""
    start = upd(Status.SUBMITTED, 0)
    ordered = [start, *events]
    expected = fold(created(), ordered)
    with_dups = ordered + data.draw(st.lists(st.sampled_from(ordered), max_size=8))
    doc = created()
    for event in data.draw(st.permutations(with_dups)):
        before = Status(doc["status"])
        _, doc = merge(doc, event)
        assert Status(doc["status"]).rank >= before.rank
    assert public_view(doc) == public_view(expected)
    if not events:
        assert expected["status"] == "submitted"
