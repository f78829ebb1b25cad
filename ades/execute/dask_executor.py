"""DaskExecutor: jobs run on a Dask distributed cluster (ADES_DASK_SCHEDULER).

Server side, each job is one Dask task (`run_task`, key `ades-job-<id>`) whose arguments are the RunSpec as JSON
and two settings. The job folder (`<data_dir>/jobs/<id>/`) must be the same path for the server and the workers
(one host, or a shared file system): the results, the log and the cancel marker live there.

Worker side, cwltool does not run in the Dask worker process itself: that process is threaded (its event loop, the
task threads), and a child forked from a threaded process can inherit a lock another thread held. Each worker keeps
warm *launchers* instead: single-threaded processes (cwltool imported, loaded tools cached) that run local.py's
`_run_one` — fork a child that makes itself a process-group leader and runs the job — and report over a pipe. A task
thread borrows one launcher for its job, so a worker with N threads runs N jobs at a time.

Cancel writes the cancel marker into the job folder, then asks every worker to kill the job's process group if it
runs the job; a job that has not started yet sees the marker when it does and is dismissed at once.

A lost worker (SIGKILLed, crashed, host gone): its launchers see their parent die and kill their jobs' groups. The
scheduler hands the task to another worker (Dask reschedules the tasks of a lost worker); that attempt finds the
first one's record in the job folder (`dask-attempts.jsonl`) and, by `retry_lost`, fails the job with the reason or
runs it once more. Should the scheduler give up on the task instead (KilledWorker), the server side fails the job.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import select
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time
import traceback
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ades.events.sinks import EventSink, make_sink
from ades.execute.base import wait_ended
from ades.execute.local import CANCEL_MARKER, DEFAULT_GRACE, MAX_REMEMBERED, _kill_group, _run_one, _warm_up
from ades.execute.pause import hold
from ades.execute.runner import RunSpec, data_dir_of, job_dir, publish_failed
from ades.models import StatusUpdate
from ades.services.base import group_alive
from ades.status import Status

KEY_PREFIX = "ades-job-"
ATTEMPTS_FILE = "dask-attempts.jsonl"
ENDED_FILE = "dask-ended"
MAX_ATTEMPTS_WITH_RETRY = 2
PARENT_POLL = 0.2
"""Seconds between a launcher's checks that its worker still lives."""
BURY_TIMEOUT = 10.0
MAX_SINKS = 32

log = logging.getLogger(__name__)


# --- sinks, cached per configuration (a worker serves jobs of any server, each with its own sink) ----------------
_SINKS: dict[str, EventSink] = {}
_SINKS_LOCK = threading.Lock()


def _sink_for(spec: RunSpec) -> EventSink:
    key = spec.sink.model_dump_json()
    with _SINKS_LOCK:
        sink = _SINKS.get(key)
        if sink is None:
            if len(_SINKS) >= MAX_SINKS:
                _SINKS.clear()
            sink = _SINKS[key] = make_sink(spec.sink.settings())
        return sink


def _publish(spec: RunSpec, update: StatusUpdate) -> None:
    try:
        _sink_for(spec).publish(update)
    except Exception as err:  # a sink outage must not lose the outcome we return; reconciliation settles the store
        log.error("could not publish %s for job %s: %s", update.status, update.job_id, err)


# --- the launcher process (single-threaded but for its parent watch) -------------------------------------------
class _Events:
    """What `_run_one` reports to (`put(("started", job_id, pid))`), written to the worker as JSON lines."""

    def __init__(self, out: Any, current: dict[str, int | None]) -> None:
        self.out = out
        self.current = current

    def put(self, event: tuple[str, str, Any]) -> None:
        kind, _, value = event
        if kind == "started":
            self.current["pgid"] = int(value)
            self.out.write(json.dumps({"event": "started", "pid": int(value)}) + "\n")


def _watch_parent(parent: int, current: dict[str, int | None]) -> None:
    # The worker died without closing us (SIGKILL, OOM): its job must not run on unwatched, maybe twice over once
    # the task is rescheduled. Polling getppid: a death signal would follow the worker *thread*, not the process.
    while True:
        time.sleep(PARENT_POLL)
        if os.getppid() != parent:
            pgid = current.get("pgid")
            if pgid:
                _kill_group(pgid, signal.SIGKILL)
            os._exit(1)


def launcher_main() -> None:
    """Body of a launcher: read RunSpecs (one JSON line each) on stdin, run them one at a time, report on stdout."""
    out = os.fdopen(os.dup(1), "w", buffering=1, encoding="utf-8")
    os.dup2(2, 1)  # whatever else prints goes to the worker's log, not into the protocol
    current: dict[str, int | None] = {"pgid": None}

    def stop(signum: int, frame: Any) -> None:
        # `ades services stop` terminates the worker's process group (us too); the job made its own group
        pgid = current.get("pgid")
        if pgid:
            _kill_group(pgid, signal.SIGKILL)
        os._exit(128 + signum)

    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # Ctrl-C on `ades dask worker`: the worker stops us in order
    threading.Thread(target=_watch_parent, args=(os.getppid(), current), daemon=True).start()
    _warm_up()
    out.write(json.dumps({"event": "ready", "pid": os.getpid()}) + "\n")
    events = _Events(out, current)
    for line in sys.stdin:
        if not line.strip():
            continue
        spec = RunSpec.model_validate_json(line)
        try:
            outcome = _run_one(spec, _sink_for(spec), events)
        except Exception as err:  # a bug in ades itself: this job fails with the reason, the launcher stays
            traceback.print_exc()
            publish_failed(spec, _sink_for(spec), f"the launcher could not run the job: {type(err).__name__}: {err}")
            outcome = Status.FAILED.value
        current["pgid"] = None
        out.write(json.dumps({"event": "ended", "outcome": outcome}) + "\n")


# --- worker side: launchers and the task -----------------------------------------------------------------------
class _Launcher:
    """A launcher process and the worker's end of its pipes."""

    def __init__(self) -> None:
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "ades.execute.dask_executor"],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=None,
        )
        self._buffer = b""
        self._ready = False

    @property
    def alive(self) -> bool:
        return self.proc.poll() is None

    def _message(self) -> dict[str, Any] | None:
        """The next message, or None once the launcher is dead."""
        assert self.proc.stdout is not None
        fd = self.proc.stdout.fileno()
        while b"\n" not in self._buffer:
            readable, _, _ = select.select([fd], [], [], 1.0)
            if not readable:
                if not self.alive:
                    return None
                continue
            chunk = os.read(fd, 65536)
            if not chunk:
                return None
            self._buffer += chunk
        line, self._buffer = self._buffer.split(b"\n", 1)
        return json.loads(line)

    def run(self, spec_json: str, on_started: Callable[[int], None]) -> str | None:
        """Run one job; its outcome (succeeded/failed/dismissed), or None if the launcher died under it."""
        assert self.proc.stdin is not None
        while not self._ready:
            message = self._message()
            if message is None:
                return None
            self._ready = message.get("event") == "ready"
        try:
            self.proc.stdin.write(spec_json.encode() + b"\n")
            self.proc.stdin.flush()
        except OSError:
            return None
        while True:
            message = self._message()
            if message is None:
                return None
            if message["event"] == "started":
                on_started(int(message["pid"]))
            elif message["event"] == "ended":
                return str(message["outcome"])

    def close(self) -> None:
        with contextlib.suppress(OSError):
            if self.proc.stdin:
                self.proc.stdin.close()  # end of input: it leaves its loop after the job in hand
        try:
            self.proc.wait(5)
        except subprocess.TimeoutExpired:
            self.proc.terminate()
            with contextlib.suppress(subprocess.TimeoutExpired):
                self.proc.wait(5)


class _LauncherPool:
    def __init__(self) -> None:
        self._idle: list[_Launcher] = []
        self._lock = threading.Lock()

    def prestart(self, count: int) -> None:
        with self._lock:
            while len(self._idle) < count:
                self._idle.append(_Launcher())

    def acquire(self) -> _Launcher:
        with self._lock:
            while self._idle:
                launcher = self._idle.pop()
                if launcher.alive:
                    return launcher
        return _Launcher()

    def release(self, launcher: _Launcher) -> None:
        if launcher.alive:
            with self._lock:
                self._idle.append(launcher)

    def close(self) -> None:
        with self._lock:
            idle, self._idle = self._idle, []
        for launcher in idle:
            launcher.close()


@dataclass
class _Running:
    workdir: Path
    pgid: int | None = None
    done: threading.Event = field(default_factory=threading.Event)

    def stop(self, grace: float) -> None:
        """SIGTERM the job's group, SIGKILL it after `grace` seconds if the job has not ended by then."""
        if self.pgid is None:
            return  # not forked yet: the launcher checks the cancel marker right after forking
        _kill_group(self.pgid, signal.SIGTERM)
        if not self.done.wait(grace) or group_alive(self.pgid):
            _kill_group(self.pgid, signal.SIGKILL)


_POOL = _LauncherPool()
_RUNNING: dict[str, _Running] = {}
_RUNNING_LOCK = threading.Lock()


def dask_setup(worker: Any) -> None:
    """Dask preload hook (`--preload ades.execute.dask_executor`): start one warm launcher per worker thread now,
    not in the first jobs."""
    _POOL.prestart(int(getattr(worker, "nthreads", 1) or 1))


def dask_teardown(worker: Any) -> None:
    # idle launchers end now; busy ones end with their worker process (their parent watch)
    _POOL.close()


def _attempts(workdir: Path) -> list[dict[str, Any]]:
    """Earlier attempts at the job, folded: attempt number -> its worker, host and the job's process group."""
    path = workdir / ATTEMPTS_FILE
    folded: dict[int, dict[str, Any]] = {}
    with contextlib.suppress(OSError):
        for line in path.read_text(encoding="utf-8").splitlines():
            with contextlib.suppress(ValueError, KeyError):
                record = json.loads(line)
                folded.setdefault(int(record["attempt"]), {}).update(record)
    return [folded[n] for n in sorted(folded)]


def _record(workdir: Path, record: dict[str, Any]) -> None:
    with open(workdir / ATTEMPTS_FILE, "a", encoding="utf-8") as f:
        f.write(json.dumps(record) + "\n")


def _bury(previous: list[dict[str, Any]]) -> None:
    """Make sure no earlier attempt still runs on this host before the folder is reused (its launcher kills it
    within PARENT_POLL seconds of the worker's death; this covers a launcher that could not)."""
    host = socket.gethostname()
    for attempt in previous:
        pgid = attempt.get("pgid")
        if attempt.get("host") != host or not pgid:
            continue
        deadline = time.monotonic() + BURY_TIMEOUT
        while group_alive(pgid) and time.monotonic() < deadline:
            time.sleep(0.1)
        if group_alive(pgid):
            _kill_group(pgid, signal.SIGKILL)


def _worker_address() -> str:
    try:
        from distributed import get_worker

        return str(get_worker().address)
    except (ImportError, ValueError):
        return f"pid {os.getpid()}"


def _claim(spec: RunSpec, retry_lost: bool) -> tuple[int, str | None]:
    """Record this attempt and return its number; with an outcome when the job already ended, or when an earlier
    attempt's worker was lost and no retry is due (then the job is settled here)."""
    workdir = spec.workdir
    workdir.mkdir(parents=True, exist_ok=True)  # made by the first attempt (submissions are only journaled)
    ended = workdir / ENDED_FILE
    if ended.exists():
        # its worker died after the job ended but before the scheduler heard: do not run it twice
        return 0, ended.read_text(encoding="utf-8").strip() or Status.FAILED.value
    previous = _attempts(workdir)
    attempt = len(previous) + 1
    worker = _worker_address()
    if previous and not (workdir / CANCEL_MARKER).exists():
        _bury(previous)
        lost = f"the Dask worker running the job ({previous[-1].get('worker', 'unknown')}) was lost"
        if not retry_lost or attempt > MAX_ATTEMPTS_WITH_RETRY:
            why = "ADES_DASK_RETRY_LOST is off" if not retry_lost else f"it was already run {len(previous)} times"
            publish_failed(spec, _sink_for(spec), f"{lost}; not run again ({why})")
            ended.write_text(Status.FAILED.value, encoding="utf-8")
            return attempt, Status.FAILED.value
        with open(spec.log_path, "a", encoding="utf-8") as f:
            f.write(f"ades: {lost}; running the job again on {worker} (attempt {attempt})\n")
        for sub in ("work", "tmp", "outputs"):
            shutil.rmtree(workdir / sub, ignore_errors=True)
    _record(workdir, {"attempt": attempt, "worker": worker, "host": socket.gethostname(), "at": time.time()})
    return attempt, None


def run_task(spec_json: str, retry_lost: bool = False) -> str:
    """The Dask task of one job: run it in a warm launcher of this worker; returns its outcome."""
    spec = RunSpec.model_validate_json(spec_json)
    hold(data_dir_of(spec.workdir), unless=spec.workdir / CANCEL_MARKER)  # execution paused (ades.execute.pause)
    spec.workdir.mkdir(parents=True, exist_ok=True)
    attempt, settled = _claim(spec, retry_lost)
    if settled is not None:
        return settled
    entry = _Running(spec.workdir)
    with _RUNNING_LOCK:
        _RUNNING[spec.job_id] = entry

    def started(pgid: int) -> None:
        entry.pgid = pgid
        _record(spec.workdir, {"attempt": attempt, "pgid": pgid})

    launcher = _POOL.acquire()
    try:
        outcome = launcher.run(spec_json, started)
    finally:
        entry.done.set()
        with _RUNNING_LOCK:
            _RUNNING.pop(spec.job_id, None)
    if outcome is None:
        # the launcher died under the job (killed, out of memory): nothing else will report it
        if entry.pgid:
            _kill_group(entry.pgid, signal.SIGKILL)
        if (spec.workdir / CANCEL_MARKER).exists():
            _publish(spec, StatusUpdate(job_id=spec.job_id, status=Status.DISMISSED, message="dismissed on request"))
            outcome = Status.DISMISSED.value
        else:
            try:
                code: int | None = launcher.proc.wait(2)
            except subprocess.TimeoutExpired:  # alive but mute: of no more use
                launcher.proc.kill()
                code = None
            how = "was stopped (its worker is shutting down)" if code == 128 + signal.SIGTERM else f"died ({code})"
            publish_failed(spec, _sink_for(spec), f"the job's launcher process on {_worker_address()} {how}")
            outcome = Status.FAILED.value
    else:
        _POOL.release(launcher)
    (spec.workdir / ENDED_FILE).write_text(outcome, encoding="utf-8")
    return outcome


def cancel_here(job_id: str, grace: float) -> bool:
    """Run on every worker by `DaskExecutor.cancel` (on the worker's event loop: quick, the kill goes to a thread).
    True if the job runs on this worker."""
    with _RUNNING_LOCK:
        entry = _RUNNING.get(job_id)
    if entry is None:
        return False
    with contextlib.suppress(OSError):
        (entry.workdir / CANCEL_MARKER).write_text(json.dumps({"requested": time.time()}), encoding="utf-8")
    threading.Thread(target=entry.stop, args=(grace,), name=f"ades-cancel-{job_id}", daemon=True).start()
    return True


def running_here() -> dict[str, int | None]:
    """job id -> process group of the job (None while it is being forked), for the jobs running on this worker."""
    with _RUNNING_LOCK:
        return {job_id: entry.pgid for job_id, entry in _RUNNING.items()}


# --- server side -----------------------------------------------------------------------------------------------
class DaskExecutor:
    """The Executor protocol on a Dask cluster (see the module doc). `data_dir` lets `cancel` reach jobs another
    server process submitted."""

    def __init__(
        self,
        scheduler: str,
        data_dir: Path | None = None,
        *,
        retry_lost: bool = False,
        grace: float = DEFAULT_GRACE,
        connect_timeout: float = 10.0,
    ) -> None:
        from distributed import Client

        self.retry_lost = retry_lost
        self.grace = grace
        self.data_dir = data_dir
        try:
            self.client = Client(scheduler, set_as_default=False, timeout=connect_timeout)
        except (OSError, TimeoutError) as err:
            raise RuntimeError(f"cannot reach the Dask scheduler at {scheduler} (ADES_DASK_SCHEDULER): {err}") from err
        self._changed = threading.Condition()
        self._futures: dict[str, tuple[Any, RunSpec]] = {}
        self._ended: dict[str, str] = {}
        self._closed = False

    # --- Executor protocol ---
    def submit(self, spec: RunSpec) -> None:
        if self._closed:
            raise RuntimeError("the executor is closed")
        future = self.client.submit(run_task, spec.model_dump_json(), self.retry_lost, key=KEY_PREFIX + spec.job_id,
                                    pure=False)
        with self._changed:
            self._futures[spec.job_id] = (future, spec)
        future.add_done_callback(self._done)

    def cancel(self, job_id: str) -> bool:
        with self._changed:
            entry = self._futures.get(job_id)
        if entry is not None:
            workdir = entry[1].workdir
        elif self.data_dir is not None and job_dir(self.data_dir, job_id).is_dir():
            workdir = job_dir(self.data_dir, job_id)  # submitted by another server process, maybe running here
        else:
            return False
        # the marker first: a task that starts after this line dismisses itself, whatever the broadcast finds
        workdir.mkdir(parents=True, exist_ok=True)
        (workdir / CANCEL_MARKER).write_text(json.dumps({"requested": time.time()}), encoding="utf-8")
        answers = self.client.run(cancel_here, job_id, self.grace, on_error="return")
        running = any(answer is True for answer in answers.values())
        if entry is not None and not running:
            entry[0].cancel()  # still queued: drop it; _done reports it dismissed
        return entry is not None or running

    def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        with self._changed:
            unfinished = list(self._futures)
        for job_id in unfinished:
            with contextlib.suppress(Exception):  # a lost scheduler must not keep the server from stopping
                self.cancel(job_id)
        deadline = time.monotonic() + self.grace + 5
        with self._changed:
            while self._futures and time.monotonic() < deadline:
                self._changed.wait(max(0.05, deadline - time.monotonic()))
        self.client.close()

    # --- observation (tests, the server's sync mode) ---
    def wait(self, job_id: str, timeout: float) -> str | None:
        """Block until the job has ended; its outcome (succeeded/failed/dismissed) or None on timeout."""
        return wait_ended(self._changed, self._ended, job_id, timeout)

    def running(self) -> dict[str, tuple[str, int | None]]:
        """job id -> (worker address, process group of the job) for the jobs running on the cluster now."""
        answers = self.client.run(running_here, on_error="ignore")
        return {job_id: (worker, pgid) for worker, jobs in answers.items() for job_id, pgid in jobs.items()}

    # --- internals ---
    def _done(self, future: Any) -> None:
        # Dask calls this in its callback thread, once per job, however the task ended
        job_id = str(future.key).removeprefix(KEY_PREFIX)
        with self._changed:
            entry = self._futures.get(job_id)
        if entry is None:
            return
        outcome = self._outcome(future, entry[1])
        with self._changed:
            self._futures.pop(job_id, None)
            self._ended[job_id] = outcome
            if len(self._ended) > MAX_REMEMBERED:
                del self._ended[next(iter(self._ended))]
            self._changed.notify_all()

    def _outcome(self, future: Any, spec: RunSpec) -> str:
        from distributed.scheduler import KilledWorker

        cancelled = (spec.workdir / CANCEL_MARKER).exists()
        if future.status == "finished":
            try:
                return str(future.result(timeout=60))
            except Exception as err:  # the result went with its worker; the task left the outcome in the folder
                with contextlib.suppress(OSError):
                    return (spec.workdir / ENDED_FILE).read_text(encoding="utf-8").strip()
                reason = f"the job's outcome could not be fetched from Dask: {type(err).__name__}: {err}"
        elif future.status == "error":
            error = future.exception(timeout=60)
            if isinstance(error, KilledWorker):
                reason = f"the Dask workers running the job were lost and the scheduler gave up on it ({error})"
            else:
                reason = f"the Dask task of the job failed: {type(error).__name__}: {error}"
        elif cancelled or self._closed:
            _publish(spec, StatusUpdate(job_id=spec.job_id, status=Status.DISMISSED,
                                        message="dismissed before it started"))
            return Status.DISMISSED.value
        else:
            reason = "the Dask scheduler dropped the job (was it restarted?)"
        if cancelled:
            _publish(spec, StatusUpdate(job_id=spec.job_id, status=Status.DISMISSED, message="dismissed on request"))
            return Status.DISMISSED.value
        publish_failed(spec, _sink_for(spec), reason)
        return Status.FAILED.value


if __name__ == "__main__":
    launcher_main()
