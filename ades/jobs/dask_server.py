"""DaskExecutor: jobs run on a Dask distributed cluster (ADES_DASK_SCHEDULER); the server's side.

Each job is one task (ades.jobs.dask_worker.run_task) keyed `ades-job-<id>`; its future is the job's handle in the
table, and the future's end is the job's end here (whether it started is the worker's to know). Tasks are fire and
forget: the scheduler runs them to the end whatever becomes of this process (killed, or closed: its jobs are not
cancelled), and a node that submits the same job again gets the live task, or one that finds the job ended in the
store and does not run it. Each task carries the wrapped workflow's text (for a worker with a data dir of its own,
which lacks the file) and the store's address (ades.jobs.dask_checks), not the journal. Cancel requests the job's
cancel in its folder, then asks every worker to stop the job if it holds it; a job still queued in the scheduler is
dropped, and a task that starts after the request finds it in the store or its folder and dismisses itself.

Queued jobs start in a fair order across users: each task's Dask priority is its job's start tag, negated
(ades.jobs.fairshare; Dask runs higher priorities first, and equal ones in submission order). The scheduler does
the ordering, across every server process that sends it jobs. This side does not see a task start, only end, so
its virtual time follows the tags of the jobs that ended: a little behind the jobs running, which puts a newly
active user's job just ahead of the backlog.
"""

from __future__ import annotations

import contextlib
import threading
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from ades.jobs.dask_checks import StoreAddress
from ades.jobs.dask_worker import KEY_PREFIX, cancel_here, run_task, running_here
from ades.jobs.executor import DEFAULT_GRACE
from ades.jobs.fairshare import FairShare
from ades.jobs.folder import JobFolder
from ades.jobs.lifecycle import HostState, JobTable, TransitionRefused
from ades.jobs.publisher import Publisher
from ades.jobs.spec import RunSpec
from ades.status import Status

WORKFLOW_TEXTS_MAX = 256


def _held_keys(keys: list[str], dask_scheduler: Any = None) -> list[str]:
    """Run on the scheduler: which of `keys` it holds a task for."""
    return [key for key in keys if key in dask_scheduler.tasks]


class DaskExecutor:
    """The Executor protocol on a Dask cluster. `data_dir` lets `cancel` reach jobs another server process
    submitted; `shares`: user -> share of the fair order (1 for others); `store`: where a task checks the job's status
and the pause switch before it starts it (None: it does not)."""

    def __init__(self, scheduler: str, data_dir: Path | None = None, *, table: JobTable | None = None,
                 retry_lost: bool = False, grace: float = DEFAULT_GRACE, connect_timeout: float = 10.0,
                 shares: Mapping[str, float] | None = None, store: StoreAddress | None = None) -> None:
        from distributed import Client

        self.table = table or JobTable()
        self.retry_lost = retry_lost
        self.grace = grace
        self.data_dir = data_dir
        self.publisher = Publisher()
        self._share = FairShare(shares)
        self._tags: dict[str, float] = {}
        self._store = store.model_dump_json() if store is not None else None
        self._texts: dict[Path, str] = {}
        self._lock = threading.Lock()
        try:
            self.client = Client(scheduler, set_as_default=False, timeout=connect_timeout)
        except (OSError, TimeoutError) as err:
            raise RuntimeError(f"cannot reach the Dask scheduler at {scheduler} (ADES_DASK_SCHEDULER): {err}") from err
        self._closed = False

    # --- Executor protocol ---
    def submit(self, spec: RunSpec) -> None:
        if self._closed:
            raise RuntimeError("the executor is closed")
        with self._lock:
            tag = self._tags[spec.job_id] = self._share.tag(spec.user_id or "")
        from distributed import fire_and_forget

        future = self.client.submit(run_task, spec.model_dump_json(), self.retry_lost,
                                    self._workflow_text(spec.workflow_file), self._store,
                                    key=KEY_PREFIX + spec.job_id, pure=False, priority=-tag)
        fire_and_forget(future)
        self.table.transition(spec.job_id, HostState.QUEUED, "handed to the Dask scheduler", payload=spec,
                              handle=future)
        future.add_done_callback(self._done)

    def cancel(self, job_id: str) -> bool:
        job = self.table.get(job_id)
        ours = job.state is HostState.QUEUED and job.handle is not None
        if ours:
            job.payload.folder.request_cancel()
        elif self.data_dir is not None and JobFolder(self.data_dir, job_id).exists():
            JobFolder(self.data_dir, job_id).request_cancel()  # submitted by another server process of this data dir
        # the request first: a task that starts after this line dismisses itself, whatever the broadcast finds;
        # a worker with a data dir of its own requests it in its own folder
        answers = self.client.run(cancel_here, job_id, self.grace, on_error="return")
        running = any(answer is True for answer in answers.values())
        if ours and not running:
            # still queued in the scheduler: dropped (forced: fire and forget wants it too); _done reports it dismissed
            self.client.cancel([job.handle], force=True)
        return ours or running

    def close(self) -> None:
        """Let go of the cluster: the jobs handed to it run to their end (fire and forget) and report it
        themselves."""
        if self._closed:
            return
        self._closed = True
        self.client.close()

    def wait(self, job_id: str, timeout: float) -> Status | None:
        return self.table.wait_ended(job_id, timeout)

    def running(self) -> dict[str, tuple[str, int | None]]:
        """job id -> (worker address, process group of the job) for the jobs the workers hold now."""
        answers = self.client.run(running_here, on_error="ignore")
        return {job_id: (worker, pgid) for worker, jobs in answers.items() for job_id, pgid in jobs.items()}

    def known_tasks(self, job_ids: list[str]) -> set[str]:
        """The jobs whose tasks the scheduler still holds (queued, running, or rescheduled after a lost worker): a
        node's lease sweep leaves them to Dask."""
        keys = [KEY_PREFIX + job_id for job_id in job_ids]
        held = self.client.run_on_scheduler(_held_keys, keys)
        return {str(key).removeprefix(KEY_PREFIX) for key in held}

    # --- internals ---
    def _workflow_text(self, path: Path) -> str:
        # named by its content, so a file once read never changes
        text = self._texts.get(path)
        if text is None:
            text = path.read_text(encoding="utf-8")
            with self._lock:
                if len(self._texts) >= WORKFLOW_TEXTS_MAX:
                    self._texts.clear()
                self._texts[path] = text
        return text

    def _done(self, future: Any) -> None:
        # Dask calls this in its callback thread, once per job, however the task ended
        job = self.table.get(str(future.key).removeprefix(KEY_PREFIX))
        with self._lock:
            tag = self._tags.pop(job.job_id, None)
            if tag is not None:
                self._share.advance(tag)
        if job.state is not HostState.QUEUED or self._closed:
            return  # closed: the task goes on without this process, which no longer reports it
        outcome = self._outcome(future, job.payload)
        with contextlib.suppress(TransitionRefused):  # ended meanwhile: the first end stands
            self.table.transition(job.job_id, HostState.ENDED, "its Dask task ended", outcome=outcome)

    def _outcome(self, future: Any, spec: RunSpec) -> Status:
        from distributed.scheduler import KilledWorker

        cancelled = spec.folder.cancel_requested()
        if future.status == "finished":
            try:
                return Status(future.result(timeout=60))
            except Exception as err:  # the result went with its worker; the task left the outcome in the folder
                ended = spec.folder.ended()
                if ended is not None:
                    return ended
                reason = f"the job's outcome could not be fetched from Dask: {type(err).__name__}: {err}"
        elif future.status == "error":
            error = future.exception(timeout=60)
            if isinstance(error, KilledWorker):
                reason = f"the Dask workers running the job were lost and the scheduler gave up on it ({error})"
            else:
                reason = f"the Dask task of the job failed: {type(error).__name__}: {error}"
        elif cancelled or self._closed:
            return self.publisher.dismissed(spec.job_id, "dismissed before it started", spec.sink)
        else:
            reason = "the Dask scheduler dropped the job (was it restarted?)"
        if cancelled:
            return self.publisher.dismissed(spec.job_id, "dismissed on request", spec.sink)
        self.publisher.failed(spec.folder, reason, spec.sink)
        return Status.FAILED
