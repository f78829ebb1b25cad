"""Callbacks (OGC API Processes Part 1, `callback`): what a job's `subscriber` is told, when, and how it is signed.

Pure functions of a job document; the notifier (ades.jobs.notifier) does the looking, the claiming and the POSTing.

A job document with a `subscriber` carries, besides it:

- `callback-due` (indexed, a date): when the notifier should next look at the job; absent when its subscriber knows
  all there is to know. The status writer (ades.merge) sets it when a change is one the subscriber has a URI for;
  the notifier sets it to a claim's end while it delivers, to a retry's time after a failure, and clears it once the
  state it delivered is still the job's.
- `callback` (not indexed): the delivery record, shown in the job's status document: the last state delivered
  (`status`, `updated`, `delivered` at), `attempts` at the state now pending, `error` of the last attempt, `next`
  attempt, `claimed` (`by`, `until`) while a node delivers, `progress-after` (no in-progress POST before it).

Signing: `Ades-Signature: sha256=<hex HMAC-SHA256 of "<Ades-Timestamp>." + body>` with ADES_CALLBACK_SECRET; a
receiver recomputes it over the bytes it received and refuses an old timestamp (a replay).
"""

from __future__ import annotations

import hashlib
import hmac
from datetime import datetime, timedelta
from typing import Any

from pydantic import BaseModel, ConfigDict, Field

from ades.merge import SUBSCRIBER_URIS
from ades.models import iso
from ades.status import Status

BACKOFF_CAP = 300.0
"""Longest wait between two attempts, in seconds."""
TIMESTAMP_HEADER = "Ades-Timestamp"
SIGNATURE_HEADER = "Ades-Signature"
DELIVERY_HEADER = "Ades-Delivery"


class Subscriber(BaseModel):
    """An execute request's `subscriber`: where the job's changes are POSTed (each URI optional)."""

    model_config = ConfigDict(extra="forbid")

    successUri: str | None = Field(default=None, max_length=2048, description="told once the job succeeded")
    inProgressUri: str | None = Field(default=None, max_length=2048, description="told while the job runs")
    failedUri: str | None = Field(default=None, max_length=2048, description="told once the job failed or was "
                                  "dismissed")

    def uris(self) -> dict[str, str]:
        return {name: uri for name, uri in self.model_dump().items() if uri}


def sign(secret: bytes, timestamp: str, body: bytes) -> str:
    """The `Ades-Signature` value of `body` sent at `timestamp` (the `Ades-Timestamp` value, Unix seconds)."""
    return "sha256=" + hmac.new(secret, timestamp.encode() + b"." + body, hashlib.sha256).hexdigest()


def verify(secret: bytes, timestamp: str, body: bytes, signature: str, now: float, tolerance: float = 300) -> bool:
    """What a receiver does: the signature matches, and the timestamp is within `tolerance` seconds of `now`."""
    try:
        fresh = abs(now - float(timestamp)) <= tolerance
    except ValueError:
        return False
    return fresh and hmac.compare_digest(sign(secret, timestamp, body), signature)


def backoff(attempts: int, first: float) -> float:
    """Seconds to wait after the `attempts`-th failed attempt (1, 2, ...): `first`, doubling, at most BACKOFF_CAP."""
    return min(first * 2 ** max(attempts - 1, 0), BACKOFF_CAP)


def pending(doc: dict[str, Any]) -> tuple[str, str] | None:
    """(the subscriber's URI member, the URI) the job's current state is to be POSTed to, or None: no subscriber, no
    URI for this status, told already (an end is told once; a running job's each change), or given up on."""
    subscriber = doc.get("subscriber") or {}
    status = Status(doc["status"])
    member = SUBSCRIBER_URIS.get(status)
    if member is None or not subscriber.get(member):
        return None
    record = doc.get("callback") or {}
    if record.get("status") == status.value and (status.terminal or record.get("updated") == doc.get("updated")):
        return None
    gave_up = record.get("gave-up") or ""
    if gave_up == _state(doc) or (status.terminal and gave_up.startswith(f"{status.value}@")):
        return None  # an end given up on stays so, whatever late event touches the job
    return member, subscriber[member]


def _state(doc: dict[str, Any]) -> str:
    return f"{doc['status']}@{doc.get('updated')}"


def delivery_id(doc: dict[str, Any]) -> str:
    """The same for every attempt at one state of one job: a receiver told twice (at least once) can tell."""
    return f"{doc['id']}:{doc['status']}:{doc.get('updated')}"


def claimed(doc: dict[str, Any], node: str, now: datetime, seconds: float) -> dict[str, Any]:
    """The document as a node's claim leaves it: due again when the claim runs out (the node died delivering)."""
    record = dict(doc.get("callback") or {})
    until = iso(now + timedelta(seconds=seconds))
    record["claimed"] = {"by": node, "until": until}
    return {**doc, "callback": record, "callback-due": until}


def delivered(current: dict[str, Any], sent: dict[str, Any], error: str | None, now: datetime,
              retry_first: float, max_attempts: int, progress_interval: float) -> dict[str, Any]:
    """`current` (the job as it is now) after the attempt at delivering `sent` (the job as it was then) ended with
    `error` (None: the subscriber answered 2xx)."""
    record = dict(current.get("callback") or {})
    record.pop("claimed", None)
    same_state = _state(sent) == _state(current)
    if error is None:
        record.update(status=sent["status"], updated=sent.get("updated"), delivered=iso(now), attempts=0,
                      error=None, next=None)
        if Status(sent["status"]) is Status.RUNNING:
            record["progress-after"] = iso(now + timedelta(seconds=progress_interval))
    elif not same_state:  # the job moved on meanwhile: its new state is what is pending, tried at once
        record.update(attempts=0, error=error[:1000], next=None)
    else:
        attempts = int(record.get("attempts") or 0) + 1
        record.update(attempts=attempts, error=error[:1000], next=None)
        if attempts >= max_attempts:
            record["gave-up"] = _state(sent)
        else:
            record["next"] = iso(now + timedelta(seconds=backoff(attempts, retry_first)))
    new = {**current, "callback": record}
    new["callback-due"] = next_due(new, now)
    return new


def next_due(doc: dict[str, Any], now: datetime) -> str | None:
    """When the notifier should look at the job next: None when nothing is pending, else the latest of now, a retry's
    time and (running) the in-progress interval's end."""
    if pending(doc) is None:
        return None
    record = doc.get("callback") or {}
    times = [iso(now), record.get("next") or ""]
    if Status(doc["status"]) is Status.RUNNING:
        times.append(record.get("progress-after") or "")
    return max(times)


def shown(doc: dict[str, Any]) -> dict[str, Any] | None:
    """The delivery record as the job's status document shows it (None: the job has no subscriber)."""
    if not doc.get("subscriber"):
        return None
    record = doc.get("callback") or {}
    status = record.get("status")
    info = {"subscriber": doc["subscriber"], "lastDelivered": Status(status).ogc if status else None,
            "deliveredAt": record.get("delivered"), "attempts": record.get("attempts") or 0,
            "lastError": record.get("error"), "nextAttempt": record.get("next") or doc.get("callback-due"),
            "gaveUp": bool(record.get("gave-up"))}
    return {key: value for key, value in info.items() if value is not None}
