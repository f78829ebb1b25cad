"""Helpers the test modules share (fixtures live in the conftest files): the one way tests wait, and the jobs they
build and look for."""

from __future__ import annotations

import os
import random
import time
import uuid
from collections.abc import Callable, Sequence
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any, TypeVar

from ades.cwl import Package, to_job_order
from ades.events.sinks import SinkConfig
from ades.execute.sandbox import Sandbox
from ades.jobs.folder import DataDir
from ades.jobs.journal import read_entries
from ades.jobs.spec import QueuedJob, RunSpec
from ades.models import Job, StatusUpdate
from ades.status import Status
from ades.store import JobStore

BASE_URL = "http://127.0.0.1:5000"
EXAMPLES = Path(__file__).resolve().parents[1] / "cwl" / "examples"
OGC = "http://www.opengis.net/def/exceptions/ogcapi-processes-1/1.0/"
OGC2 = "http://www.opengis.net/def/exceptions/ogcapi-processes-2/1.0/"
"""Exceptions Part 2 (deploy, replace, undeploy) defines: a `kind` of assert_problem may be a full type URI."""
T = TypeVar("T")
GATE_CWL = """\
cwlVersion: v1.2
class: CommandLineTool
id: gate
doc: Runs until the file named by `gate` exists (a test opens the gate once it has seen what it needs), then ends.
  In the sandbox the gate's folder must be readable (ADES_SANDBOX_READ_ONLY, new_spec's `readable`).
baseCommand: [sh, -c]
arguments: ['while [ ! -e "$0" ]; do sleep 0.05; done; echo opened', $(inputs.gate)]
inputs:
  gate: string
outputs:
  out: stdout
"""
"""A job that runs for exactly as long as a test needs it to: instead of a sleep that must outlast what the test
does meanwhile (a slow host makes any fixed sleep too short)."""


def gate_folder(tmp_path: Path) -> Path:
    """A folder for gates that a sandboxed tool running as the job user may read (pytest's own folders are 0700)."""
    folder = tmp_path / "gates"
    folder.mkdir(exist_ok=True)
    folder.chmod(0o755)
    return folder


def assert_a_restart_leaves_it(executor: Any, restarted: Any, spec: RunSpec, store: JobStore, gate: Path) -> None:
    """Run the gate job `spec` on `executor`, make its process record name another host, and reconcile on
    `restarted` (a JobService starting on the shared data dir): the job must be left alone, then succeed once the gate
    opens. Closes both."""
    try:
        executor.submit(spec)
        wait_for(lambda: processes_in(spec.folder.work), 120, "the tool to run")
        process = spec.folder.process()
        assert process is not None
        spec.folder.record_process(process.model_copy(update={"host": "another-host"}))  # as if it ran there
        report = restarted.reconcile()
        assert report is not None and spec.job_id in report.left and not report.lost, report
        gate.touch()
        assert executor.wait(spec.job_id, 60) == "succeeded"
    finally:
        gate.touch()  # a job outlives its executor: a failed check must not leave it waiting for ever
        restarted.close()
        executor.close()
    store.refresh()
    assert store.get(spec.job_id)["status"] == "succeeded"


class TimedOut(AssertionError):
    pass


def wait_for(predicate: Callable[[], T], timeout: float, what: str = "the condition", interval: float = 0.05) -> T:
    """Poll `predicate` until it returns something true, and return that; fail the test after `timeout` seconds,
    saying `what` was awaited. For what has no event to block on (a process, another server's store)."""
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() >= deadline:
            raise TimedOut(f"waited {timeout:g} s for {what}")
        time.sleep(interval)


def store_jobs(store: JobStore, jobs: Sequence[Job], refresh: bool = False) -> None:
    """Index new jobs, failing the test if any is refused."""
    errors = [error for error in store.create(jobs, refresh=refresh) if error is not None]
    assert not errors, errors


def new_spec(package: Package, inputs: dict, data_dir: Path, sink: SinkConfig, store: JobStore,
             job_id: str | None = None, readable: Sequence[Path] = ()) -> RunSpec:
    """A stored job of `package` and the spec that runs it (as a submission makes them). `readable`: host paths its
    sandboxed tools may read besides their own (a gate's folder)."""
    job = Job(id=job_id or str(uuid.uuid4()), process_id=package.id, process_version=package.version, inputs=inputs)
    store_jobs(store, [job], refresh=True)
    return RunSpec.for_package(package, job.id, to_job_order(package, inputs, []), data_dir, sink, BASE_URL,
                               sandbox=Sandbox(read_only=list(readable)))


def queued(package: Package, data_dir: Path, job_id: str | None = None) -> QueuedJob:
    """A journal line of a job of `package` (not stored)."""
    spec = RunSpec.for_package(package, job_id or str(uuid.uuid4()), {"message": "hi"}, data_dir, SinkConfig(),
                               "http://127.0.0.1:1")
    return QueuedJob(spec=spec)


def journaled_jobs(data_dir: Path) -> int:
    """How many jobs the data dir's submission journals hold (accepted jobs, before they start)."""
    return sum(len(read_entries(p)) for p in DataDir(data_dir).journals.glob("*.jsonl"))


def processes_in(directory: Path) -> list[int]:
    """Live (non-zombie) processes whose working directory or command line is inside `directory`."""
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            state = (entry / "stat").read_text().rsplit(")", 1)[1].split()[0]
            cwd = os.readlink(entry / "cwd")
            cmdline = (entry / "cmdline").read_bytes().decode(errors="replace")
        except OSError:
            continue
        if state != "Z" and (cwd.startswith(str(directory)) or str(directory) in cmdline):
            found.append(int(entry.name))
    return found


def assert_problem(response: Any, status: int, kind: str) -> dict[str, Any]:
    """An OGC exception answer of this status and kind, with a title and a detail; its body."""
    assert response.status_code == status, response.text
    body = response.json()
    assert body["type"] == (kind if "://" in kind else OGC + kind)
    assert body["status"] == status
    assert body["title"] and body["detail"]
    return body


def job_life(job_id: str, rng: random.Random, start: datetime, steps: int, step_progress: int,
             output: str) -> list[StatusUpdate]:
    """A job's events as its host publishes them: `steps` running ones a second apart (progress rising by
    `step_progress`), then its end a second after the last: succeeded with output `output` (4 in 5), else failed."""
    events = [StatusUpdate(job_id=job_id, status=Status.RUNNING, timestamp=start + timedelta(seconds=s),
                           progress=s * step_progress, message=f"step {s}") for s in range(steps)]
    end = start + timedelta(seconds=steps + 1)
    if rng.random() < 0.8:
        events.append(StatusUpdate(job_id=job_id, status=Status.SUCCEEDED, timestamp=end,
                                   outputs={output: f"http://127.0.0.1:5000/jobs/{job_id}/results/{output}"}))
    else:
        events.append(StatusUpdate(job_id=job_id, status=Status.FAILED, timestamp=end, message="tool exited 1"))
    return events
