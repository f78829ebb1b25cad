"""A cap on each user's unfinished jobs (ADES_MAX_RUNNING_JOBS_PER_USER): past it, a submission is refused
(TooManyJobs: the API answers 429) and nothing is written.

Unfinished means what the store says: the user's jobs with status `submitted` or `running` (jobs waiting for
dependencies or a delay count: they hold a place in the queue). 429, not 503: the server is fine, this one client
asked for more than its share, and other users are still served (RFC 6585).

Counting the store on every request is not enough: two requests that both count before either job is indexed would
both pass. So the server processes of one host (gunicorn workers) share, per user, a ledger file in the data dir,
read and written under `flock`: the last count of the store and when it was taken, and the reservations the count
cannot include yet (admitted and still being submitted, or submitted after the count was taken). A submission holds
a reservation from admission until it returns, when the job is indexed. Submissions do not refresh the index, so
each recount refreshes it first: a count taken after that includes every job indexed before it, and their
reservations are then dropped. So on one host the cap is exact. Hosts sharing a store see each other only through
it: they may overshoot by what the others admitted within one `ttl`. Jobs that ended since the last count still
count until the next one (`ttl` seconds): the cap errs on refusing, and Retry-After says when to try again.

`Ledger` is the pure part (what a count and the reservations allow); `UserQuota` keeps one per user on disk.
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path

from pydantic import BaseModel, Field, ValidationError

from ades.jobs.admission import Refused

ABANDONED_AFTER = 300.0
"""Seconds after which a reservation never settled is dropped: its server process died mid-submission."""


class TooManyJobs(Refused):
    """This user has as many unfinished jobs as one user may have."""


class Reservation(BaseModel):
    at: float
    done: float | None = None
    """when its submission returned (the job indexed); None while it runs"""


class Ledger(BaseModel):
    counted_at: float | None = None
    """when the count was taken (Unix time)"""
    count: int = 0
    reservations: dict[str, Reservation] = Field(default_factory=dict)

    def unfinished(self, now: float, ttl: float, recount: Callable[[], int]) -> int:
        """The user's unfinished jobs: the store's count (taken again when older than `ttl`, by `recount`) plus the
        reservations it cannot include yet."""
        if self.counted_at is None or now - self.counted_at >= ttl:
            self.count = recount()
            self.counted_at = now
        counted_at = self.counted_at
        for key, held in list(self.reservations.items()):
            in_count = held.done is not None and held.done < counted_at
            if in_count or (held.done is None and now - held.at > ABANDONED_AFTER):
                del self.reservations[key]
        return self.count + len(self.reservations)

    def reserve(self, now: float) -> str:
        key = uuid.uuid4().hex
        self.reservations[key] = Reservation(at=now)
        return key

    def settle(self, key: str, submitted: bool, now: float) -> None:
        """A submission returned: its reservation stays until a count includes the job, or goes if it failed."""
        if not submitted:
            self.reservations.pop(key, None)
        elif key in self.reservations:
            self.reservations[key].done = now


class UserQuota:
    """`count(user)` is the user's unfinished jobs in the store after a refresh."""

    def __init__(self, count: Callable[[str], int], cap: int, folder: Path, ttl: float = 1.0) -> None:
        self.count = count
        self.cap = cap
        self.folder = folder
        self.ttl = ttl

    @contextlib.contextmanager
    def hold(self, user: str) -> Iterator[None]:
        """Admit one more job of `user` for the duration of the block (which submits it), or raise TooManyJobs.
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
            with self._ledger(user) as ledger:
                ledger.settle(reservation, submitted, time.time())

    @contextlib.contextmanager
    def _ledger(self, user: str) -> Iterator[Ledger]:
        """The user's ledger, locked against every other process and thread of this host while the block runs."""
        self.folder.mkdir(parents=True, exist_ok=True)
        # a digest, not the user name: user ids come from tokens and may hold anything, '/' included
        path = self.folder / (hashlib.sha256(user.encode()).hexdigest()[:32] + ".json")
        with path.open("a+", encoding="utf-8") as handle:
            fcntl.flock(handle, fcntl.LOCK_EX)
            handle.seek(0)
            try:
                ledger = Ledger.model_validate_json(handle.read() or "{}")
            except ValidationError:
                ledger = Ledger()  # a torn write of a crashed process: count again
            yield ledger
            handle.seek(0)
            handle.truncate()
            handle.write(ledger.model_dump_json())
            handle.flush()
            # the lock goes with the file's close

    def _admit(self, user: str) -> str:
        with self._ledger(user) as ledger:
            now = time.time()
            unfinished = ledger.unfinished(now, self.ttl, lambda: self.count(user))
            if unfinished >= self.cap:
                raise TooManyJobs(
                    f"user {user!r} has {unfinished} unfinished (submitted or running) jobs; the limit is {self.cap} "
                    "per user (ADES_MAX_RUNNING_JOBS_PER_USER): nothing was submitted; try again once one has "
                    "finished")
            return ledger.reserve(now)
