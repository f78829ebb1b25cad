"""The pure, monotonic merge of a status update into a `jobs` document.

A job document is a join of registers, so the order in which events arrive does not matter:

- `status` only rises in rank; the first terminal status wins and is never replaced.
- `progress`, `message`, `outputs` and `host` are last-writer-wins registers ordered by the event key
  `rank|timestamp|event_id` (kept in `merge-clock`), so a terminal event beats every running event and a late
  running event cannot overwrite newer progress. A succeeded event carries progress 100. `host` (who runs the job)
  is taken only from a running or later event: a `submitted` one never moves it.
- `start-time` is the earliest `running` event, `stop-time` the winning terminal event, `updated` the newest event.
- A `submitted` event moves a `created` job (OGC API Processes Part 4) and carries nothing but its status and time:
  with any register it would make the result depend on whether it came before or after the job's running events.
  A `created` event, a `submitted` event to any other job, a second terminal event, or any event that changes
  nothing is stale; an event already in `applied-events` is a duplicate.

Because every register only moves up, an event that is stale now stays stale later: stale events need no write.
"""

from __future__ import annotations

from collections.abc import Iterable
from datetime import datetime
from enum import StrEnum
from typing import Any

from ades.models import StatusUpdate, iso
from ades.status import Status, can_move, tells_nothing

BOOKKEEPING_FIELDS = ("applied-events", "callback-due")
"""Fields whose content depends on arrival order (which events were the ones that changed something, when the
notifier should look at the job next)."""
SUBSCRIBER_URIS = {Status.RUNNING: "inProgressUri", Status.SUCCEEDED: "successUri", Status.FAILED: "failedUri",
                   Status.DISMISSED: "failedUri"}
"""The `subscriber` member (OGC callbacks, ades.callbacks) each status is POSTed to: a dismissed job did not succeed,
so its subscriber hears of it where failures go (as Weaver does; OGC names no URI for it)."""


class Outcome(StrEnum):
    APPLIED = "applied"
    STALE = "stale"
    DUPLICATE = "duplicate"
    FAILED = "failed"


def event_key(update: StatusUpdate) -> str:
    return f"{update.status.rank}|{iso(update.timestamp)}|{update.event_id}"


def _later(current_key: str | None, key: str) -> bool:
    return current_key is None or key > current_key


def _duration(start: str | None, stop: str | None) -> float | None:
    if not start or not stop:
        return None
    fmt = "%Y-%m-%dT%H:%M:%S.%fZ"
    return max(0.0, (datetime.strptime(stop, fmt) - datetime.strptime(start, fmt)).total_seconds())


def merge(doc: dict[str, Any], update: StatusUpdate) -> tuple[Outcome, dict[str, Any]]:
    """Return the outcome and the document after `update` (the input document is never modified)."""
    if update.event_id in (doc.get("applied-events") or ()):
        return Outcome.DUPLICATE, doc

    current = Status(doc["status"])
    # Fields are only ever replaced, never changed in place, so a shallow copy keeps `doc` intact; the clock is
    # the one nested value updated key by key. (A deep copy would copy every job's inputs on every event.)
    new = dict(doc)
    clock: dict[str, str] = dict(doc.get("merge-clock") or {})
    new["merge-clock"] = clock
    key = event_key(update)
    stamp = iso(update.timestamp)

    if tells_nothing(current, update.status):
        return Outcome.STALE, doc
    if update.status is not current and can_move(current, update.status):
        new["status"] = update.status.value
        if update.status.terminal:
            new["stop-time"] = stamp

    if update.status is Status.RUNNING and (new.get("start-time") is None or stamp < new["start-time"]):
        new["start-time"] = stamp

    progress = 100 if update.status is Status.SUCCEEDED and update.progress is None else update.progress
    # a submitted event (it only ever reaches here for a created job) carries its status and nothing else
    registers = () if update.status is Status.SUBMITTED else (
        ("progress", progress), ("message", update.message), ("outputs", update.outputs), ("host", update.host))
    for field, value in registers:
        if value is not None and _later(clock.get(field), key):
            new[field] = value
            clock[field] = key

    if stamp > (new.get("updated") or ""):
        new["updated"] = stamp
    new["duration"] = _duration(new.get("start-time"), new.get("stop-time"))

    if public_view(new) == public_view(doc):
        return Outcome.STALE, doc
    new["applied-events"] = [*(doc.get("applied-events") or []), update.event_id]
    if new.get("subscriber"):
        new["callback-due"] = _callback_due(doc, new, stamp)
    return Outcome.APPLIED, new


def _callback_due(before: dict[str, Any], after: dict[str, Any], stamp: str) -> str | None:
    """When the notifier (ades.jobs.notifier) should look at a subscribed job after this change: the writer of status
    only marks the job, it never calls anyone. Not before a claim in flight ends (its node re-reads and sees the news
    as it records its delivery) nor, running, before the in-progress interval ends."""
    status = Status(after["status"])
    member = SUBSCRIBER_URIS.get(status)
    if member is None or not after["subscriber"].get(member) or (
            status.value == before["status"] and status is not Status.RUNNING):
        return after.get("callback-due")  # nothing new to tell (a late event after the end changes no status)
    record = after.get("callback") or {}
    times = [stamp, (record.get("claimed") or {}).get("until") or ""]
    if status is Status.RUNNING:
        times.append(record.get("progress-after") or "")
    return max(times)


def fold(doc: dict[str, Any], updates: Iterable[StatusUpdate]) -> dict[str, Any]:
    """The document after `updates`, merged in the order given."""
    for update in updates:
        _, doc = merge(doc, update)
    return doc


def public_view(doc: dict[str, Any]) -> dict[str, Any]:
    """The document without order-dependent bookkeeping: what must not depend on arrival order."""
    return {k: v for k, v in doc.items() if k not in BOOKKEEPING_FIELDS}
