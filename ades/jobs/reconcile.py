"""Reconciliation: after a crash no job stays `submitted` or `running` forever.

When a server starts, one of its processes (whichever takes the data dir's reconcile lock first; under gunicorn
every worker builds an app) looks at every unfinished job that is this data dir's: journaled in it (ades.jobs.journal)
or with a folder in it (several servers may share one Elasticsearch). What becomes of each is `verdict`, a pure
function of what is known of it:

- never started (its folder has no process record) and journaled by a process that is gone: handed to the scheduler
  again, so it runs (dependencies and delay still apply); journaled by a live process (another worker of this
  server): left to it; with a folder but in no journal: it fails ("lost before it started");
- started on this host and its process group still alive (the job child survives its worker: it leads its own
  group): adopted (STARTED in the table) and watched; if it dies without reporting an end, it fails ("worker lost");
- started on another host: left alone while its heartbeat is fresh (ades.jobs.heartbeat: its process touches its
  record while it runs) and watched: failed ("host lost") if the beat goes stale before the job ends; with a stale
  beat, left while the executor says a live worker holds it (Dask), else failed;
- started here and gone: fails ("worker lost"), unless its own last report arrives within a grace period (events
  may be on their way through SNS -> SQS -> the consumer).
- one it would re-queue or fail whose stored `host` is another lease (another node adopted it, it runs on a Dask
  worker: ades.jobs.leases): left, and dropped from this data dir's journal; that host answers for it now.

Failing is published like every other status, so the consumer stays the one writer.
"""

from __future__ import annotations

import contextlib
import fcntl
import logging
import socket
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from enum import StrEnum
from pathlib import Path
from typing import IO, Any

from ades.jobs import groups
from ades.jobs.folder import DataDir, JobFolder, ProcessRecord
from ades.jobs.heartbeat import STALE_SECONDS, beating
from ades.jobs.journal import survey
from ades.jobs.lifecycle import HostState, JobTable
from ades.jobs.publisher import Publisher
from ades.jobs.spec import QueuedJob
from ades.models import JobQuery, StatusUpdate
from ades.status import Status

GRACE_SECONDS = 10.0
WATCH_SECONDS = 1.0
LOST_BEFORE_START = "the job was lost before it started (the server stopped)"
WORKER_LOST = ("worker lost: the job's process ended (the server or its worker stopped) without reporting an end")
HOST_LOST = "host lost: the job's process on another host stopped beating before the job reported an end"
log = logging.getLogger(__name__)


class Verdict(StrEnum):
    REQUEUE = "requeue"
    LEAVE = "leave"
    """another live process of this host, or another host, holds it"""
    WATCH = "watch"
    FAIL = "fail"
    IGNORE = "ignore"
    """not this data dir's job"""


def verdict(journaled_live: bool, orphaned: bool, has_folder: bool, process: ProcessRecord | None, host: str,
            group_alive: Callable[[int], bool], held_elsewhere: bool | None = None,
            lives_elsewhere: bool = False) -> Verdict:
    """What reconciliation does with one unfinished job (see the module doc). `held_elsewhere`: whether the executor
    says a live worker holds the job (None: it cannot tell); `lives_elsewhere`: whether its stored `host` is
    another lease than this node's."""
    found = _verdict(journaled_live, orphaned, has_folder, process, host, group_alive, held_elsewhere)
    if lives_elsewhere and found in (Verdict.REQUEUE, Verdict.FAIL):
        return Verdict.LEAVE
    return found


def _verdict(journaled_live: bool, orphaned: bool, has_folder: bool, process: ProcessRecord | None, host: str,
             group_alive: Callable[[int], bool], held_elsewhere: bool | None) -> Verdict:
    if process is None:
        if journaled_live:
            return Verdict.LEAVE
        if orphaned:
            return Verdict.REQUEUE
        return Verdict.FAIL if has_folder else Verdict.IGNORE
    if process.host != host:
        return Verdict.LEAVE if held_elsewhere else Verdict.FAIL
    return Verdict.WATCH if group_alive(process.pgid) else Verdict.FAIL


@dataclass
class Report:
    requeued: list[str] = field(default_factory=list)
    watched: list[str] = field(default_factory=list)
    lost: list[str] = field(default_factory=list)
    left: list[str] = field(default_factory=list)

    def __bool__(self) -> bool:
        return bool(self.requeued or self.watched or self.lost)


def claim(data_dir: Path) -> IO[str] | None:
    """The reconciliation lock of this data dir, held until the process ends; None if another process has it."""
    data_dir.mkdir(parents=True, exist_ok=True)
    handle = open(DataDir(data_dir).reconcile_lock, "a+", encoding="utf-8")  # noqa: SIM115 (held for life)
    try:
        fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError:
        handle.close()
        return None
    return handle


def unfinished(store: Any) -> Iterator[dict[str, Any]]:
    after = None
    while True:
        page = store.search(JobQuery(statuses=[Status.SUBMITTED, Status.RUNNING], size=500, search_after=after))
        yield from page.jobs
        if page.next_after is None:
            return
        after = page.next_after


class Reconciler:
    """`held_elsewhere()`: the jobs live workers of the executor hold (the Dask executor asks its workers); None when
    the executor knows only this host."""

    def __init__(self, store: Any, data_dir: Path, requeue: Callable[[QueuedJob], None], publisher: Publisher,
                 table: JobTable, grace: float = GRACE_SECONDS,
                 held_elsewhere: Callable[[], set[str]] | None = None, node: str | None = None,
                 claim: Callable[[str], bool] | None = None) -> None:
        """`node`: this node's lease id (ades.jobs.leases); a job whose stored `host` is another is not its own.
        `claim(job_id)`: whether a job about to be re-queued is still this node's, made sure of in the store
        (ades.jobs.adoption.claim), so that a node adopting it at the same moment does not run it too."""
        self.store = store
        self.node = node
        self.claim = claim
        self.data_dir = Path(data_dir)
        self.requeue = requeue
        self.publisher = publisher
        self.table = table
        self.grace = grace
        self.held_elsewhere = held_elsewhere
        self.watch_seconds = WATCH_SECONDS
        self.stale_after = STALE_SECONDS
        self._closed = threading.Event()

    def close(self) -> None:
        """Stop watching (the store it watches through is closing): the next server to start reconciles again."""
        self._closed.set()

    def run(self) -> Report:
        report = Report()
        host = socket.gethostname()
        journals = survey(self.data_dir)
        held_by_workers: set[str] | None = None
        on_other_hosts: list[JobFolder] = []
        for doc in list(unfinished(self.store)):
            job_id = doc["id"]
            folder = JobFolder(self.data_dir, job_id)
            process = folder.process()
            held: bool | None = None
            if process is not None and process.host != host:
                held = beating(folder, self.stale_after)
                if held:
                    on_other_hosts.append(folder)
                elif self.held_elsewhere is not None:
                    if held_by_workers is None:
                        held_by_workers = self.held_elsewhere()  # asked once, only for a job that stopped beating
                    held = job_id in held_by_workers
            owner = doc.get("host")
            elsewhere = bool(self.node and owner and owner != self.node)
            found = verdict(job_id in journals.live, job_id in journals.orphaned, folder.exists(), process, host,
                            groups.alive, held, elsewhere)
            if found is Verdict.REQUEUE and self.claim is not None and not self.claim(job_id):
                report.left.append(job_id)  # another node took it over meanwhile: dropped from the journal
            elif found is Verdict.REQUEUE:
                self.requeue(journals.orphaned[job_id])
                report.requeued.append(job_id)
            elif found is Verdict.WATCH and process is not None:
                self._watch(job_id, process.pgid)
                report.watched.append(job_id)
            elif found is Verdict.FAIL:
                self._fail_later(job_id, LOST_BEFORE_START if process is None else WORKER_LOST)
                report.lost.append(job_id)
            elif found is Verdict.LEAVE:
                report.left.append(job_id)
        if on_other_hosts:
            self._watch_beats(on_other_hosts)
        journals.discard()  # what was waiting is journaled again (by requeue); what lives elsewhere is dropped
        if report:
            log.warning("reconciled unfinished jobs: %d re-queued, %d still running (watched), %d lost",
                        len(report.requeued), len(report.watched), len(report.lost))
        return report

    def _watch(self, job_id: str, pgid: int) -> None:
        self.table.transition(job_id, HostState.STARTED, "found running when the server started", pgid=pgid)

        def watch() -> None:
            while groups.alive(pgid):
                if self._closed.wait(WATCH_SECONDS):
                    return
            outcome = self._fail_if_unfinished(job_id, "worker lost: the job's process ended without reporting an end")
            self.table.transition(job_id, HostState.ENDED, "its process group ended", outcome=outcome)

        threading.Thread(target=watch, name=f"ades-watch-{job_id[:8]}", daemon=True).start()

    def _watch_beats(self, folders: list[JobFolder]) -> None:
        """Fail each job of `folders` whose heartbeat goes stale before the job ends."""

        def watch() -> None:
            left = {folder.job_id: folder for folder in folders}
            while left and not self._closed.wait(self.watch_seconds):
                with contextlib.suppress(Exception):  # the store may be down for a moment; then look again
                    statuses = self.store.statuses(list(left))
                    for job_id, folder in list(left.items()):
                        status = statuses.get(job_id)
                        if status is None or Status(status).terminal:
                            del left[job_id]
                        elif not beating(folder, self.stale_after):
                            del left[job_id]
                            self._fail_if_unfinished(job_id, HOST_LOST)

        threading.Thread(target=watch, name="ades-watch-beats", daemon=True).start()

    def _fail_later(self, job_id: str, reason: str) -> None:
        threading.Thread(target=self._fail_if_unfinished, args=(job_id, reason), name="ades-reconcile",
                         daemon=True).start()

    def _fail_if_unfinished(self, job_id: str, reason: str) -> Status:
        """Fail the job unless its end reaches the store within the grace period; its outcome."""
        deadline = time.monotonic() + self.grace
        while True:
            with contextlib.suppress(Exception):  # the store may be down for a moment; then try again
                status = self.store.statuses([job_id]).get(job_id)
                if status is None or Status(status).terminal:
                    return Status(status) if status else Status.FAILED
            if time.monotonic() >= deadline:
                break
            if self._closed.wait(1.0):
                return Status.FAILED  # unsettled: left to the next server's reconciliation
        self.publisher.publish(StatusUpdate(job_id=job_id, status=Status.FAILED, message=reason))
        return Status.FAILED

