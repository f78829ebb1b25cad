"""The sweep for lost jobs: in the process of each node that holds its data dir's reconcile lock, every sixth of
ADES_HOST_LEASE, one search of the `hosts` index (a few documents) and one of `jobs` find the unfinished jobs
whose `host` holds no fresh lease (ades.store.hosts.lost_jobs_query); only when there are some, a realtime `mget`
of their hosts' leases settles them against the leases as they are now, not as of the last refresh. What becomes
of each is ades.jobs.leases.fate:

- adopted (ADES_ADOPT_LOST_JOBS, a job that never started, once): rebuilt from its document (the process package
  from the `processes` index, its inputs, dependencies and what is left of its delay), journaled here, then written
  `host` = this node, `adopted` = {from, by, at} on the condition that the document is still the one the search
  read (if_seq_no/if_primary_term): of two nodes sweeping at once, one wins, the other's write conflicts and it
  lets the job go. Only then is it handed to this node's scheduler;
- failed with the reason naming the lost host, published like every other status (the consumer writes it).

A job whose lease holder is a live Dask worker has a fresh lease and is never picked; one whose worker lease
expired is left while this node's Dask executor says the scheduler still holds its task.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from elasticsearch import ConflictError, NotFoundError

from ades.jobs.leases import BEATS_PER_LEASE, Fate, delay_left, fate, lost_reason
from ades.jobs.publisher import Publisher
from ades.jobs.spec import QueuedJob
from ades.models import StatusUpdate, iso, utcnow
from ades.status import Status
from ades.store import JobStore
from ades.store.hosts import HostStore, LeaseDoc

SWEEP_SIZE = 1000
"""Lost jobs taken per round; more are found by the next rounds."""
SETTLED_MEMORY = 120.0
"""Seconds a job this node failed or adopted is not settled again: searches see the index as of its last refresh, and
a failure travels to the store through the event pipeline."""
log = logging.getLogger(__name__)


@dataclass
class SweepReport:
    adopted: list[str] = field(default_factory=list)
    failed: list[str] = field(default_factory=list)
    left: list[str] = field(default_factory=list)


class LostJobSweep:
    """`rebuild(doc, delay)`: the QueuedJob of a job document (raises when it cannot be rebuilt: the job then
    fails with the reason); `journal(queued)` before the adoption is written, `take(queued)` after (this node's
    scheduler); `dask_knows(job_ids)`: the jobs whose tasks the Dask scheduler holds (None without Dask)."""

    def __init__(self, hosts: HostStore, store: JobStore, node: str, lease_length: float, adopt: bool,
                 rebuild: Callable[[dict[str, Any], float], QueuedJob], journal: Callable[[QueuedJob], None],
                 take: Callable[[QueuedJob], None], publisher: Publisher,
                 dask_knows: Callable[[list[str]], set[str]] | None = None) -> None:
        self.hosts = hosts
        self.store = store
        self.node = node
        self.lease_length = lease_length
        self.adopt = adopt
        self.rebuild = rebuild
        self.journal = journal
        self.take = take
        self.publisher = publisher
        self.dask_knows = dask_knows
        self.interval = lease_length / BEATS_PER_LEASE
        self.searches = 0
        self._settled: dict[str, float] = {}
        self._closed = threading.Event()
        self._thread: threading.Thread | None = None

    def start(self) -> LostJobSweep:
        self._thread = threading.Thread(target=self._run, name="ades-lost-jobs", daemon=True)
        self._thread.start()
        return self

    def close(self) -> None:
        self._closed.set()
        if self._thread is not None:
            self._thread.join(timeout=10)

    def _run(self) -> None:
        while not self._closed.wait(self.interval):
            try:
                self.round()
            except Exception as err:  # the store is away for a moment: the next round looks again
                log.warning("the sweep for lost jobs failed: %s", err)

    def round(self, now: datetime | None = None) -> SweepReport:
        """One sweep: find the lost jobs and settle each."""
        now = now or utcnow()
        report = SweepReport()
        fresh, expired = self.hosts.fresh_and_expired(now)
        live = sorted({lease.id for lease in fresh} | {self.node})
        docs = self.hosts.lost_jobs(self.store.index, live, [lease.id for lease in expired],
                                    now - timedelta(seconds=self.lease_length), SWEEP_SIZE)
        self.searches += 1
        if not docs:
            return report
        # realtime: a lease renewed (or first written) since the index's last refresh must count as fresh
        leases = self.hosts.get(sorted({d["host"] for d in docs}))
        known = self.dask_knows([d["id"] for d in docs]) if self.dask_knows is not None else None
        forget_before = time.monotonic() - SETTLED_MEMORY
        self._settled = {job_id: at for job_id, at in self._settled.items() if at > forget_before}
        for doc in docs:
            job_id = doc["id"]
            lease = leases.get(doc["host"])
            found = fate(doc, lease, now, self.node, self.adopt, None if known is None else job_id in known)
            if job_id in self._settled:
                report.left.append(job_id)
            elif found is Fate.ADOPT and self._adopt(doc, lease, now):
                self._settled[job_id] = time.monotonic()
                report.adopted.append(job_id)
            elif found is Fate.FAIL:
                self._fail(job_id, lost_reason(doc, lease))
                report.failed.append(job_id)
            else:
                report.left.append(job_id)
        if report.adopted or report.failed:
            log.warning("jobs of lost hosts: %d adopted, %d failed", len(report.adopted), len(report.failed))
        return report

    def _fail(self, job_id: str, reason: str) -> None:
        self._settled[job_id] = time.monotonic()
        self.publisher.publish(StatusUpdate(job_id=job_id, status=Status.FAILED, message=reason))

    def _adopt(self, doc: dict[str, Any], lease: LeaseDoc | None, now: datetime) -> bool:
        """Take the job over; whether this node now holds it (False: another node was first, or it changed)."""
        job_id = doc["id"]
        try:
            dependencies = self.store.client.mget(index=self.store.index, ids=doc.get("depends-on") or [],
                                                  source_includes=["status", "stop-time"]) \
                if doc.get("depends-on") else {"docs": []}
            found = {d["_id"]: d["_source"] if d.get("found") else None for d in dependencies["docs"]}
            queued = self.rebuild(doc, delay_left(doc, found, now))
        except Exception as err:  # undeployed since, inputs no longer valid: it cannot run anywhere
            self._fail(job_id, f"{lost_reason(doc, lease)}; it could not be taken over: {err}")
            return False
        self.journal(queued)  # before the write: a crash in between leaves an inert line (the job is not ours)
        adopted = {"from": doc["host"], "by": self.node, "at": iso(now)}
        try:
            self.store.client.update(index=doc["_index"], id=job_id, doc={"host": self.node, "adopted": adopted},
                                     if_seq_no=doc["_seq_no"], if_primary_term=doc["_primary_term"])
        except ConflictError:
            log.info("job %s changed while being adopted (another node took it, or it moved on): left", job_id)
            return False
        log.warning("adopted job %s of lost host %s", job_id, doc["host"])
        self.take(queued)
        return True


def claim(store: JobStore, job_id: str, node: str) -> bool:
    """Hold on to a job this node's restart is about to re-queue: whether it is still this node's (or older than
    leases). Its document is rewritten on the condition that nobody changed it since it was read, so a sweep on
    another node that read it before (and would adopt it) finds its own conditional write refused."""
    try:
        found = store.client.get(index=store.index, id=job_id)
    except NotFoundError:
        return False
    if found["_source"].get("host") not in (None, node):
        return False
    try:
        store.client.update(index=found["_index"], id=job_id, doc={"host": node}, detect_noop=False,
                            if_seq_no=found["_seq_no"], if_primary_term=found["_primary_term"])
    except ConflictError:
        return False  # changed meanwhile (adopted elsewhere, or moved on): not re-queued here
    return True
