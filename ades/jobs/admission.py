"""Back-pressure: a cap on queued jobs. Past it, execute answers 503 with Retry-After and writes nothing.

Queued means `submitted` in the store, counted across every server sharing it. Counting on each request would cost
a search per submission, so the count is taken at most once per `ttl` seconds, and this process's own admissions
that the count may not see yet are added to it. Submissions do not refresh the index, so a count misses the jobs
indexed within the last refresh interval (`lag`, the index's 1 s): admissions newer than the count minus `lag` are
added. The cap can be overshot by what other processes admitted within `ttl` + `lag`, no more.
"""

from __future__ import annotations

import collections
import threading
import time
from typing import Any

from ades.api.errors import ApiProblem
from ades.status import Status

RETRY_AFTER_SECONDS = 5


class Admission:
    def __init__(self, store: Any, cap: int, ttl: float = 1.0, lag: float = 1.0) -> None:
        self.store = store
        self.cap = cap
        self.ttl = ttl
        self.lag = lag
        self._lock = threading.Lock()
        self._counted_at = float("-inf")
        self._count = 0
        self._admitted: collections.deque[float] = collections.deque()

    def admit(self) -> None:
        """Count one more queued job, or raise ApiProblem(503) when the cap is reached."""
        if self.cap <= 0:
            return
        with self._lock:
            now = time.monotonic()
            if now - self._counted_at >= self.ttl:
                self._count = self.store.count([Status.SUBMITTED])
                self._counted_at = now
            while self._admitted and self._admitted[0] < self._counted_at - self.lag:
                self._admitted.popleft()  # surely visible to that count
            queued = self._count + len(self._admitted)
            if queued >= self.cap:
                raise ApiProblem(
                    503, "server-busy",
                    f"{queued} jobs are queued, the limit is {self.cap} (ADES_MAX_QUEUED_JOBS): nothing was "
                    f"submitted; try again in {RETRY_AFTER_SECONDS} s",
                    "Too many queued jobs", {"Retry-After": str(RETRY_AFTER_SECONDS)},
                )
            self._admitted.append(now)
