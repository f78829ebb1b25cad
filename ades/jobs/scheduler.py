"""Jobs that wait before they run: on other jobs (`dependsOn`), for a delay, or both (as in the CAF Job Service).

A waiting job is `submitted` in the store, with a message saying what it waits for, and WAITING (on dependencies)
or DELAYED (its delay runs) in the host's table. One thread per server process checks them, and their dependencies,
in one `mget` per round; what each round does to each job is decided by `decide`, a pure function:

- every dependency succeeded: the delay starts (counted from that moment), then the job goes to the executor;
- a dependency failed, was dismissed, or does not exist: the job fails, with the reason;
- the job itself was dismissed meanwhile (a cancel request in its folder, or a terminal status in the store): it
  ends dismissed, and is not started.

What a waiting job needs survives a restart: its journal line (ades.jobs.journal) holds the RunSpec, the
dependencies and the delay, and reconciliation (ades.jobs.reconcile) hands unstarted jobs back to this scheduler.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass

from ades.jobs.lifecycle import HostJob, HostState, JobTable
from ades.jobs.publisher import Publisher
from ades.jobs.spec import QueuedJob, RunSpec
from ades.models import StatusUpdate
from ades.status import Status

POLL_SECONDS = 0.5
log = logging.getLogger(__name__)

Statuses = Callable[[list[str]], dict[str, str | None]]
"""job ids -> stored status word, None for a job that does not exist."""


@dataclass(frozen=True)
class Step:
    """One move `decide` asks for: the job goes to `to` for `reason`; `outcome` (ENDED), `ready_at` (DELAYED) and
    `publish` (the event to publish, if the store must learn of it) as needed."""

    job_id: str
    to: HostState
    reason: str
    outcome: Status | None = None
    ready_at: float | None = None
    publish: StatusUpdate | None = None


def blocking(depends_on: Iterable[str], statuses: Mapping[str, str | None]) -> str | None:
    """Why the job can never run because of its dependencies, or None."""
    for dep in depends_on:
        status = statuses.get(dep)
        if status is None:
            return f"dependency {dep} does not exist (any more)"
        if status in (Status.FAILED.value, Status.DISMISSED.value):
            return f"dependency {dep} ended {Status(status).ogc}: this job cannot run"
    return None


def _end(job_id: str, outcome: Status, reason: str, publish: bool = True) -> Step:
    update = StatusUpdate(job_id=job_id, status=outcome, message=reason) if publish else None
    return Step(job_id, HostState.ENDED, reason, outcome=outcome, publish=update)


def decide(jobs: Iterable[HostJob], statuses: Mapping[str, str | None], cancelled: set[str],
           now: float) -> list[Step]:
    """What one round does to the waiting and delayed jobs, given the stored statuses of them and their
    dependencies, the jobs whose cancel was requested, and the monotonic time. A job may take two steps at once
    (its dependencies succeeded and it has no delay left)."""
    steps: list[Step] = []
    for job in jobs:
        queued: QueuedJob = job.payload
        own = statuses.get(job.job_id)
        if own is not None and Status(own).terminal:
            steps.append(_end(job.job_id, Status(own), f"it ended {Status(own).ogc} while it waited", publish=False))
            continue
        if job.job_id in cancelled:
            steps.append(_end(job.job_id, Status.DISMISSED, "dismissed while waiting"))
            continue
        ready_at = job.ready_at
        if job.state is HostState.WAITING:
            reason = blocking(queued.depends_on, statuses)
            if reason is not None:
                steps.append(_end(job.job_id, Status.FAILED, reason))
                continue
            if not all(statuses.get(d) == Status.SUCCEEDED.value for d in queued.depends_on):
                continue
            ready_at = now + queued.delay
            if queued.delay > 0:
                steps.append(Step(job.job_id, HostState.DELAYED, "every dependency succeeded; its delay starts",
                                  ready_at=ready_at))
        if ready_at is not None and now >= ready_at:
            steps.append(Step(job.job_id, HostState.QUEUED, "ready to start"))
    return steps


class JobScheduler:
    """Holds waiting jobs and hands each to `start(spec)` (the executor's submit) once it may run."""

    def __init__(self, table: JobTable, statuses: Statuses, start: Callable[[RunSpec], None],
                 publisher: Publisher, poll: float = POLL_SECONDS) -> None:
        self.table = table
        self._statuses = statuses
        self._start = start
        self.publisher = publisher
        self.poll = poll
        self._wake = threading.Condition()
        self._closed = False
        self._thread: threading.Thread | None = None

    def add(self, job: QueuedJob) -> None:
        """Run the job (JOURNALED in the table) once its dependencies succeeded and its delay passed; at once if it
        has neither. Raises what the executor raises when it cannot take the job (the job is then let go: it stays
        journaled)."""
        if not job.depends_on and job.delay <= 0:
            try:
                self._start(job.spec)
            except Exception:
                self.table.transition(job.job_id, HostState.RELEASED, "the executor could not take it")
                raise
            return
        if job.depends_on:
            self.table.transition(job.job_id, HostState.WAITING, "it depends on other jobs", payload=job)
        else:
            self.table.transition(job.job_id, HostState.DELAYED, "it asked for a delay", payload=job,
                                  ready_at=time.monotonic() + job.delay)
        with self._wake:
            if self._thread is None:
                self._thread = threading.Thread(target=self._run, name="ades-job-scheduler", daemon=True)
                self._thread.start()
            self._wake.notify()

    def waiting(self) -> list[str]:
        return [job.job_id for job in self.table.in_state(HostState.WAITING, HostState.DELAYED)]

    def close(self) -> None:
        """Stop checking; the jobs still waiting are let go (they stay journaled for the next start)."""
        with self._wake:
            self._closed = True
            self._wake.notify()
        if self._thread is not None:
            self._thread.join(timeout=5)
        for job in self.table.in_state(HostState.WAITING, HostState.DELAYED):
            self.table.transition(job.job_id, HostState.RELEASED, "the server stops")

    # --- the loop ---
    def _run(self) -> None:
        while True:
            with self._wake:
                while not self._closed and not self.waiting():
                    self._wake.wait()
                if self._closed:
                    return
            try:
                self.round(time.monotonic())
            except Exception as err:  # ES down, say: keep the jobs and try again
                log.warning("checking waiting jobs failed: %s", err)
            with self._wake:
                if not self._closed:
                    self._wake.wait(self.poll)

    def round(self, now: float) -> list[Step]:
        """Check the waiting jobs once and carry out what `decide` says; the steps taken."""
        jobs = self.table.in_state(HostState.WAITING, HostState.DELAYED)
        ids = {job.job_id for job in jobs}
        for job in jobs:
            ids.update(job.payload.depends_on)
        statuses = self._statuses(sorted(ids))
        cancelled = {job.job_id for job in jobs if job.payload.spec.folder.cancel_requested()}
        steps = decide(jobs, statuses, cancelled, now)
        payloads = {job.job_id: job.payload for job in jobs}
        for step in steps:
            self._take(step, payloads[step.job_id])
        return steps

    def _take(self, step: Step, queued: QueuedJob) -> None:
        if step.to is HostState.QUEUED:
            try:
                self._start(queued.spec)  # the executor moves it to QUEUED
            except Exception as err:  # the executor is gone (shutting down): the job must not hang
                reason = f"could not start the job: {err}"
                self.table.transition(step.job_id, HostState.ENDED, reason, outcome=Status.FAILED)
                self.publisher.publish(StatusUpdate(job_id=step.job_id, status=Status.FAILED, message=reason),
                                       queued.spec.sink)
            return
        fields = {"outcome": step.outcome} if step.to is HostState.ENDED else {"ready_at": step.ready_at}
        self.table.transition(step.job_id, step.to, step.reason, **fields)
        if step.publish is not None:
            self.publisher.publish(step.publish, queued.spec.sink)
