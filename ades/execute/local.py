"""LocalExecutor: N warm worker processes on this machine.

Each worker is started once (cwltool imported and its CWL schemas loaded once) and takes jobs from a queue. For
each job it loads the wrapped workflow (cached per process version), then forks a child: the child gets the warm
interpreter and the loaded tool for free, makes itself a process-group leader and runs the job. So cancelling a job
is killing one process group, which takes cwltool and every tool it started with it, and a crashing job cannot take
its worker down.

The parent (the server) knows which child runs which job from the workers' event queue. Cancel leaves a marker
file in the job directory, so the worker can tell a requested stop (-> dismissed) from a death (-> failed).
"""

from __future__ import annotations

import contextlib
import json
import logging
import multiprocessing
import os
import queue
import signal
import threading
import time
import traceback
from collections.abc import Callable
from pathlib import Path
from typing import Any

from ades.cwl.loader import CwlLoadError
from ades.events.sinks import EventSink, make_sink
from ades.execute.base import wait_ended
from ades.execute.pause import hold
from ades.execute.runner import RunResult, RunSpec, data_dir_of, load_wrapped, log_tail, publish_failed, run_job
from ades.models import StatusUpdate
from ades.services.base import group_alive
from ades.status import Status

CANCEL_MARKER = "cancel-requested"
DEFAULT_GRACE = 5.0
MAX_REMEMBERED = 10_000
"""Outcomes of ended jobs kept for `wait()`; older ones are forgotten (the store has them)."""

SinkFactory = Callable[[], EventSink]
log = logging.getLogger(__name__)


def _child_sink(spec: RunSpec) -> EventSink:
    # The same sink the job's update-job steps use, built afresh: connections must not be shared across fork.
    return make_sink(spec.sink.settings())


def _run_in_child(spec: RunSpec, result_fd: int | None = None) -> None:
    """Body of a forked job child; never returns."""
    code = 2
    try:
        os.setsid()
        signal.signal(signal.SIGTERM, signal.SIG_DFL)
        signal.signal(signal.SIGINT, signal.SIG_DFL)
        sink = _child_sink(spec)
        try:
            result = run_job(spec, sink, redirect_fds=True)
        except Exception as err:  # a bug in ades itself: the job must still end, with the traceback in its log
            with open(spec.log_path, "a", encoding="utf-8") as f:
                f.write(f"ades: the runner crashed:\n{traceback.format_exc()}")
            message = publish_failed(spec, sink, f"the runner crashed: {type(err).__name__}: {err}")
            result = RunResult(job_id=spec.job_id, status=Status.FAILED, log=spec.log_path, message=message)
        if result_fd is not None:
            with os.fdopen(result_fd, "w", encoding="utf-8") as pipe:
                pipe.write(result.model_dump_json())
        code = 0 if result.status is Status.SUCCEEDED else 1
    finally:
        os._exit(code)


def _death_message(status: int) -> str | None:
    if os.WIFSIGNALED(status):
        return f"the job's process died (signal {os.WTERMSIG(status)})"
    if os.WIFEXITED(status) and os.WEXITSTATUS(status) not in (0, 1):
        return f"the job's process died (exit status {os.WEXITSTATUS(status)})"
    return None


def _publish(sink: EventSink, update: StatusUpdate) -> None:
    try:
        sink.publish(update)
    except Exception as err:  # the worker must survive a sink outage; reconciliation settles the job later
        log.error("could not publish %s for job %s: %s", update.status, update.job_id, err)


def run_sync(spec: RunSpec, sink: EventSink) -> RunResult:
    """Run one job in a forked child of this process and wait for it (the server's sync mode).

    The child publishes through the spec's sink; `sink` here only reports the child's death.
    """
    spec.workdir.mkdir(parents=True, exist_ok=True)
    read_fd, write_fd = os.pipe()
    pid = os.fork()
    if pid == 0:
        os.close(read_fd)
        _run_in_child(spec, write_fd)
    os.close(write_fd)
    with os.fdopen(read_fd, "r", encoding="utf-8") as pipe:
        text = pipe.read()
    _, status = os.waitpid(pid, 0)
    died = _death_message(status)
    if died or not text:
        message = publish_failed(spec, sink, died or "the job's process ended without a result")
        return RunResult(job_id=spec.job_id, status=Status.FAILED, log=spec.log_path, message=message)
    return RunResult.model_validate_json(text)


# --- worker side -----------------------------------------------------------------------------------------------
def _warm_up() -> None:
    """Import cwltool and parse the CWL schemas now, not in the first job."""
    from ades.cwl.loader import load_process
    from ades.execute import wrapper  # noqa: F401 (import cost paid here)

    try:
        from importlib import resources

        path = resources.files("ades.cwl").joinpath("update-job.cwl")
        load_process(Path(str(path)).as_uri())
    except (CwlLoadError, OSError) as err:
        log.warning("warm-up load failed: %s", err)


def _worker_main(jobs: Any, events: Any, sink_factory: SinkFactory, stopping: Any, nice: int = 0) -> None:
    # Ctrl-C reaches the whole process group; the parent stops workers itself, in order.
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    if nice:
        os.nice(nice)  # inherited by every job child and the tools it runs
    _warm_up()
    sink = sink_factory()
    while True:
        raw = jobs.get()
        if raw is None:
            return
        spec = RunSpec.model_validate_json(raw)
        # Shutting down (close() cancels the running jobs): a job still queued is not started only to be killed; it
        # stays `submitted` and journaled, and the next server start re-queues it (ades.execute.reconcile). Same for
        # a job held while execution is paused (ades.execute.pause), whose worker would otherwise never read the
        # shutdown sentinel queued behind it.
        if not hold(data_dir_of(spec.workdir), unless=spec.workdir / CANCEL_MARKER, stopping=stopping.is_set):
            return
        outcome = _run_one(spec, sink, events)
        events.put(("ended", spec.job_id, outcome))


def _kill_group(pgid: int, sig: int) -> None:
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(pgid, sig)


def _run_one(spec: RunSpec, sink: EventSink, events: Any) -> str:
    marker = spec.workdir / CANCEL_MARKER
    if marker.exists():
        _publish(sink, StatusUpdate(job_id=spec.job_id, status=Status.DISMISSED, message="dismissed before it started"))
        return Status.DISMISSED.value
    with contextlib.suppress(CwlLoadError):
        load_wrapped(spec)  # fill this worker's cache; the child inherits it (and reports a load error itself)
    pid = os.fork()
    if pid == 0:
        _run_in_child(spec)
    events.put(("started", spec.job_id, pid))
    if marker.exists():
        # the cancel came while the child was being started, before the parent knew its pid
        _kill_group(pid, signal.SIGKILL)
    timed_out = threading.Event()
    timer = None
    if spec.max_seconds:
        def expire() -> None:
            timed_out.set()
            _kill_group(pid, signal.SIGKILL)

        timer = threading.Timer(spec.max_seconds, expire)
        timer.daemon = True
        timer.start()
    try:
        _, status = os.waitpid(pid, 0)
    finally:
        if timer is not None:
            timer.cancel()
    if marker.exists():
        _kill_group(pid, signal.SIGKILL)  # anything the job left behind in its group
        _publish(sink, StatusUpdate(job_id=spec.job_id, status=Status.DISMISSED, message="dismissed on request"))
        return Status.DISMISSED.value
    if timed_out.is_set():
        _kill_group(pid, signal.SIGKILL)
        reason = (f"the job ran longer than its limit of {spec.max_seconds:g} s (ADES_JOB_TIMEOUT) and was stopped")
        tail = log_tail(spec.log_path)
        message = f"{reason}\n--- last lines of the job log ---\n{tail}" if tail else reason
        _publish(sink, StatusUpdate(job_id=spec.job_id, status=Status.FAILED, message=message[:9000]))
        return Status.FAILED.value
    died = _death_message(status)
    if died:
        _kill_group(pid, signal.SIGKILL)
        tail = log_tail(spec.log_path)
        message = f"{died}\n--- last lines of the job log ---\n{tail}" if tail else died
        _publish(sink, StatusUpdate(job_id=spec.job_id, status=Status.FAILED, message=message[:9000]))
        return Status.FAILED.value
    return Status.SUCCEEDED.value if os.WEXITSTATUS(status) == 0 else Status.FAILED.value


# --- parent side -----------------------------------------------------------------------------------------------
class LocalExecutor:
    """Runs jobs in `n_workers` warm processes (see the module doc). `sink_factory` is called once in each worker
    (it must pickle: a module-level function or a functools.partial of one)."""

    def __init__(
        self,
        sink_factory: SinkFactory,
        n_workers: int | None = None,
        *,
        grace: float = DEFAULT_GRACE,
        start_method: str = "spawn",
        nice: int = 0,
    ) -> None:
        # spawn: workers start from a clean interpreter, not a copy of a server that may hold threads and sockets
        context = multiprocessing.get_context(start_method)
        self.grace = grace
        self._jobs = context.Queue()
        self._events = context.Queue()
        self._stopping = context.Event()
        self._lock = threading.Lock()
        self._queued: dict[str, Path] = {}
        self._running: dict[str, tuple[int, Path]] = {}
        self._ended: dict[str, str] = {}
        self._changed = threading.Condition(self._lock)
        self._closed = False
        self._workers = [
            context.Process(target=_worker_main, args=(self._jobs, self._events, sink_factory, self._stopping, nice),
                            daemon=True, name=f"ades-worker-{i}")
            for i in range(n_workers or os.cpu_count() or 1)
        ]
        for worker in self._workers:
            worker.start()
        self._listener = threading.Thread(target=self._listen, name="ades-executor-events", daemon=True)
        self._listener.start()

    # --- Executor protocol ---
    def submit(self, spec: RunSpec) -> None:
        if self._closed:
            raise RuntimeError("the executor is closed")
        with self._lock:
            self._queued[spec.job_id] = spec.workdir
        self._jobs.put(spec.model_dump_json())

    def cancel(self, job_id: str) -> bool:
        with self._lock:
            running = self._running.get(job_id)
            workdir = running[1] if running else self._queued.get(job_id)
            if workdir is None:
                return False
            workdir.mkdir(parents=True, exist_ok=True)
            (workdir / CANCEL_MARKER).write_text(json.dumps({"requested": time.time()}), encoding="utf-8")
        if running:
            threading.Thread(target=self._stop_group, args=(job_id, running[0]), daemon=True).start()
        return True

    def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        with self._lock:
            running = list(self._running)
        for job_id in running:
            self.cancel(job_id)
        self._stopping.set()
        for _ in self._workers:
            self._jobs.put(None)
        deadline = time.monotonic() + self.grace + 5
        for worker in self._workers:
            worker.join(max(0.1, deadline - time.monotonic()))
            if worker.is_alive():
                worker.kill()
                worker.join(1)
        self._events.put(None)
        self._listener.join(2)

    # --- observation (tests, the server's reconciliation) ---
    def running(self) -> dict[str, int]:
        """job id -> pid (= process group id) of the job's child, for jobs running now."""
        with self._lock:
            return {job_id: pid for job_id, (pid, _) in self._running.items()}

    def wait(self, job_id: str, timeout: float) -> str | None:
        """Block until the job has ended here; its outcome (succeeded/failed/dismissed) or None on timeout."""
        return wait_ended(self._changed, self._ended, job_id, timeout)

    def wait_started(self, job_id: str, timeout: float) -> int | None:
        deadline = time.monotonic() + timeout
        with self._changed:
            while job_id not in self._running and job_id not in self._ended:
                left = deadline - time.monotonic()
                if left <= 0:
                    return None
                self._changed.wait(left)
            entry = self._running.get(job_id)
            return entry[0] if entry else None

    # --- internals ---
    def _listen(self) -> None:
        while True:
            try:
                event = self._events.get(timeout=1.0)
            except queue.Empty:
                if self._closed and not any(w.is_alive() for w in self._workers):
                    return
                continue
            if event is None:
                return
            kind, job_id, value = event
            with self._changed:
                if kind == "started":
                    workdir = self._queued.pop(job_id, None)
                    if workdir is not None:
                        self._running[job_id] = (int(value), workdir)
                elif kind == "ended":
                    self._queued.pop(job_id, None)
                    self._running.pop(job_id, None)
                    self._ended[job_id] = str(value)
                    if len(self._ended) > MAX_REMEMBERED:
                        del self._ended[next(iter(self._ended))]
                self._changed.notify_all()

    def _stop_group(self, job_id: str, pgid: int) -> None:
        """SIGTERM the job's process group, SIGKILL whatever is left after the grace period."""
        _kill_group(pgid, signal.SIGTERM)
        deadline = time.monotonic() + self.grace
        while time.monotonic() < deadline:
            with self._lock:
                ended = job_id in self._ended
            if ended and not group_alive(pgid):
                return
            time.sleep(0.05)
        _kill_group(pgid, signal.SIGKILL)

