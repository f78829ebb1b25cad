"""Reconciliation: after a crash no job stays `submitted` or `running` forever.

When a server starts, one of its processes (whichever takes the lock file in the data dir first; under gunicorn
every worker builds an app) looks at every unfinished job that is this data dir's: journaled in it
(ades.execute.journal) or with a folder in it (several servers may share one Elasticsearch):

- never started (no `process.json`, which the job process writes as it starts) and journaled by a process that is
  gone: handed to the scheduler again, so it runs (dependencies and delay still apply); journaled by a live process
  (another worker of this server): left to it; neither, with a folder (a `queued.json` of servers before the journal
  is still read): it fails ("lost before it started");
- started on this host and its process group still alive (the job child survives its worker: it is a session
  leader): left to finish and watched; if it dies without reporting an end, it fails ("worker lost");
- started and gone: fails ("worker lost"), unless its own last report arrives within a grace period (events may be
  on their way through SNS -> SQS -> the consumer).

Failing is published through the event sink like every other status, so the consumer stays the one writer.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import logging
import socket
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any

from ades.events.sinks import EventSink
from ades.execute.journal import survey
from ades.execute.runner import PROCESS_FILE, job_dir
from ades.execute.scheduler import QueuedJob
from ades.models import JobQuery, StatusUpdate
from ades.services.base import group_alive
from ades.status import Status

LOCK_FILE = "reconcile.lock"
GRACE_SECONDS = 10.0
WATCH_SECONDS = 1.0
log = logging.getLogger(__name__)


@dataclass
class Report:
    requeued: list[str] = field(default_factory=list)
    watched: list[str] = field(default_factory=list)
    lost: list[str] = field(default_factory=list)

    def __bool__(self) -> bool:
        return bool(self.requeued or self.watched or self.lost)


def claim(data_dir: Path) -> IO[str] | None:
    """The reconciliation lock of this data dir, held until the process ends; None if another process has it."""
    data_dir.mkdir(parents=True, exist_ok=True)
    handle = open(data_dir / LOCK_FILE, "a+", encoding="utf-8")  # noqa: SIM115 (held for the process's life)
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


def started_process(workdir: Path) -> dict[str, Any] | None:
    try:
        return json.loads((workdir / PROCESS_FILE).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None


class Reconciler:
    def __init__(self, store: Any, data_dir: Path, requeue: Callable[[QueuedJob], None],
                 sink: Callable[[], EventSink], grace: float = GRACE_SECONDS) -> None:
        self.store = store
        self.data_dir = Path(data_dir)
        self.requeue = requeue
        self.sink_factory = sink
        self.grace = grace
        self._sink: EventSink | None = None

    def run(self) -> Report:
        report = Report()
        host = socket.gethostname()
        journals = survey(self.data_dir)
        for doc in list(unfinished(self.store)):
            job_id = doc["id"]
            workdir = job_dir(self.data_dir, job_id)
            process = started_process(workdir)
            if process is None:
                if job_id in journals.live:
                    continue  # queued in a live process of this server
                queued = journals.orphaned.get(job_id) or QueuedJob.load(workdir)
                if queued is not None:
                    self.requeue(queued)
                    report.requeued.append(job_id)
                elif workdir.is_dir():
                    self._fail_later(job_id, "the job was lost before it started (the server stopped)")
                    report.lost.append(job_id)
                # else: another server's job
            elif process.get("host") == host and group_alive(int(process["pgid"])):
                self._watch(job_id, int(process["pgid"]))
                report.watched.append(job_id)
            else:
                self._fail_later(job_id, "worker lost: the job's process ended (the server or its worker stopped) "
                                         "without reporting an end")
                report.lost.append(job_id)
        journals.discard()  # what was waiting is journaled again (by requeue)
        if report:
            log.warning("reconciled unfinished jobs: %d re-queued, %d still running (watched), %d lost",
                        len(report.requeued), len(report.watched), len(report.lost))
        return report

    def _watch(self, job_id: str, pgid: int) -> None:
        def watch() -> None:
            while group_alive(pgid):
                time.sleep(WATCH_SECONDS)
            self._fail_if_unfinished(job_id, "worker lost: the job's process ended without reporting an end")

        threading.Thread(target=watch, name=f"ades-watch-{job_id[:8]}", daemon=True).start()

    def _fail_later(self, job_id: str, reason: str) -> None:
        threading.Thread(target=self._fail_if_unfinished, args=(job_id, reason), name="ades-reconcile",
                         daemon=True).start()

    def _fail_if_unfinished(self, job_id: str, reason: str) -> None:
        deadline = time.monotonic() + self.grace
        while True:
            with contextlib.suppress(Exception):  # the store may be down for a moment; then try again
                status = self.store.statuses([job_id]).get(job_id)
                if status is None or Status(status).terminal:
                    return
            if time.monotonic() >= deadline:
                break
            time.sleep(1.0)
        try:
            if self._sink is None:
                self._sink = self.sink_factory()
            self._sink.publish(StatusUpdate(job_id=job_id, status=Status.FAILED, message=reason))
        except Exception as err:
            log.error("could not fail lost job %s: %s", job_id, err)

