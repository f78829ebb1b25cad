"""The pure parts of callbacks: the signature a receiver checks, the retry schedule, what is pending after which
change (the status writer's mark, ades.merge) and after which delivery (ades.callbacks.delivered)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from ades.callbacks import backoff, claimed, delivered, next_due, pending, shown, sign, verify
from ades.merge import merge
from ades.models import Job, StatusUpdate, iso
from ades.status import Status

T0 = datetime(2026, 1, 1, tzinfo=UTC)
SECRET = b"s3cret-shared-with-the-receiver"
ALL = {"successUri": "https://r.example/ok", "inProgressUri": "https://r.example/run",
       "failedUri": "https://r.example/ko"}


def fresh(subscriber: dict[str, str] | None = None) -> dict:
    return Job(id="job-1", process_id="echo", created=T0, subscriber=subscriber).to_document()


def at(doc: dict, status: Status, seconds: float, **kw) -> dict:
    update = StatusUpdate(job_id="job-1", status=status, timestamp=T0 + timedelta(seconds=seconds), **kw)
    return merge(doc, update)[1]


def test_a_signature_verifies_over_the_timestamp_and_the_exact_body() -> None:
    body = b'{"jobID":"job-1","status":"successful"}'
    signature = sign(SECRET, "1767225600", body)
    assert signature.startswith("sha256=") and len(signature) == 7 + 64
    assert verify(SECRET, "1767225600", body, signature, now=1767225600 + 10)
    assert not verify(SECRET, "1767225600", body + b" ", signature, now=1767225600)  # the body changed
    assert not verify(SECRET, "1767225601", body, signature, now=1767225600)  # the timestamp changed
    assert not verify(b"another secret", "1767225600", body, signature, now=1767225600)
    assert not verify(SECRET, "1767225600", body, signature, now=1767225600 + 301)  # too old: a replay
    assert not verify(SECRET, "soon", body, signature, now=1767225600)


def test_retries_wait_twice_as_long_each_time_up_to_a_cap() -> None:
    assert [backoff(n, 2.0) for n in (1, 2, 3, 4)] == [2.0, 4.0, 8.0, 16.0]
    assert backoff(20, 2.0) == 300.0


def test_a_job_without_subscriber_is_never_marked() -> None:
    doc = at(at(fresh(), Status.RUNNING, 1), Status.SUCCEEDED, 2)
    assert "callback-due" not in doc and pending(doc) is None and shown(doc) is None


@pytest.mark.parametrize(("status", "member"), [(Status.SUCCEEDED, "successUri"), (Status.FAILED, "failedUri"),
                                                (Status.DISMISSED, "failedUri")])
def test_an_end_is_due_at_the_uri_its_status_asks_for(status: Status, member: str) -> None:
    doc = at(fresh(ALL), status, 5)
    assert pending(doc) == (member, ALL[member])
    assert doc["callback-due"] == iso(T0 + timedelta(seconds=5))


def test_a_status_without_its_uri_is_not_due() -> None:
    doc = at(fresh({"successUri": "https://r.example/ok"}), Status.RUNNING, 1, progress=10)
    assert doc.get("callback-due") is None and pending(doc) is None
    assert pending(at(doc, Status.SUCCEEDED, 2)) == ("successUri", "https://r.example/ok")


def test_a_delivered_end_is_told_once_even_when_a_late_event_changes_the_job() -> None:
    doc = at(fresh(ALL), Status.SUCCEEDED, 5)
    now = T0 + timedelta(seconds=6)
    told = delivered(doc, doc, None, now, 2.0, 5, 10.0)
    assert told["callback-due"] is None and pending(told) is None
    late = at(told, Status.RUNNING, 1, progress=50)  # a running event after the end still says when it started
    assert late["start-time"] == iso(T0 + timedelta(seconds=1))
    assert pending(late) is None and late["callback-due"] is None


def test_in_progress_changes_wait_for_the_interval() -> None:
    doc = at(fresh(ALL), Status.RUNNING, 1, progress=10)
    now = T0 + timedelta(seconds=2)
    told = delivered(doc, doc, None, now, 2.0, 5, 10.0)
    assert told["callback-due"] is None
    later = at(told, Status.RUNNING, 3, progress=20)
    assert pending(later) == ("inProgressUri", ALL["inProgressUri"])
    assert later["callback-due"] == iso(now + timedelta(seconds=10))  # not before the interval ends
    ended = at(later, Status.SUCCEEDED, 4)
    assert ended["callback-due"] == iso(T0 + timedelta(seconds=4))  # an end does not wait for it


def test_a_failed_delivery_is_retried_with_backoff_then_given_up() -> None:
    doc = at(fresh(ALL), Status.FAILED, 1, message="boom")
    now = T0 + timedelta(seconds=2)
    for attempt in (1, 2):
        doc = delivered(doc, doc, "answered 500", now, 2.0, 3, 10.0)
        assert doc["callback"]["attempts"] == attempt
        assert doc["callback-due"] == iso(now + timedelta(seconds=backoff(attempt, 2.0)))
        assert shown(doc)["lastError"] == "answered 500"
    doc = delivered(doc, doc, "answered 500", now, 2.0, 3, 10.0)
    assert doc["callback-due"] is None and pending(doc) is None and shown(doc)["gaveUp"] is True
    late = at(doc, Status.RUNNING, 9, progress=50)  # a late event, newer than the end, moves `updated`
    assert late["updated"] != doc["updated"] and pending(late) is None


def test_a_claim_holds_off_other_nodes_and_news_wait_for_it() -> None:
    doc = at(fresh(ALL), Status.RUNNING, 1, progress=10)
    now = T0 + timedelta(seconds=2)
    held = claimed(doc, "node-a", now, 15)
    assert held["callback-due"] == iso(now + timedelta(seconds=15))
    ended = at(held, Status.SUCCEEDED, 3)  # the status writer, while node-a delivers `running`
    assert ended["callback-due"] == iso(now + timedelta(seconds=15))
    # node-a records its delivery on the job as it is now: the end is due at once
    recorded = delivered(ended, doc, None, now + timedelta(seconds=1), 2.0, 5, 10.0)
    assert recorded["callback"]["status"] == "running" and "claimed" not in recorded["callback"]
    assert pending(recorded) == ("successUri", ALL["successUri"])
    assert recorded["callback-due"] == iso(now + timedelta(seconds=1))
    assert next_due(recorded, now + timedelta(seconds=1)) == recorded["callback-due"]
