"""Back-pressure: a cap on queued jobs, and a floor of free disk space. Past either, a submission is refused
(TooManyQueued, LowDisk) and nothing is written.

Queued means `submitted` in the store, counted across every server sharing it. Counting on each submission would
cost a search per submission, so the count is taken at most once per `ttl` seconds, and this process's own
admissions that the count may not see yet are added to it. Submissions do not refresh the index, so a count misses
the jobs indexed within the last refresh interval (`lag`, the index's 1 s): admissions newer than the count minus
`lag` are added. The cap can be overshot by what other processes admitted within `ttl` + `lag`, no more.

The disk: jobs write their inputs, logs and outputs into the data dir, and a full disk fails every job (and, when
the local Elasticsearch keeps its data there, the store: its flood-stage watermark then blocks writes). So below
ADES_MIN_FREE_DISK_BYTES free, new jobs are refused until space is freed. The free space is read at most once a
second: a statvfs cost 5 us here, a few per mille of a submission's CPU, and submissions come by the thousand.
"""

from __future__ import annotations

import collections
import os
import threading
import time
from collections.abc import Callable
from pathlib import Path

RETRY_AFTER_SECONDS = 5


class Refused(Exception):
    """A submission this host will not take now; nothing was written. `retry_after`: seconds to wait. `status`,
    `kind` and `title` are the API's answer: 429 when this one client asked for more than its share (other users
    are still served), 503 when the server itself cannot take jobs."""

    status = 429
    kind = "too-many-jobs"
    title = "Too many jobs"

    def __init__(self, detail: str, retry_after: int = RETRY_AFTER_SECONDS) -> None:
        super().__init__(detail)
        self.detail = detail
        self.retry_after = retry_after


class TooManyQueued(Refused):
    """The whole service has as many queued jobs as it takes (the server is busy)."""

    status = 503
    kind = "server-busy"
    title = "Too many queued jobs"


class LowDisk(Refused):
    """The data dir's disk has less free space than new jobs need."""

    status = 503
    kind = "insufficient-storage"
    title = "Not enough free disk space"


def free_bytes(path: Path) -> int:
    """Free space (for an unprivileged writer) of the file system holding `path` or its nearest existing parent."""
    while not path.exists() and path != path.parent:
        path = path.parent
    stat = os.statvfs(path)
    return stat.f_bavail * stat.f_frsize


class DiskFloor:
    """`check()` raises LowDisk while the disk of `path` has less than `minimum` bytes free (0: never); the free
    space is read at most once per `ttl` seconds."""

    def __init__(self, path: Path, minimum: int, ttl: float = 1.0, clock: Callable[[], float] = time.monotonic,
                 read: Callable[[Path], int] = free_bytes) -> None:
        self.path = path
        self.minimum = minimum
        self.ttl = ttl
        self.clock = clock
        self.read = read
        self._read_at = float("-inf")
        self._free = 0

    def check(self) -> None:
        if self.minimum <= 0:
            return
        now = self.clock()
        if now - self._read_at >= self.ttl:  # two threads may both read: harmless
            self._free = self.read(self.path)
            self._read_at = now
        if self._free < self.minimum:
            raise LowDisk(f"the disk of the data dir {self.path} has {self._free:,} bytes free, under the "
                          f"{self.minimum:,} new jobs need (ADES_MIN_FREE_DISK_BYTES): nothing was submitted; try "
                          "again once space is freed", retry_after=60)


class Admission:
    """`count()` is the number of queued jobs in the store; `clock` a monotonic clock (both given for tests)."""

    def __init__(self, count: Callable[[], int], cap: int, ttl: float = 1.0, lag: float = 1.0,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self.count = count
        self.cap = cap
        self.ttl = ttl
        self.lag = lag
        self.clock = clock
        self._lock = threading.Lock()
        self._counted_at = float("-inf")
        self._count = 0
        self._admitted: collections.deque[float] = collections.deque()

    def admit(self) -> None:
        """Count one more queued job, or raise TooManyQueued when the cap is reached."""
        if self.cap <= 0:
            return
        with self._lock:
            now = self.clock()
            if now - self._counted_at >= self.ttl:
                self._count = self.count()
                self._counted_at = now
            while self._admitted and self._admitted[0] < self._counted_at - self.lag:
                self._admitted.popleft()  # surely visible to that count
            queued = self._count + len(self._admitted)
            if queued >= self.cap:
                raise TooManyQueued(f"{queued} jobs are queued, the limit is {self.cap} (ADES_MAX_QUEUED_JOBS): "
                                    f"nothing was submitted; try again in {RETRY_AFTER_SECONDS} s")
            self._admitted.append(now)
