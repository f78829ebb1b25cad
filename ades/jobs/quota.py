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

`SyncSlots` caps a user's synchronous executes at once on a host (ADES_MAX_SYNC_EXECUTES_PER_USER): each holds a
request thread until its job ends, and a user who sent many held the threads every other user's requests wait
for (8 synchronous 20 s jobs of one user made another's GET /processes take 17.3 s).
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import os
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


class TooManySyncExecutes(Refused):
    """This user has as many synchronous executes waiting as one user may, and this one cannot become a job."""

    kind = "too-many-sync-executes"
    title = "Too many synchronous executes"


def _user_file(user: str) -> str:
    # a digest, not the user name: user ids come from tokens and may hold anything, '/' included
    return hashlib.sha256(user.encode()).hexdigest()[:32]


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
        path = self.folder / (_user_file(user) + ".json")
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


class SyncSlots:
    """`cap` places per user for synchronous executes, shared by the server processes of one host: place i of a user
    is an exclusive `flock` on the file `<folder>/<user digest>.<i>`. The kernel lets a lock go when its holder
    closes it or dies, however it dies, so no count can go stale after a crash."""

    def __init__(self, cap: int, folder: Path) -> None:
        self.cap = cap
        self.folder = folder

    @contextlib.contextmanager
    def hold(self, user: str) -> Iterator[bool]:
        """Whether the user got a place, held for the duration of the block."""
        if self.cap <= 0:
            yield True
            return
        fd = self._take(user)
        try:
            yield fd is not None
        finally:
            if fd is not None:
                os.close(fd)

    def _take(self, user: str) -> int | None:
        self.folder.mkdir(parents=True, exist_ok=True)
        name = _user_file(user)
        for place in range(self.cap):
            # close-on-exec: a process the server starts must not keep the place
            fd = os.open(self.folder / f"{name}.{place}", os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                os.close(fd)
                continue
            return fd
        return None
