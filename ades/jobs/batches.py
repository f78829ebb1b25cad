"""Batches: a parent job and one child job per item (ades.api.batch makes them), each a real job document.

    accept:  the parent and every child indexed `submitted` in bulk (one request per 1,000 jobs), nothing else
    feed:    the children go to the scheduler a few at a time, as this host's executor frees room
    settle:  a batch's counts are read (one aggregation on `ancestors`), never written per child; the batch turns
             `running` once a leaf has started and ends once every leaf ended (`succeeded` if every leaf did)
    dismiss: every job under the batch not ended is dismissed in bulk, then the batch itself

Why children are fed from the store rather than handed to the scheduler at acceptance: a 100,000-item batch would
otherwise hold 100,000 RunSpecs (and journal lines) in one server process. Indexed `submitted`, a child is as
durable as any accepted job; the process that holds the data dir's reconcile lock feeds this node's waiting
children (oldest batch first, in batch order) while fewer than FEED_AHEAD of them wait for a worker. A fed child is
journaled and scheduled like an adopted job (it is rebuilt from its document), so after a crash reconciliation
re-queues the fed ones and the feeder, skipping what the table holds, the rest.

The settle loop (same process) writes the batches' ends even when nobody reads them; a read of a batch's status
settles it too. Both go through the monotonic merge (store.apply of a StatusUpdate): duplicates are harmless.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Sequence
from typing import Any

from ades.jobs.lifecycle import HostState, JobTable
from ades.jobs.spec import QueuedJob
from ades.models import Job, StatusUpdate
from ades.status import Status
from ades.store import JobStore, StoreUnavailable
from ades.store.batches import BatchCounts, many_counts, open_batches, unended_under, waiting_leaves

log = logging.getLogger(__name__)
FEED_AHEAD = 16
"""Children fed to this host's executor that have not started yet, at most: enough to keep the workers busy between
two feeds, few enough that a batch holds no more RunSpecs than that."""
SETTLE_SECONDS = 1.0
FORGET_AFTER = 10.0
"""Seconds after a fed child ended before the feeder stops skipping it by id (searches then surely see its end)."""
WAITING = (HostState.JOURNALED, HostState.WAITING, HostState.DELAYED, HostState.QUEUED, HostState.HELD)
LIVE = (*WAITING, HostState.STARTED)
Rebuild = Callable[[dict[str, Any], dict[str, Any]], QueuedJob]
"""A stored child's document (and the packages loaded so far, by process ref) -> its QueuedJob."""


def decide(doc: dict[str, Any], counts: BatchCounts) -> StatusUpdate | None:
    """What a batch's document should learn from its counts: its end, its start, or nothing."""
    status = Status(doc["status"])
    if status.terminal:
        return None
    if counts.ended_all:
        outcome = counts.outcome
        counted = ", ".join(f"{n} {Status(s).ogc}" for s, n in counts.all_counts.items() if n)
        return StatusUpdate(job_id=doc["id"], status=outcome, progress=100,
                            message=f"every one of its {counts.total} jobs ended: {counted}")
    started = counts.seen - counts.counts.get(Status.SUBMITTED.value, 0)
    if status is Status.SUBMITTED and started > 0:
        return StatusUpdate(job_id=doc["id"], status=Status.RUNNING, message="its jobs are running")
    return None


def summary(counts: BatchCounts, doc: dict[str, Any]) -> dict[str, Any]:
    """The `batch` member of a batch's status document."""
    failed = counts.counts.get(Status.FAILED.value, 0)
    return {"size": doc.get("batch-size"), "total": counts.total, "ended": counts.ended,
            "counts": {Status(s).ogc: n for s, n in counts.all_counts.items()}, "progress": counts.progress,
            "failed": {"count": failed, "jobs": counts.failed}}


class Batches:
    """One per server process. `rebuild(doc)`: the QueuedJob of a stored child; `schedule(queued)`: hand it on
    (journaled already); `stop_here(id)`: stop a job this process holds."""

    def __init__(self, store: JobStore, table: JobTable, node: str, rebuild: Rebuild,
                 journal: Callable[[list[QueuedJob]], None], schedule: Callable[[QueuedJob], None],
                 stop_here: Callable[[str], None], feed_ahead: int = FEED_AHEAD,
                 interval: float = SETTLE_SECONDS) -> None:
        self.store = store
        self.table = table
        self.node = node
        self.rebuild = rebuild
        self.journal = journal
        self.schedule = schedule
        self.stop_here = stop_here
        self.feed_ahead = feed_ahead
        self.interval = interval
        self._fed: dict[str, float] = {}
        """child id -> when it was seen ended here (0 while it is not)"""
        self._wake = threading.Event()
        self._closed = False
        self._thread: threading.Thread | None = None

    # --- accept ---
    def accept(self, jobs: Sequence[Job]) -> None:
        """Index a batch's jobs (the parent first). Raises StoreUnavailable when they could not all be stored; the
        batch is then failed and the children stored are dismissed."""
        errors = [err for err in self.store.create(jobs, refresh=False) if err is not None]
        if errors:
            parent = jobs[0].id
            self.store.refresh()
            self.dismiss(parent, f"could not store every job of the batch: {errors[0]}", Status.FAILED)
            raise StoreUnavailable(f"could not store the batch's {len(jobs)} jobs ({len(errors)} failed): "
                                   f"{errors[0]}")
        self._wake.set()

    # --- dismiss ---
    def dismiss(self, batch_id: str, reason: str = "its batch was dismissed",
                outcome: Status = Status.DISMISSED) -> int:
        """Dismiss every job under the batch not ended (nested batches and their leaves, in bulk), then the batch
        itself (`outcome`); how many jobs under it were dismissed. Those this process holds stop at once; others
        are stopped by their holder's dismissal watch (ades.jobs.dismissals)."""
        self.store.refresh()  # children indexed a moment ago must be found
        dismissed = 0
        for page in unended_under(self.store.client, self.store.index, batch_id):
            updates = [StatusUpdate(job_id=job_id, status=Status.DISMISSED, message=reason) for job_id in page]
            for start in range(0, len(updates), 1000):
                self.store.apply_many(updates[start:start + 1000])
            dismissed += len(page)
            for job_id in page:
                if self.table.state(job_id) in LIVE:
                    self.stop_here(job_id)
        self.store.apply(StatusUpdate(job_id=batch_id, status=outcome, message=reason))
        self.store.refresh()
        return dismissed

    # --- read ---
    def settle_one(self, doc: dict[str, Any], counts: BatchCounts) -> dict[str, Any]:
        """The batch's document after what its counts say was applied (a read settles the batch too)."""
        update = decide(doc, counts)
        if update is None:
            return doc
        self.store.apply(update)
        return self.store.get(doc["id"])

    # --- the loop (in the process holding the reconcile lock) ---
    def start(self) -> Batches:
        if self._thread is None:
            self._thread = threading.Thread(target=self._run, name="ades-batches", daemon=True)
            self._thread.start()
        return self

    def wake(self) -> None:
        self._wake.set()

    def close(self) -> None:
        self._closed = True
        self._wake.set()
        if self._thread is not None:
            self._thread.join(timeout=5)

    def _run(self) -> None:
        while not self._closed:
            try:
                if self.settle() or self._fed:  # no batch open anywhere: no child to look for either
                    self.feed()
            except Exception as err:  # ES away, say: the next round tries again
                log.warning("feeding or settling batches failed: %s", err)
            self._wake.wait(self.interval / 4 if self._fed else self.interval)
            self._wake.clear()

    def feed(self) -> int:
        """Hand this node's waiting children to the scheduler while fewer than `feed_ahead` wait for a worker;
        how many were fed."""
        now = time.monotonic()
        waiting = 0
        for job_id, ended_at in list(self._fed.items()):
            state = self.table.state(job_id)
            if state in WAITING:
                waiting += 1
            elif state in (HostState.ENDED, HostState.RELEASED) and not ended_at:
                self._fed[job_id] = now
            elif ended_at and now - ended_at > FORGET_AFTER:
                del self._fed[job_id]
        room = self.feed_ahead - waiting
        if room <= 0:
            return 0
        skip = set(self._fed) | {job.job_id for job in self.table.in_state(*LIVE)}
        docs = waiting_leaves(self.store.client, self.store.index, self.node, sorted(skip), room)
        if docs:
            # the search sees the index as of its last refresh: a child that ended since (one the reconciler
            # re-queued, say) may still look submitted there; a realtime mget does not lag
            current = self.store.statuses([doc["id"] for doc in docs])
            docs = [doc for doc in docs if current.get(doc["id"]) == Status.SUBMITTED.value]
        if not docs:
            return 0
        packages: dict[str, Any] = {}
        queued = [self.rebuild(doc, packages) for doc in docs]
        self.journal(queued)
        for job in queued:
            self._fed[job.job_id] = 0.0
            self.schedule(job)
        return len(queued)

    def settle(self) -> int:
        """Write what the counts of every batch not ended say (start, end); how many batches were open."""
        docs = open_batches(self.store.client, self.store.index)
        updates: list[StatusUpdate] = []
        for start in range(0, len(docs), 100):
            chunk = docs[start:start + 100]
            for doc, counts in zip(chunk, many_counts(self.store.client, self.store.index, chunk), strict=True):
                update = decide(doc, counts)
                if update is not None:
                    updates.append(update)
        if updates:
            self.store.apply_many(updates)
        return len(docs)
