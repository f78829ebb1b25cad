"""Starting one job in a process group of its own and waiting for its end: what both executors' warm processes do.

A warm process (a local worker, or a Dask worker's launcher) has cwltool imported and the job's workflow loaded
(cached per process version). For each job it forks a child: the child gets the warm interpreter and the loaded
tool for free, makes itself a process-group leader and runs the job (ades.jobs.run). Cancelling a job is then
stopping one process group, which takes cwltool and every tool it started with it, and a crashing job cannot take
the warm process down.

The launcher tells how the job ended: the child's exit status says succeeded or failed (the child published that
itself); a requested cancel makes it dismissed; a death by signal, a run past its time limit or a crash of the child
makes it failed, published here with the reason and the tail of the log.
"""

from __future__ import annotations

import contextlib
import logging
import os
import signal
import threading
import time
import traceback
from collections.abc import Callable
from importlib import resources
from pathlib import Path

from ades.cwl.loader import CwlLoadError, load_process
from ades.events import aws
from ades.execute.runner import load_wrapped
from ades.jobs import groups
from ades.jobs.logship import LogShipper
from ades.jobs.publisher import Publisher
from ades.jobs.run import RunResult, over_output_limit, run_job
from ades.jobs.spec import RunSpec
from ades.status import Status
from ades.storage import prepare_for_children

log = logging.getLogger(__name__)
WATCH_SECONDS = 1.0
"""How often a running job's folder is measured against ADES_MAX_OUTPUT_BYTES (a scan of its files)."""


def warm_up() -> None:
    """Import cwltool, parse the CWL schemas, and import what a job's sink needs (elasticsearch-py for the direct
    sink, boto3 for SNS), now and once: every job child inherits them, and makes only its own client."""
    from ades import store  # noqa: F401 (import costs paid here)
    from ades.events import aws  # noqa: F401
    from ades.execute import wrapper  # noqa: F401

    try:
        path = resources.files("ades.cwl").joinpath("update-job.cwl")
        load_process(Path(str(path)).as_uri())
    except (CwlLoadError, OSError) as err:
        log.warning("warm-up load failed: %s", err)


def run_in_child(spec: RunSpec, result_fd: int | None = None) -> None:
    """Body of a forked job child: lead a new process group, run the job, exit 0 (succeeded) or 1 (failed). Never
    returns. With `result_fd`, the RunResult is written there as JSON."""
    code = 2
    try:
        os.setsid()
        signal.signal(signal.SIGTERM, signal.SIG_DFL)
        signal.signal(signal.SIGINT, signal.SIG_DFL)
        publisher = Publisher()  # the parent's sinks hold connections that must not be shared across fork
        try:
            result = run_job(spec, publisher, redirect_fds=True)
        except Exception as err:  # a bug in ades itself: the job must still end, with the traceback in its log
            spec.folder.append_log(f"ades: the runner crashed:\n{traceback.format_exc()}")
            message = publisher.failed(spec.folder, f"the runner crashed: {type(err).__name__}: {err}", spec.sink)
            result = RunResult(job_id=spec.job_id, status=Status.FAILED, log=spec.folder.log, message=message)
        if result_fd is not None:
            with os.fdopen(result_fd, "w", encoding="utf-8") as pipe:
                pipe.write(result.model_dump_json())
        code = 0 if result.status is Status.SUCCEEDED else 1
    finally:
        os._exit(code)


def death_message(status: int) -> str | None:
    """Why a job child ended other than by finishing its job (a signal, an unexpected exit code), or None."""
    if os.WIFSIGNALED(status):
        return f"the job's process died (signal {os.WTERMSIG(status)})"
    if os.WIFEXITED(status) and os.WEXITSTATUS(status) not in (0, 1):
        return f"the job's process died (exit status {os.WEXITSTATUS(status)})"
    return None


def run_sync(spec: RunSpec, publisher: Publisher) -> RunResult:
    """Run one job in a forked child of this process and wait for it. The child publishes through the spec's sink;
    `publisher` here only reports the child's death."""
    spec.folder.make()
    read_fd, write_fd = os.pipe()
    pid = os.fork()
    if pid == 0:
        os.close(read_fd)
        run_in_child(spec, write_fd)
    os.close(write_fd)
    with os.fdopen(read_fd, "r", encoding="utf-8") as pipe:
        text = pipe.read()
    _, status = os.waitpid(pid, 0)
    died = death_message(status)
    if died or not text:
        message = publisher.failed(spec.folder, died or "the job's process ended without a result", spec.sink)
        return RunResult(job_id=spec.job_id, status=Status.FAILED, log=spec.folder.log, message=message)
    return RunResult.model_validate_json(text)


def run_one(spec: RunSpec, publisher: Publisher, on_started: Callable[[int], None]) -> Status:
    """Run the job in a forked child and wait for it; `on_started(pgid)` once the child exists. Its outcome."""
    folder = spec.folder
    if folder.cancel_requested():
        return publisher.dismissed(spec.job_id, "dismissed before it started", spec.sink)
    with contextlib.suppress(CwlLoadError):
        # cached here, inherited by the child (which reports errors)
        load_wrapped(spec.workflow_file, spec.cache_key, list(spec.input_roots))
    if spec.storage is not None:
        prepare_for_children(spec.storage)
    if spec.sink.topic_arn:  # the child's status events go to SNS
        aws.prepare_for_children("sns", spec.sink.settings())
    pid = os.fork()
    if pid == 0:
        run_in_child(spec)
    on_started(pid)
    if folder.cancel_requested():
        groups.kill(pid)  # the cancel came while the child was being started, before anyone knew its group
    limits = Limits(spec, pid)
    shipper = _log_shipper(spec)
    try:
        _, status = os.waitpid(pid, 0)
    finally:
        limits.close()
    try:
        return _outcome(spec, publisher, pid, status, limits)
    finally:
        if shipper is not None:
            shipper.close()  # after the outcome's own lines


def _log_shipper(spec: RunSpec) -> LogShipper | None:
    """The job's log shipper (ADES_LOG_STORE=elasticsearch), or None; a shipper that cannot start never stops the
    job from being waited for (its child runs already)."""
    if spec.logs is None:
        return None
    try:
        return LogShipper(spec.logs, spec.job_id, spec.folder.log)
    except Exception:
        log.exception("the log of job %s is not shipped", spec.job_id)
        return None


class Limits:
    """Stops a running job's process group past its run time (ADES_JOB_TIMEOUT) or past the bytes it may write
    (ADES_MAX_OUTPUT_BYTES, measured every WATCH_SECONDS: a job must not fill the disk every job and the local
    Elasticsearch share before it ends). `stopped` says why it stopped the job, if it did; `overgrown`, whether the
    job's run files should go (they are what filled the disk)."""

    def __init__(self, spec: RunSpec, pgid: int) -> None:
        self.spec = spec
        self.pgid = pgid
        self.stopped: str | None = None
        self.overgrown = False
        self._done = threading.Event()
        self._lock = threading.Lock()
        if spec.max_seconds or spec.max_output_bytes:
            threading.Thread(target=self._watch, name=f"ades-limits-{spec.job_id[:8]}", daemon=True).start()

    def close(self) -> None:
        with self._lock:
            self._done.set()  # the group may be gone and its id reused: no kill after this

    def _watch(self) -> None:
        spec = self.spec
        deadline = time.monotonic() + spec.max_seconds if spec.max_seconds else None
        while True:
            wait = None if deadline is None else max(0.0, deadline - time.monotonic())
            if spec.max_output_bytes:
                wait = WATCH_SECONDS if wait is None else min(wait, WATCH_SECONDS)
            if self._done.wait(wait):
                return
            if deadline is not None and time.monotonic() >= deadline:
                self._stop(f"the job ran longer than its limit of {spec.max_seconds:g} s (ADES_JOB_TIMEOUT) and was "
                           "stopped")
                return
            if spec.max_output_bytes and (written := spec.folder.written_bytes()) > spec.max_output_bytes:
                self._stop(over_output_limit(written, spec.max_output_bytes, "was stopped"), overgrown=True)
                return

    def _stop(self, reason: str, overgrown: bool = False) -> None:
        with self._lock:
            if not self._done.is_set():
                self.stopped = reason
                self.overgrown = overgrown
                groups.kill(self.pgid)


def _outcome(spec: RunSpec, publisher: Publisher, pgid: int, status: int, limits: Limits) -> Status:
    died = death_message(status)
    if spec.folder.cancel_requested() or limits.stopped or died:
        groups.kill(pgid)  # whatever the job left behind in its group
    if spec.folder.cancel_requested():
        return publisher.dismissed(spec.job_id, "dismissed on request", spec.sink)
    if limits.stopped:
        if limits.overgrown:
            spec.folder.clear_run()
        spec.folder.append_log(f"ades: {limits.stopped}")
        publisher.failed(spec.folder, limits.stopped, spec.sink)
        return Status.FAILED
    if died:
        publisher.failed(spec.folder, died, spec.sink)
        return Status.FAILED
    return Status.SUCCEEDED if os.WEXITSTATUS(status) == 0 else Status.FAILED
