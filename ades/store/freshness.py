"""Read-your-writes for job listings without a refresh per submission.

Submissions index jobs without refreshing the index (a refresh per bulk costs several times the indexing), so a
search sees a new job only after the next periodic refresh (1 s). A client that submits and then lists its jobs
should see what it submitted, so: after each bulk of new jobs the writer stamps a file in the data dir with the time
(one syscall per bulk, shared by every server process of this host), and before a listing a reader compares that
stamp with when its own last refresh started. Only if something was written since does it refresh first (one at a
time per process; threads arriving meanwhile reuse that refresh). Listings while nothing is submitted cost nothing
more; a burst of submissions with nobody listing costs nothing either.

Servers on other hosts sharing the index see new jobs after the periodic refresh, as any Elasticsearch client does.
"""

from __future__ import annotations

import logging
import os
import threading
import time
from collections.abc import Callable
from pathlib import Path

log = logging.getLogger(__name__)


class WriteMarks:
    def __init__(self, path: Path, refresh: Callable[[], None]) -> None:
        self.path = path
        self._refresh = refresh
        self._lock = threading.Lock()
        self._refresh_started_ns = 0
        self.refreshes = 0

    def mark(self) -> None:
        """Something was written just now (call after the write is acknowledged, before anyone is told)."""
        now = time.time_ns()
        try:
            os.utime(self.path, ns=(now, now))
        except FileNotFoundError:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            self.path.touch()
            os.utime(self.path, ns=(now, now))

    def before_search(self) -> None:
        """Refresh if anything was written since this process's last refresh began."""
        written = self._written_ns()
        if written is None or written < self._refresh_started_ns:
            return
        with self._lock:
            if written < self._refresh_started_ns:  # another thread refreshed meanwhile, after the write
                return
            started = time.time_ns()
            try:
                self._refresh()
            except Exception as err:  # e.g. a cluster role without the right to refresh: the search still works
                log.warning("could not refresh before a listing (it shows what the last refresh saw): %s", err)
                return
            self._refresh_started_ns = started
            self.refreshes += 1

    def _written_ns(self) -> int | None:
        try:
            return os.stat(self.path).st_mtime_ns
        except OSError:
            return None
