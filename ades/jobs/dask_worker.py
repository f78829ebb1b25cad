"""The Dask worker's side of the Dask executor: the task that runs one job, and cancelling it where it runs.

Each job is one task (`run_task`, key `ades-job-<id>`) whose argument is the RunSpec as JSON. A worker with a data
dir of its own (ADES_DATA_DIR; `ades dask worker --data-dir`) runs the job in a folder there, with the wrapped
workflow written into its cache from the text the task carries; otherwise in the data dir the server names (one
host, or a shared file system). Before it starts the job the task asks the store (ades.jobs.dask_checks): a job
already ended or dismissed does not run, and it waits while execution is paused; then it records its start on the
scheduler and runs the job in a warm launcher (ades.jobs.dask_launchers) borrowed for its duration.

A lost worker (SIGKILLed, crashed, host gone): its launchers see their parent die and kill their jobs' groups. The
scheduler hands the task to another worker; that attempt finds the first one's start recorded on the task and, by
`retry_lost`, fails the job with the reason or runs it once more.

Load with `--preload ades.jobs.dask_worker` (`ades dask worker` does): each worker then starts one warm launcher per
thread at once, not in its first jobs.
"""

from __future__ import annotations

import json
import logging
import os
import signal
import socket
import subprocess
import threading
import time
import uuid
from pathlib import Path
from typing import Any

from ades.jobs import groups
from ades.jobs.dask_checks import StoreAddress, check_store, claim_start, paused_now
from ades.jobs.dask_launchers import Launcher, LauncherPool
from ades.jobs.dismissals import DismissalWatch
from ades.jobs.executor import DEFAULT_GRACE
from ades.jobs.folder import DataDir
from ades.jobs.leases import DASK_WORKER, LEASE_ENV, Lease
from ades.jobs.lifecycle import HostState, JobTable, TransitionRefused
from ades.jobs.pause import POLL_SECONDS
from ades.jobs.publisher import Publisher
from ades.jobs.spec import RunSpec
from ades.status import Status
from ades.store.hosts import HostStore

KEY_PREFIX = "ades-job-"
MAX_ATTEMPTS_WITH_RETRY = 2
BURY_TIMEOUT = 10.0
"""Seconds an earlier attempt's job gets to be gone (its launcher kills it) before it is killed here."""

log = logging.getLogger(__name__)
_POOL = LauncherPool()
_TABLE = JobTable()
"""The jobs this worker process holds (a task arrived: queued; its launcher forked it: started; ended)."""
_PUBLISHER = Publisher()


def dask_setup(worker: Any) -> None:
    """Dask preload hook: one warm launcher per worker thread, started now; a data dir of its own made private."""
    own = own_data_dir()
    if own is not None:
        DataDir(own).make_private()
    os.environ[LEASE_ENV] = LEASE_ID  # before the launchers start: their jobs' running events name this lease
    _POOL.prestart(int(getattr(worker, "nthreads", 1) or 1))


def dask_teardown(worker: Any) -> None:
    # idle launchers end now; busy ones end with their worker process (their parent watch)
    _POOL.close()
    with _WATCHES_LOCK:
        watches = list(_WATCHES.values())
        _WATCHES.clear()
    for watch in watches:
        watch.close()
    with _WATCHES_LOCK:
        leases = list(_LEASES.values())
        _LEASES.clear()
    for lease in leases:
        lease.close()


def worker_address() -> str:
    try:
        from distributed import get_worker

        return str(get_worker().address)
    except (ImportError, ValueError):
        return f"pid {os.getpid()}"


def own_data_dir() -> Path | None:
    """This worker's own data dir: ADES_DATA_DIR of its environment (`ades dask worker --data-dir` sets it). None:
    jobs run in the data dir the server names (one host, or a file system every host shares)."""
    value = os.environ.get("ADES_DATA_DIR")
    return Path(value).expanduser().absolute() if value else None


def localized(spec_json: str, workflow_text: str | None) -> str:
    """The spec as this worker runs it: in its own data dir, with the wrapped workflow written into that data dir's
    cache from the text sent with the task when it is not there yet (the file is named by its content)."""
    own = own_data_dir()
    fields = json.loads(spec_json)
    workflow = Path(fields["workflow_file"])
    if own is not None and Path(fields["data_dir"]) != own:
        workflow = DataDir(own).wrapped_cache / workflow.name
        fields.update(data_dir=str(own), workflow_file=str(workflow))
        spec_json = json.dumps(fields, ensure_ascii=False)
    if workflow_text is not None and not workflow.exists():
        workflow.parent.mkdir(parents=True, exist_ok=True)
        partial = workflow.with_name(f".{workflow.name}.{os.getpid()}.{threading.get_ident()}.tmp")
        partial.write_text(workflow_text, encoding="utf-8")
        os.replace(partial, workflow)
    return spec_json


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


def claim(spec: RunSpec, retry_lost: bool, key: str) -> tuple[int, Status | None]:
    """Record this attempt's start on the scheduler and return its number; with an outcome when an earlier attempt's
    worker was lost and no retry is due (then the job is settled here). The job's folder (in this worker's data
    dir) keeps a record of the attempts made from it."""
    folder = spec.folder
    folder.make()  # made by the first attempt here (submissions are only journaled)
    worker = worker_address()
    previous = claim_start(key, worker)
    attempt = len(previous) + 1
    if previous and not folder.cancel_requested():
        lost = f"the Dask worker running the job ({previous[-1].get('worker', 'unknown')}) was lost"
        if not retry_lost or attempt > MAX_ATTEMPTS_WITH_RETRY:
            why = "ADES_DASK_RETRY_LOST is off" if not retry_lost else f"it was already run {len(previous)} times"
            _PUBLISHER.failed(folder, f"{lost}; not run again ({why})", spec.sink)
            folder.mark_ended(Status.FAILED)
            return attempt, Status.FAILED
        here = folder.attempts()
        if here:  # an earlier attempt ran in this very folder
            _bury(here)
            folder.clear_run()
        folder.append_log(f"ades: {lost}; running the job again on {worker} (attempt {attempt})")
    folder.record_attempt({"attempt": attempt, "worker": worker, "host": socket.gethostname(), "at": time.time()})
    return attempt, None


def run_task(spec_json: str, retry_lost: bool = False, workflow_text: str | None = None,
             store: str | None = None) -> Status:
    """The Dask task of one job: run it in a warm launcher of this worker; its outcome. `workflow_text`: the wrapped
    workflow, for a worker that lacks its file; `store`: a StoreAddress (JSON) whose word on the job and on a pause
    is asked first."""
    spec_json = localized(spec_json, workflow_text)
    spec = RunSpec.model_validate_json(spec_json)
    address = StoreAddress.model_validate_json(store) if store else None
    folder = spec.folder
    try:  # held from now on: a dismissal broadcast reaches it
        _TABLE.transition(spec.job_id, HostState.QUEUED, "its task reached this worker", payload=spec)
    except TransitionRefused:  # ended on this worker already (a node submitted it again): not twice
        return _TABLE.wait_ended(spec.job_id, 0) or Status.FAILED
    if address is not None:
        _watch(address)
    settled = _before_start(spec, address)
    if settled is None:
        attempt, settled = claim(spec, retry_lost, KEY_PREFIX + spec.job_id)
    if settled is not None:
        _TABLE.transition(spec.job_id, HostState.ENDED, "settled before it started", outcome=settled)
        return settled

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


def _before_start(spec: RunSpec, address: StoreAddress | None) -> Status | None:
    """The job's outcome if it must not start: it ended already (stored, or in this data dir's folder: its worker
    died after the end but before the scheduler heard) or was dismissed. Holds while execution is paused."""
    ended = spec.folder.ended()
    if ended is not None:
        return ended
    check = check_store(address, spec.job_id) if address is not None else None
    if check is not None and check.status is not None and check.status.terminal:
        return check.status
    if (check is not None and check.paused is not None) or paused_now(None, spec.data_dir):
        while paused_now(address, spec.data_dir) and not spec.folder.cancel_requested():
            time.sleep(POLL_SECONDS)
    if spec.folder.cancel_requested():
        return _PUBLISHER.dismissed(spec.job_id, "dismissed before it started", spec.sink)
    return None


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
    True if the job is held on this worker: its cancel is requested in its folder here (a task not started yet
    dismisses itself; its launcher checks right after forking) and a running job's group is stopped."""
    job = _TABLE.get(job_id)
    if job.state not in (HostState.QUEUED, HostState.STARTED):
        return False
    job.payload.folder.request_cancel()
    if job.state is HostState.STARTED and job.pgid:
        threading.Thread(target=groups.stop, name=f"ades-cancel-{job_id[:8]}", daemon=True,
                         args=(job.pgid, grace, lambda: _TABLE.state(job_id) is HostState.ENDED)).start()
    return True


_WATCHES: dict[str, DismissalWatch] = {}
_LEASES: dict[str, Lease] = {}
_WATCHES_LOCK = threading.Lock()
LEASE_ID = f"dask-worker-{socket.gethostname()}-{os.getpid()}-{uuid.uuid4().hex[:6]}"
"""This worker process's lease, in every store it serves: a job running here names it as its `host`, and API nodes
leave the job alone while it is fresh (ades.jobs.adoption)."""


def _watch(address: StoreAddress) -> None:
    """One dismissal watch per store this worker process serves: a job dismissed through any node, even while the
    node that submitted it is gone, stops here within a round of the watch (ades.jobs.dismissals)."""
    key = address.model_dump_json()
    with _WATCHES_LOCK:
        if key in _LEASES:
            return
        from ades.store import JobStore
        from ades.store.client import make_client

        settings = address.settings()
        client = make_client(settings)
        if key not in _WATCHES:
            _WATCHES[key] = DismissalWatch(JobStore(client, settings), _TABLE,
                                           lambda job_id: cancel_here(job_id, DEFAULT_GRACE) and None)
        lease = Lease(HostStore(client, settings), LEASE_ID, kind=DASK_WORKER, url=worker_address(),
                      length=settings.host_lease)
        try:
            _LEASES[key] = lease.start()
        except Exception as err:  # the store is away now: the job runs; the next task tries again
            log.warning("ades: the lease of %s could not be taken in %s: %s", LEASE_ID, settings.elasticsearch_url,
                        err)


def running_here() -> dict[str, int | None]:
    """job id -> process group of the job (None while it is being forked), for the jobs held on this worker."""
    return {job.job_id: job.pgid for job in _TABLE.in_state(HostState.QUEUED, HostState.STARTED)}
