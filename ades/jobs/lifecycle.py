"""Host states of a job and the one table of moves between them.

The store holds a job's public status (ades.status: submitted, running, succeeded, ...), written through the event
pipeline. This is the other side: what the process that holds a job knows of it on its host. The main road is

    released -> journaled -> waiting -> delayed -> queued -> held -> started -> ended

with shortcuts (no dependencies, no delay, execution not paused), ends before a start (dismissed, a dependency
failed), and releases (let go, still journaled, for the next start); TRANSITIONS lists every move. Every change
goes through `JobTable.transition(job, to, reason)`, which refuses a move the table does not list. The scheduler,
both executors, a Dask worker and reconciliation all use it, so a job's life on a host reads in one place (in the
spirit of dask.distributed's transition table and rq's one-place status handling). `RELEASED` is both "not held
here" and "let go": a released job's entry is dropped.
"""

from __future__ import annotations

import logging
import threading
import time
from collections import OrderedDict
from enum import StrEnum
from typing import Any, NamedTuple

from ades.status import Status

REMEMBER_ENDED = 10_000
"""Ended jobs whose outcome `wait_ended` still answers; older ones are forgotten (the store has them)."""
log = logging.getLogger(__name__)


class HostState(StrEnum):
    RELEASED = "released"
    """not held by this process: never seen here, or let go (it stays journaled for the next start)"""
    JOURNALED = "journaled"
    """accepted here: its line is in this process's journal and it is indexed as submitted"""
    WAITING = "waiting"
    """held until the jobs it depends on have succeeded"""
    DELAYED = "delayed"
    """held until its delay has passed"""
    QUEUED = "queued"
    """handed to an executor, not started yet"""
    HELD = "held"
    """taken by a worker while execution is paused (ades.jobs.pause): it starts once execution resumes"""
    STARTED = "started"
    """its process group runs"""
    ENDED = "ended"
    """its outcome (a terminal Status) is known here"""


R, J, W, D, Q, H, S, E = (HostState.RELEASED, HostState.JOURNALED, HostState.WAITING, HostState.DELAYED,
                          HostState.QUEUED, HostState.HELD, HostState.STARTED, HostState.ENDED)

TRANSITIONS: dict[tuple[HostState, HostState], str] = {
    (R, J): "accepted here, or found unstarted in the journal of a process that is gone",
    (R, Q): "handed straight to an executor (a task that reached a Dask worker)",
    (R, S): "found running when a server started (its process group outlived the server)",
    (J, W): "it depends on jobs that have not succeeded yet",
    (J, D): "it asked for a delay",
    (J, Q): "handed to the executor",
    (J, R): "could not be handed on (the executor is closing): it stays journaled",
    (W, D): "every dependency succeeded; its delay starts now",
    (W, Q): "every dependency succeeded",
    (W, E): "a dependency failed or is gone, or it was dismissed, while it waited",
    (W, R): "the server stops: it stays journaled",
    (D, Q): "its delay has passed",
    (D, E): "dismissed, or it could not be started, after its delay",
    (D, R): "the server stops: it stays journaled",
    (Q, H): "a worker took it while execution is paused",
    (Q, S): "a worker started its process group",
    (Q, E): "dismissed before it started, or it ran where this process does not see it start",
    (Q, R): "the executor closed before starting it: it stays journaled",
    (H, S): "execution resumed and a worker started its process group",
    (H, E): "dismissed while execution was paused",
    (H, R): "the executor closed while execution was paused: it stays journaled",
    (S, E): "its process group ended and its outcome is known",
}
"""Every move a job may make on a host, with what it means. Anything else is refused."""


class TransitionRefused(ValueError):
    """A move the table does not allow: a bug in whoever asked for it."""


class HostJob(NamedTuple):
    """What a process knows of one job it holds: an immutable snapshot (a tuple: two are made on every submission,
    and a frozen dataclass costs several times more to make). `payload` is what starts it (a QueuedJob or a
    RunSpec); `handle` is the executor's own (a Dask future, or the local executor)."""

    job_id: str
    state: HostState
    reason: str
    payload: Any = None
    ready_at: float | None = None
    """monotonic time a delayed job's delay ends"""
    pgid: int | None = None
    outcome: Status | None = None
    handle: Any = None


def _moved(job: HostJob, to: HostState, reason: str, fields: dict[str, Any]) -> HostJob:
    """The entry after the move."""
    ended = to is HostState.ENDED  # what started it and the executor's handle are of no more use then
    return HostJob(job.job_id, to, reason,
                   None if ended else fields.get("payload", job.payload),
                   fields.get("ready_at", job.ready_at), fields.get("pgid", job.pgid),
                   fields.get("outcome", job.outcome),
                   None if ended else fields.get("handle", job.handle))


def check(current: HostState, to: HostState) -> str:
    """What the move means; raises TransitionRefused when the table does not list it."""
    meaning = TRANSITIONS.get((current, to))
    if meaning is None:
        raise TransitionRefused(f"a job cannot go from {current} to {to}")
    return meaning


class JobTable:
    """The jobs one process holds, by host state. Thread-safe; `wait_*` block on changes, never poll."""

    def __init__(self, remember_ended: int = REMEMBER_ENDED) -> None:
        self.remember_ended = remember_ended
        self._jobs: dict[str, HostJob] = {}
        self._ended: OrderedDict[str, HostJob] = OrderedDict()
        self._changed = threading.Condition()

    def transition(self, job_id: str, to: HostState, reason: str, **fields: Any) -> HostJob:
        """Move the job to `to` because of `reason` (the stimulus, kept on the entry); `fields` update the entry
        (payload, ready_at, pgid, outcome, handle). Moving to ENDED needs a terminal `outcome`."""
        if to is HostState.ENDED and not (isinstance(fields.get("outcome"), Status) and fields["outcome"].terminal):
            raise TransitionRefused(f"job {job_id} cannot end without a terminal outcome (got {fields.get('outcome')})")
        with self._changed:
            current = self._get(job_id)
            check(current.state, to)
            job = _moved(current, to, reason, fields)
            if to is HostState.RELEASED:
                self._jobs.pop(job_id, None)
            elif to is HostState.ENDED:
                self._jobs.pop(job_id, None)
                self._ended[job_id] = job
                if len(self._ended) > self.remember_ended:
                    self._ended.popitem(last=False)
            else:
                self._jobs[job_id] = job
            self._changed.notify_all()
        log.debug("job %s: %s -> %s (%s)", job_id, current.state, to, reason)
        return job

    def get(self, job_id: str) -> HostJob:
        """The job's entry; a RELEASED one when this process does not hold it."""
        with self._changed:
            return self._get(job_id)

    def state(self, job_id: str) -> HostState:
        return self.get(job_id).state

    def in_state(self, *states: HostState) -> list[HostJob]:
        with self._changed:
            ended = list(self._ended.values()) if HostState.ENDED in states else []
            return [job for job in self._jobs.values() if job.state in states] + ended

    def wait_ended(self, job_id: str, timeout: float) -> Status | None:
        """The job's outcome once it has ended here, or None after `timeout` seconds."""
        job = self.wait_for(job_id, timeout, HostState.ENDED)
        return job.outcome if job is not None else None

    def wait_started(self, job_id: str, timeout: float) -> int | None:
        """The job's process group once it has started here; None if it ended without starting, or on timeout."""
        job = self.wait_for(job_id, timeout, HostState.STARTED, HostState.ENDED)
        return job.pgid if job is not None and job.state is HostState.STARTED else None

    def wait_for(self, job_id: str, timeout: float, *states: HostState) -> HostJob | None:
        """The job's entry once it is in one of `states`, or None after `timeout` seconds."""
        deadline = time.monotonic() + timeout
        with self._changed:
            while (job := self._get(job_id)).state not in states:
                left = deadline - time.monotonic()
                if left <= 0:
                    return None
                self._changed.wait(left)
            return job

    def _get(self, job_id: str) -> HostJob:
        return (self._jobs.get(job_id) or self._ended.get(job_id)
                or HostJob(job_id, HostState.RELEASED, "not held by this process"))
