"""A cap on each user's unfinished jobs (ADES_MAX_RUNNING_JOBS_PER_USER): past it, execute answers 429 and writes
nothing.

Unfinished means what the store says: the user's jobs with status `submitted` or `running` (jobs waiting for
dependencies or a delay count: they hold a place in the queue). 429, not 503: the server is fine, this one client
asked for more than its share, and other users are still served (RFC 6585).

Counting the store on every request is not enough: two requests that both count before either job is indexed would
both pass. So the server processes of one host (gunicorn workers) share, per user, a ledger file in the data dir,
read and written under `flock`: the last count of the store and when it was taken, and the reservations the count
cannot include yet (admitted and still being submitted, or submitted after the count was taken). A submission holds
a reservation from admission until `submit()` returns, when the job is indexed (CreateBatcher.create). Submissions
do not refresh the index (that cost more than indexing), so each recount refreshes it first: a count taken after
that includes every job indexed before it, and their reservations are then dropped. So on one host the
cap is exact. Hosts sharing a store see each other only through it: they may overshoot by what the others admitted
within one `ttl`. Jobs that ended since the last count still count until the next one (`ttl` seconds): the cap errs
on refusing, and Retry-After says when to try again.
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import json
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any, Protocol

from ades.api.errors import ApiProblem
from ades.status import Status

UNFINISHED = (Status.SUBMITTED, Status.RUNNING)
RETRY_AFTER_SECONDS = 5
ABANDONED_AFTER = 300.0
"""Seconds after which a reservation never settled is dropped: its server process died mid-submission."""


class _Counter(Protocol):
    def count(self, statuses: Any, *, user_id: str | None = None) -> int: ...

    def refresh(self) -> None: ...


class UserQuota:
    def __init__(self, store: _Counter, cap: int, folder: Path, ttl: float = 1.0) -> None:
        self.store = store
        self.cap = cap
        self.folder = folder
        self.ttl = ttl

    @contextlib.contextmanager
    def hold(self, user: str) -> Iterator[None]:
        """Admit one more job of `user` for the duration of the block (which submits it), or raise ApiProblem(429).
        If the block fails, nothing was submitted and the place is given back."""
        if self.cap <= 0:
            yield
            return
        reservation = self._admit(user)
        submitted = False
        try:
            yield
            submitted = True
        finally:
            self._settle(user, reservation, submitted)

    # --- the ledger --------------------------------------------------------------------------------------------
    @contextlib.contextmanager
    def _ledger(self, user: str) -> Iterator[dict[str, Any]]:
        """The user's ledger, locked against every other process and thread of this host while the block runs."""
        self.folder.mkdir(parents=True, exist_ok=True)
        # a digest, not the user name: user ids come from tokens and may hold anything, '/' included
        path = self.folder / (hashlib.sha256(user.encode()).hexdigest()[:32] + ".json")
        with path.open("a+", encoding="utf-8") as handle:
            fcntl.flock(handle, fcntl.LOCK_EX)
            handle.seek(0)
            try:
                state = json.loads(handle.read() or "{}")
            except ValueError:
                state = {}  # a torn write of a crashed process: count again
            state.setdefault("counted_at", float("-inf"))
            state.setdefault("count", 0)
            state.setdefault("reservations", {})
            yield state
            handle.seek(0)
            handle.truncate()
            handle.write(json.dumps(state))
            handle.flush()
            # the lock goes with the file's close

    def _admit(self, user: str) -> str:
        with self._ledger(user) as state:
            now = time.time()
            if now - state["counted_at"] >= self.ttl:
                # the time before the refresh: a job whose submission ended before it is surely in the count
                self.store.refresh()
                state["count"] = self.store.count(UNFINISHED, user_id=user)
                state["counted_at"] = now
            reservations: dict[str, dict[str, Any]] = state["reservations"]
            for key, held in list(reservations.items()):
                in_count = held["done"] is not None and held["done"] < state["counted_at"]
                if in_count or (held["done"] is None and now - held["at"] > ABANDONED_AFTER):
                    del reservations[key]
            unfinished = state["count"] + len(reservations)
            if unfinished >= self.cap:
                raise ApiProblem(
                    429, "too-many-jobs",
                    f"user {user!r} has {unfinished} unfinished (submitted or running) jobs; the limit is {self.cap} "
                    f"per user (ADES_MAX_RUNNING_JOBS_PER_USER): nothing was submitted; try again once one has "
                    "finished", "Too many jobs", {"Retry-After": str(RETRY_AFTER_SECONDS)},
                )
            key = uuid.uuid4().hex
            reservations[key] = {"at": now, "done": None}
            return key

    def _settle(self, user: str, reservation: str, submitted: bool) -> None:
        with self._ledger(user) as state:
            if not submitted:
                state["reservations"].pop(reservation, None)
            elif reservation in state["reservations"]:
                state["reservations"][reservation]["done"] = time.time()
