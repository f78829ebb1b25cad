"""Dismissals made on another node: a job this process holds (queued, waiting, running) whose stored status turned
`dismissed` was dismissed through another API node, which cannot reach this host's processes. Every
POLL_SECONDS, while this process holds unfinished jobs, one search finds the jobs dismissed since the last round
(`status: dismissed`, `updated` since then, less LAG_SECONDS for the index's refresh and the clocks of other
nodes); those held here are stopped as a local dismissal would stop them (their status is already stored). One
small search whatever the number of jobs held: a queue of thousands costs what a queue of one does."""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from datetime import UTC, datetime, timedelta

from elasticsearch import ApiError, TransportError

from ades.jobs.lifecycle import HostState, JobTable
from ades.models import iso
from ades.status import Status
from ades.store import JobStore

log = logging.getLogger(__name__)
POLL_SECONDS = 2.0
LAG_SECONDS = 30.0
LIVE = (HostState.JOURNALED, HostState.WAITING, HostState.DELAYED, HostState.QUEUED, HostState.HELD,
        HostState.STARTED)


class DismissalWatch:
    def __init__(self, store: JobStore, table: JobTable, stop_here: Callable[[str], None],
                 interval: float = POLL_SECONDS) -> None:
        self.store = store
        self.table = table
        self.stop_here = stop_here
        self.interval = interval
        self._since = datetime.now(UTC) - timedelta(seconds=LAG_SECONDS)
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
        """Stop the jobs held here that were dismissed since the last round; their ids."""
        held = {job.job_id for job in self.table.in_state(*LIVE)}
        now = datetime.now(UTC)
        if not held:
            self._since = now - timedelta(seconds=LAG_SECONDS)
            return []
        query = {"bool": {"filter": [{"term": {"status": Status.DISMISSED.value}},
                                     {"range": {"updated": {"gte": iso(self._since)}}}]}}
        try:
            hits = self.store.client.search(index=self.store.index, query=query, size=10_000, source=False,
                                            track_total_hits=False)["hits"]["hits"]
        except (ApiError, TransportError) as err:
            log.info("dismissals made elsewhere not checked: %s", err)
            return []
        self._since = now - timedelta(seconds=LAG_SECONDS)
        dismissed = [hit["_id"] for hit in hits if hit["_id"] in held]
        for job_id in dismissed:
            log.info("job %s was dismissed through another node: stopping it here", job_id)
            self.stop_here(job_id)
        return dismissed
