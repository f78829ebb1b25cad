"""LocalExecutor: N warm worker processes on this machine, each running one job at a time through the launcher.

Which queued job a free worker runs next is the parent's to decide, in a fair order across users
(ades.jobs.fairshare): the workers' queue holds at most one job per worker, the rest wait in the parent's fair
queue, and each job's end lets the next one go.

Workers are started once, warm (cwltool imported and its CWL schemas loaded, ades.jobs.launcher.warm_up), and take
jobs from a queue. They are forked from multiprocessing's forkserver, a clean single-threaded process (not a copy of
a server that holds threads and sockets) that warmed itself up once (ades.jobs.warm), so a new executor's workers
are ready at once. The parent (the server) learns from the workers' event queue which job started (and its process
group) and how it ended, and moves the job through the table accordingly.

Under gunicorn each worker process of the server has its own LocalExecutor: a job is held by the executor of the
process that accepted it, and a dismissal that reaches another process stops it through its folder
(ades.jobs.service).
"""

from __future__ import annotations

import logging
import multiprocessing
import os
import queue
import signal
import threading
import time
from collections.abc import Mapping
from typing import Any

from ades.jobs import groups
from ades.jobs.executor import DEFAULT_GRACE
from ades.jobs.fairshare import FairQueue
from ades.jobs.launcher import run_one, warm_up
from ades.jobs.lifecycle import HostState, JobTable, TransitionRefused
from ades.jobs.pause import hold
from ades.jobs.publisher import Publisher
from ades.jobs.spec import RunSpec
from ades.status import Status

FORKSERVER_PRELOAD = "ades.jobs.warm"
log = logging.getLogger(__name__)


def worker_main(jobs: Any, events: Any, stopping: Any, nice: int = 0) -> None:
    """Body of a warm worker: run the jobs of the queue, one at a time, reporting to `events`."""
    # Ctrl-C reaches the whole process group; the parent stops workers itself, in order.
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    if nice:
        os.nice(nice)  # inherited by every job child and the tools it runs
    warm_up()
    publisher = Publisher()
    while (raw := jobs.get()) is not None:
        spec = RunSpec.model_validate_json(raw)
        # Shutting down: a job still queued is not started only to be killed; it stays `submitted` and journaled
        # for the next start. A job held while execution is paused is let go the same way (its worker would
        # otherwise never read the shutdown sentinel queued behind it).
        if not hold(spec.folder, stopping.is_set, lambda job_id=spec.job_id: events.put(("held", job_id, None))):
            return
        outcome = run_one(spec, publisher, lambda pgid, job_id=spec.job_id: events.put(("started", job_id, pgid)))
        events.put(("ended", spec.job_id, outcome.value))


class LocalExecutor:
    """Runs jobs in `n_workers` warm processes (default: one per CPU), in a fair order across users weighted by
    `shares` (user -> share, 1 for others)."""

    def __init__(self, n_workers: int | None = None, *, table: JobTable | None = None, grace: float = DEFAULT_GRACE,
                 start_method: str = "forkserver", nice: int = 0, shares: Mapping[str, float] | None = None) -> None:
        context = multiprocessing.get_context(start_method)
        if start_method == "forkserver":
            context.set_forkserver_preload([FORKSERVER_PRELOAD])
        self.table = table or JobTable()
        self.grace = grace
        self._jobs = context.Queue()
        self._events = context.Queue()
        self._stopping = context.Event()
        self._closed = False
        self._fair: FairQueue[str] = FairQueue(shares)
        self._handed = 0
        """jobs in the workers' queue or in a worker, not ended yet"""
        self._lock = threading.Lock()
        self.workers = [
            context.Process(target=worker_main, args=(self._jobs, self._events, self._stopping, nice),
                            daemon=True, name=f"ades-worker-{i}")
            for i in range(n_workers or os.cpu_count() or 1)
        ]
        for worker in self.workers:
            worker.start()
        self._listener = threading.Thread(target=self._listen, name="ades-executor-events", daemon=True)
        self._listener.start()

    # --- Executor protocol ---
    def submit(self, spec: RunSpec) -> None:
        if self._closed:
            raise RuntimeError("the executor is closed")
        self.table.transition(spec.job_id, HostState.QUEUED, "handed to the local executor", payload=spec,
                              handle=self)
        with self._lock:
            self._fair.push(spec.user_id or "", spec.model_dump_json())
            self._hand_on()

    def cancel(self, job_id: str) -> bool:
        job = self.table.get(job_id)
        if job.handle is not self or job.state not in (HostState.QUEUED, HostState.HELD, HostState.STARTED):
            return False
        job.payload.folder.request_cancel()  # a queued job is dismissed by its worker when it would start
        job = self.table.get(job_id)  # it may have started meanwhile
        if job.state is HostState.STARTED and job.pgid:
            threading.Thread(target=groups.stop, args=(job.pgid, self.grace, lambda: self._ended(job_id)),
                             name=f"ades-cancel-{job_id[:8]}", daemon=True).start()
        return True

    def close(self) -> None:
        """Cancel the running jobs, let the queued ones go (they stay journaled), stop the workers."""
        if self._closed:
            return
        with self._lock:
            self._closed = True
            self._fair = FairQueue()  # their table entries are released below
        for job in self.table.in_state(HostState.STARTED):
            if job.handle is self:
                self.cancel(job.job_id)
        self._stopping.set()
        for _ in self.workers:
            self._jobs.put(None)
        deadline = time.monotonic() + self.grace + 5
        for worker in self.workers:
            worker.join(max(0.1, deadline - time.monotonic()))
            if worker.is_alive():
                worker.kill()
                worker.join(1)
        self._events.put(None)
        self._listener.join(2)
        for job in self.table.in_state(HostState.QUEUED, HostState.HELD):
            if job.handle is self:
                self.table.transition(job.job_id, HostState.RELEASED, "the executor closed before starting it")

    def wait(self, job_id: str, timeout: float) -> Status | None:
        return self.table.wait_ended(job_id, timeout)

    def wait_started(self, job_id: str, timeout: float) -> int | None:
        return self.table.wait_started(job_id, timeout)

    def backlog(self) -> bool:
        """Whether jobs wait in the queue for a free worker."""
        return len(self._fair) > 0 or not self._jobs.empty()

    def running(self) -> dict[str, int]:
        """job id -> process group of the job, for the jobs running now."""
        return {job.job_id: job.pgid for job in self.table.in_state(HostState.STARTED)
                if job.handle is self and job.pgid}

    # --- internals ---
    def _hand_on(self) -> None:
        """Give the workers the next jobs in fair order, as many as there are workers without one (under _lock).
        No more: a job in the workers' queue can no longer be overtaken."""
        while not self._closed and self._handed < len(self.workers) and self._fair:
            self._jobs.put(self._fair.pop())
            self._handed += 1

    def _ended(self, job_id: str) -> bool:
        return self.table.state(job_id) is HostState.ENDED

    def _listen(self) -> None:
        while True:
            try:
                event = self._events.get(timeout=1.0)
            except queue.Empty:
                if self._closed and not any(w.is_alive() for w in self.workers):
                    return
                continue
            if event is None:
                return
            kind, job_id, value = event
            try:
                if kind == "held":
                    self.table.transition(job_id, HostState.HELD, "a worker took it while execution is paused")
                elif kind == "started":
                    self.table.transition(job_id, HostState.STARTED, "a worker started its process group",
                                          pgid=int(value))
                else:
                    with self._lock:
                        self._handed -= 1
                        self._hand_on()
                    self.table.transition(job_id, HostState.ENDED, "its worker saw it end", outcome=Status(value))
            except TransitionRefused as err:  # a bug; the listener must go on for the other jobs
                log.error("job %s: %s", job_id, err)
