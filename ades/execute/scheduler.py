"""Jobs that wait before they run: on other jobs (`dependsOn`), for a delay, or both (as in the CAF Job Service).

A waiting job is `submitted` in the store, with a message saying what it waits for. One thread per server process
checks the waiting jobs and their dependencies in one `mget` per round:

- every dependency succeeded: the delay starts (counted from that moment), then the job goes to the executor;
- a dependency failed, was dismissed, or does not exist: the job fails, with the reason;
- the job itself was dismissed meanwhile: it is dropped.

What a waiting job needs survives a restart: its line in the submission journal (ades.execute.journal: the RunSpec,
the dependencies and the delay) is written before the job is indexed, and reconciliation (ades.execute.reconcile)
hands unstarted jobs back to this scheduler when the server starts again.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

from pydantic import BaseModel, ConfigDict, Field

from ades.events.sinks import EventSink
from ades.execute.runner import RunSpec
from ades.models import StatusUpdate
from ades.status import Status

QUEUED_FILE = "queued.json"
POLL_SECONDS = 0.5
log = logging.getLogger(__name__)


class QueuedJob(BaseModel):
    """A job as it was accepted, enough to (re)start it: a line of the journal (ades.execute.journal)."""

    model_config = ConfigDict(extra="forbid")

    spec: RunSpec
    depends_on: list[str] = Field(default_factory=list)
    delay: float = 0.0

    @property
    def job_id(self) -> str:
        return self.spec.job_id

    @classmethod
    def load(cls, workdir: Path) -> QueuedJob | None:
        """The `queued.json` of a job folder, as servers before the journal (ades.execute.journal) wrote it."""
        try:
            return cls.model_validate_json((workdir / QUEUED_FILE).read_text(encoding="utf-8"))
        except (OSError, ValueError):
            return None


def waiting_message(depends_on: Sequence[str], delay: float) -> str | None:
    parts = []
    if depends_on:
        parts.append(f"waiting for job{'s' if len(depends_on) > 1 else ''} {', '.join(depends_on)} to succeed")
    if delay > 0:
        parts.append(f"then {delay:g} s of delay" if depends_on else f"waiting {delay:g} s before it starts")
    return "; ".join(parts) or None


@dataclass
class _Waiting:
    job: QueuedJob
    ready_at: float | None = None  # monotonic time the delay ends, once every dependency succeeded


Statuses = Callable[[list[str]], dict[str, str | None]]
"""job ids -> stored status word, None for a job that does not exist."""


class JobScheduler:
    """Holds waiting jobs and releases them to `start(spec)` (the executor's submit)."""

    def __init__(self, statuses: Statuses, start: Callable[[RunSpec], None], sink: Callable[[], EventSink],
                 poll: float = POLL_SECONDS) -> None:
        self._statuses = statuses
        self._start = start
        self._sink_factory = sink
        self._sink: EventSink | None = None
        self.poll = poll
        self._waiting: dict[str, _Waiting] = {}
        self._lock = threading.Condition()
        self._closed = False
        self._thread: threading.Thread | None = None

    def add(self, job: QueuedJob) -> None:
        """Run the job once its dependencies succeeded and its delay passed (at once if it has neither)."""
        if not job.depends_on and job.delay <= 0:
            self._start(job.spec)
            return
        with self._lock:
            ready = None if job.depends_on else time.monotonic() + job.delay
            self._waiting[job.job_id] = _Waiting(job, ready)
            if self._thread is None:
                self._thread = threading.Thread(target=self._run, name="ades-job-scheduler", daemon=True)
                self._thread.start()
            self._lock.notify()

    def waiting(self) -> list[str]:
        with self._lock:
            return list(self._waiting)

    def forget(self, job_id: str) -> bool:
        with self._lock:
            return self._waiting.pop(job_id, None) is not None

    def close(self) -> None:
        with self._lock:
            self._closed = True
            self._lock.notify()
        if self._thread is not None:
            self._thread.join(timeout=5)

    # --- the loop ---
    def _run(self) -> None:
        while True:
            with self._lock:
                while not self._waiting and not self._closed:
                    self._lock.wait()
                if self._closed:
                    return
                waiting = dict(self._waiting)
            try:
                self._round(waiting)
            except Exception as err:  # ES down, say: keep the jobs and try again
                log.warning("checking waiting jobs failed: %s", err)
            with self._lock:
                if not self._closed:
                    self._lock.wait(self.poll)

    def _round(self, waiting: dict[str, _Waiting]) -> None:
        ids = set(waiting)
        for entry in waiting.values():
            ids.update(entry.job.depends_on)
        statuses = self._statuses(sorted(ids))
        now = time.monotonic()
        for job_id, entry in waiting.items():
            own = statuses.get(job_id)
            if own is not None and Status(own).terminal:
                self.forget(job_id)  # dismissed while it waited
                continue
            if (entry.job.spec.workdir / "cancel-requested").exists():
                self.forget(job_id)
                self._publish(StatusUpdate(job_id=job_id, status=Status.DISMISSED, message="dismissed while waiting"))
                continue
            if entry.ready_at is None:
                reason = self._blocking(entry.job.depends_on, statuses)
                if reason is not None:
                    self.forget(job_id)
                    self._publish(StatusUpdate(job_id=job_id, status=Status.FAILED, message=reason))
                    continue
                if all(statuses.get(d) == Status.SUCCEEDED.value for d in entry.job.depends_on):
                    entry.ready_at = now + entry.job.delay  # the same object the waiting table holds
            if entry.ready_at is not None and now >= entry.ready_at and self.forget(job_id):
                try:
                    self._start(entry.job.spec)
                except Exception as err:  # the executor is gone (shutting down): the job must not hang
                    self._publish(StatusUpdate(job_id=job_id, status=Status.FAILED,
                                               message=f"could not start the job: {err}"))

    @staticmethod
    def _blocking(depends_on: Sequence[str], statuses: dict[str, str | None]) -> str | None:
        for dep in depends_on:
            status = statuses.get(dep)
            if status is None:
                return f"dependency {dep} does not exist (any more)"
            if status in (Status.FAILED.value, Status.DISMISSED.value):
                return f"dependency {dep} ended {Status(status).ogc}: this job cannot run"
        return None

    def _publish(self, update: StatusUpdate) -> None:
        try:
            if self._sink is None:
                self._sink = self._sink_factory()
            self._sink.publish(update)
        except Exception as err:  # reconciliation settles the job after a restart
            log.error("could not publish %s for job %s: %s", update.status.value, update.job_id, err)

