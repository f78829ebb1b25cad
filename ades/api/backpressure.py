"""Back-pressure: a cap on queued jobs. Past it, execute answers 503 with Retry-After and writes nothing.

Queued means `submitted` in the store, counted across every server sharing it. Counting on each request would cost
a search per submission, so the count is refreshed at most once per `ttl` seconds and this process's own admissions
since then are added to it: the cap can be overshot by what other processes admitted within one `ttl`, no more.
"""

from __future__ import annotations

import threading
import time
from typing import Any

from ades.api.errors import ApiProblem
from ades.status import Status

RETRY_AFTER_SECONDS = 5


class Admission:
    def __init__(self, store: Any, cap: int, ttl: float = 1.0) -> None:
        self.store = store
        self.cap = cap
        self.ttl = ttl
        self._lock = threading.Lock()
        self._counted_at = float("-inf")
        self._count = 0
        self._admitted = 0

    def admit(self) -> None:
        """Count one more queued job, or raise ApiProblem(503) when the cap is reached."""
        if self.cap <= 0:
            return
        with self._lock:
            now = time.monotonic()
            if now - self._counted_at >= self.ttl:
                self._count = self.store.count([Status.SUBMITTED])
                self._counted_at = now
                self._admitted = 0
            queued = self._count + self._admitted
            if queued >= self.cap:
                raise ApiProblem(
                    503, "server-busy",
                    f"{queued} jobs are queued, the limit is {self.cap} (ADES_MAX_QUEUED_JOBS): nothing was "
                    f"submitted; try again in {RETRY_AFTER_SECONDS} s",
                    "Too many queued jobs", {"Retry-After": str(RETRY_AFTER_SECONDS)},
                )
            self._admitted += 1
