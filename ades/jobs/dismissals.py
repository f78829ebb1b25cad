"""Dismissals made on another node: a job this process holds (queued, waiting, running) whose stored status turned
`dismissed` was dismissed through another API node, which cannot reach this host's processes. Every
POLL_SECONDS, while this process holds unfinished jobs, one realtime mget of their statuses finds those, and they are
stopped here as a local dismissal would stop them (their status is already stored)."""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable

from ades.jobs.lifecycle import HostState, JobTable
from ades.status import Status
from ades.store import JobStore
from ades.store.client import StoreUnavailable

log = logging.getLogger(__name__)
POLL_SECONDS = 2.0
LIVE = (HostState.JOURNALED, HostState.WAITING, HostState.DELAYED, HostState.QUEUED, HostState.HELD,
        HostState.STARTED)


class DismissalWatch:
    def __init__(self, store: JobStore, table: JobTable, stop_here: Callable[[str], None],
                 interval: float = POLL_SECONDS) -> None:
        self.store = store
        self.table = table
        self.stop_here = stop_here
        self.interval = interval
        self._closed = threading.Event()
        self._thread = threading.Thread(target=self._run, name="ades-dismissals", daemon=True)
        self._thread.start()

    def close(self) -> None:
        self._closed.set()
        self._thread.join(timeout=10)

    def _run(self) -> None:
        while not self._closed.wait(self.interval):
            try:
                self.check()
            except Exception:  # never let the watch die: the next round tries again
                log.exception("checking for dismissals made elsewhere failed")

    def check(self) -> list[str]:
        """Stop the jobs held here that the store says are dismissed; their ids."""
        held = [job.job_id for job in self.table.in_state(*LIVE)]
        if not held:
            return []
        try:
            statuses = self.store.statuses(held)
        except StoreUnavailable as err:
            log.info("dismissals made elsewhere not checked: %s", err)
            return []
        dismissed = [job_id for job_id, status in statuses.items() if status == Status.DISMISSED.value]
        for job_id in dismissed:
            log.info("job %s was dismissed through another node: stopping it here", job_id)
            self.stop_here(job_id)
        return dismissed
