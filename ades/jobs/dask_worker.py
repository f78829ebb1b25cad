"""The Dask worker's side of the Dask executor: the task that runs one job, and cancelling it where it runs.

Each job is one task (`run_task`, key `ades-job-<id>`) whose argument is the RunSpec as JSON. The job folder
(`<data_dir>/jobs/<id>/`) must be the same path for the server and the workers (one host, or a shared file system):
the results, the log and the cancel request live there. The task waits while execution is paused, records its
attempt in the folder, and runs the job in a warm launcher (ades.jobs.dask_launchers) borrowed for its duration.

A lost worker (SIGKILLed, crashed, host gone): its launchers see their parent die and kill their jobs' groups. The
scheduler hands the task to another worker; that attempt finds the first one's record in the job folder and, by
`retry_lost`, fails the job with the reason or runs it once more.

Load with `--preload ades.jobs.dask_worker` (`ades dask worker` does): each worker then starts one warm launcher per
thread at once, not in its first jobs.
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import threading
import time
from typing import Any

from ades.jobs import groups
from ades.jobs.dask_launchers import Launcher, LauncherPool
from ades.jobs.lifecycle import HostState, JobTable
from ades.jobs.pause import hold
from ades.jobs.publisher import Publisher
from ades.jobs.spec import RunSpec
from ades.status import Status

MAX_ATTEMPTS_WITH_RETRY = 2
BURY_TIMEOUT = 10.0
"""Seconds an earlier attempt's job gets to be gone (its launcher kills it) before it is killed here."""

_POOL = LauncherPool()
_TABLE = JobTable()
"""The jobs this worker process holds (a task arrived: queued; its launcher forked it: started; ended)."""
_PUBLISHER = Publisher()


def dask_setup(worker: Any) -> None:
    """Dask preload hook: one warm launcher per worker thread, started now."""
    _POOL.prestart(int(getattr(worker, "nthreads", 1) or 1))


def dask_teardown(worker: Any) -> None:
    # idle launchers end now; busy ones end with their worker process (their parent watch)
    _POOL.close()


def worker_address() -> str:
    try:
        from distributed import get_worker

        return str(get_worker().address)
    except (ImportError, ValueError):
        return f"pid {os.getpid()}"


def _bury(previous: list[dict[str, Any]]) -> None:
    """Make sure no earlier attempt still runs on this host before the folder is reused. Its launcher kills it
    (SIGKILL, silently) within a moment of the worker's death: wait for that first, and only then kill what a
    launcher could not. No SIGTERM: a job that dies of one while its launcher still watches it is reported as a
    death, not as a lost worker."""
    host = socket.gethostname()
    for attempt in previous:
        if attempt.get("host") == host and attempt.get("pgid"):
            for pgid in groups.wait_gone({int(attempt["pgid"])}, BURY_TIMEOUT):
                groups.kill(pgid)


def claim(spec: RunSpec, retry_lost: bool) -> tuple[int, Status | None]:
    """Record this attempt and return its number; with an outcome when the job already ended, or when an earlier
    attempt's worker was lost and no retry is due (then the job is settled here)."""
    folder = spec.folder
    folder.make()  # made by the first attempt (submissions are only journaled)
    ended = folder.ended()
    if ended is not None:
        # its worker died after the job ended but before the scheduler heard: do not run it twice
        return 0, ended
    previous = folder.attempts()
    attempt = len(previous) + 1
    worker = worker_address()
    if previous and not folder.cancel_requested():
        _bury(previous)
        lost = f"the Dask worker running the job ({previous[-1].get('worker', 'unknown')}) was lost"
        if not retry_lost or attempt > MAX_ATTEMPTS_WITH_RETRY:
            why = "ADES_DASK_RETRY_LOST is off" if not retry_lost else f"it was already run {len(previous)} times"
            _PUBLISHER.failed(folder, f"{lost}; not run again ({why})", spec.sink)
            folder.mark_ended(Status.FAILED)
            return attempt, Status.FAILED
        folder.append_log(f"ades: {lost}; running the job again on {worker} (attempt {attempt})")
        folder.clear_run()
    folder.record_attempt({"attempt": attempt, "worker": worker, "host": socket.gethostname(), "at": time.time()})
    return attempt, None


def run_task(spec_json: str, retry_lost: bool = False) -> Status:
    """The Dask task of one job: run it in a warm launcher of this worker; its outcome."""
    spec = RunSpec.model_validate_json(spec_json)
    folder = spec.folder
    hold(folder)  # while execution is paused (ades.jobs.pause)
    attempt, settled = claim(spec, retry_lost)
    if settled is not None:
        return settled
    _TABLE.transition(spec.job_id, HostState.QUEUED, f"attempt {attempt} reached this worker", payload=spec)

    def started(pgid: int) -> None:
        _TABLE.transition(spec.job_id, HostState.STARTED, "its launcher started its process group", pgid=pgid)
        folder.record_attempt({"attempt": attempt, "pgid": pgid})

    launcher = _POOL.acquire()
    outcome = launcher.run(spec_json, started)
    if outcome is None:
        outcome = _launcher_lost(spec, launcher)
    else:
        _POOL.release(launcher)
    _TABLE.transition(spec.job_id, HostState.ENDED, "its launcher saw it end", outcome=outcome)
    folder.mark_ended(outcome)
    return outcome


def _launcher_lost(spec: RunSpec, launcher: Launcher) -> Status:
    """The launcher died under the job (killed, out of memory): nothing else will report it."""
    pgid = _TABLE.get(spec.job_id).pgid
    if pgid:
        groups.kill(pgid)
    if spec.folder.cancel_requested():
        return _PUBLISHER.dismissed(spec.job_id, "dismissed on request", spec.sink)
    try:
        code: int | None = launcher.proc.wait(2)
    except subprocess.TimeoutExpired:  # alive but mute: of no more use
        launcher.proc.kill()
        code = None
    how = "was stopped (its worker is shutting down)" if code == 128 + signal.SIGTERM else f"died ({code})"
    _PUBLISHER.failed(spec.folder, f"the job's launcher process on {worker_address()} {how}", spec.sink)
    return Status.FAILED


def cancel_here(job_id: str, grace: float) -> bool:
    """Run on every worker by `DaskExecutor.cancel` (on the worker's event loop: quick, the stop goes to a thread).
    True if the job is held on this worker. The server has already requested the cancel in the job's folder."""
    job = _TABLE.get(job_id)
    if job.state not in (HostState.QUEUED, HostState.STARTED):
        return False
    if job.state is HostState.STARTED and job.pgid:
        # not started yet: its launcher checks the request right after forking
        threading.Thread(target=groups.stop, name=f"ades-cancel-{job_id[:8]}", daemon=True,
                         args=(job.pgid, grace, lambda: _TABLE.state(job_id) is HostState.ENDED)).start()
    return True


def running_here() -> dict[str, int | None]:
    """job id -> process group of the job (None while it is being forked), for the jobs held on this worker."""
    return {job.job_id: job.pgid for job in _TABLE.in_state(HostState.QUEUED, HostState.STARTED)}
