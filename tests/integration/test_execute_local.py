"""LocalExecutor: warm workers, forked job children, cancel and crash handling, with real cwltool and ES."""

from __future__ import annotations

import os
import signal
import time
from pathlib import Path

import pytest

from ades.config import Settings
from ades.cwl import Package
from ades.events.sinks import SinkConfig
from ades.jobs.launcher import run_sync
from ades.jobs.local import LocalExecutor
from ades.jobs.publisher import Publisher
from ades.jobs.spec import RunSpec
from ades.status import Status
from ades.store import JobStore
from tests import helpers
from tests.helpers import BASE_URL, processes_in, wait_for

pytestmark = pytest.mark.integration


@pytest.fixture
def executor(settings: Settings, es):
    executor = LocalExecutor(n_workers=2, grace=2.0)
    yield executor
    executor.close()


def new_spec(package: Package, inputs: dict, settings: Settings, job_store: JobStore) -> RunSpec:
    return helpers.new_spec(package, inputs, settings.data_dir, SinkConfig.from_settings(settings), job_store)


def test_ten_echo_jobs_on_two_workers(executor, echo, settings, job_store):
    specs = [new_spec(echo, {"message": f"hello {i}"}, settings, job_store) for i in range(10)]
    started = time.perf_counter()
    for spec in specs:
        executor.submit(spec)
    outcomes = [executor.wait(spec.job_id, 120) for spec in specs]
    elapsed = time.perf_counter() - started
    assert outcomes == ["succeeded"] * 10, outcomes
    job_store.refresh()
    for i, spec in enumerate(specs):
        doc = job_store.get(spec.job_id)
        assert doc["status"] == "succeeded" and doc["progress"] == 100
        # (echo's other outputs echo inputs these jobs leave out)
        assert doc["outputs"]["out"] == f"{BASE_URL}/jobs/{spec.job_id}/results/out"
        assert (spec.folder.outputs / "out.txt").read_text() == f"hello {i}\n"
        assert f"hello {i}" in spec.folder.read_log()
    print(f"10 echo jobs on 2 warm workers: {elapsed:.2f} s")


def test_cancel_kills_the_whole_job(executor, sleep, echo, settings, job_store):
    spec = new_spec(sleep, {"seconds": 300}, settings, job_store)
    executor.submit(spec)
    assert executor.wait_started(spec.job_id, 60)
    # the tool itself (sh + sleep under the job's work dir) is running before we cancel
    wait_for(lambda: len(processes_in(spec.folder.work)) >= 1, 60, "the tool to run")
    log_size = spec.folder.log.stat().st_size
    assert log_size > 0  # the log is written while the job runs
    assert executor.cancel(spec.job_id)
    assert executor.wait(spec.job_id, 30) == "dismissed"
    wait_for(lambda: not processes_in(spec.folder.path), 10, "the job's processes to be gone")
    job_store.refresh()
    doc = job_store.get(spec.job_id)
    assert doc["status"] == "dismissed" and doc["stop-time"]
    assert not executor.cancel(spec.job_id)  # already over
    # the worker survived and takes the next job
    after = new_spec(echo, {"message": "still here"}, settings, job_store)
    executor.submit(after)
    assert executor.wait(after.job_id, 60) == "succeeded"


def test_killed_child_fails_the_job(executor, sleep, settings, job_store):
    spec = new_spec(sleep, {"seconds": 300}, settings, job_store)
    executor.submit(spec)
    pid = executor.wait_started(spec.job_id, 60)
    assert pid
    wait_for(lambda: processes_in(spec.folder.work), 60, "the tool to run")
    os.kill(pid, signal.SIGKILL)
    assert executor.wait(spec.job_id, 30) == "failed"
    wait_for(lambda: not processes_in(spec.folder.path), 10, "the job's processes to be gone")
    job_store.refresh()
    doc = job_store.get(spec.job_id)
    assert doc["status"] == "failed"
    assert "the job's process died (signal 9)" in doc["message"]
    assert "last lines of the job log" in doc["message"]


def test_cancel_unknown_job(executor):
    assert not executor.cancel("no-such-job")


def test_run_sync(echo, settings, job_store, es):
    spec = new_spec(echo, {"message": "sync"}, settings, job_store)
    result = run_sync(spec, Publisher())
    assert result.status is Status.SUCCEEDED
    assert Path(result.outputs["out"]["path"]).read_text() == "sync\n"
    job_store.refresh()
    assert job_store.get(spec.job_id)["status"] == "succeeded"


def test_cancel_a_queued_job(executor, sleep, echo, settings, job_store):
    busy = [new_spec(sleep, {"seconds": 300}, settings, job_store) for _ in range(2)]
    for spec in busy:
        executor.submit(spec)
    for spec in busy:
        assert executor.wait_started(spec.job_id, 60)
    queued = new_spec(echo, {"message": "never"}, settings, job_store)
    executor.submit(queued)
    assert executor.cancel(queued.job_id)
    for spec in busy:
        assert executor.cancel(spec.job_id)
    assert executor.wait(queued.job_id, 30) == "dismissed"
    job_store.refresh()
    doc = job_store.get(queued.job_id)
    assert doc["status"] == "dismissed" and doc["start-time"] is None
    assert not (queued.folder.outputs / "out.txt").exists()


def test_a_job_past_its_run_time_limit_is_killed_and_failed(executor, sleep, settings, job_store):
    spec = new_spec(sleep, {"seconds": 300}, settings, job_store).model_copy(update={"max_seconds": 2.0})
    executor.submit(spec)
    assert executor.wait(spec.job_id, 60) == "failed"
    wait_for(lambda: not processes_in(spec.folder.path), 10, "the job's processes to be gone")
    job_store.refresh()
    doc = job_store.get(spec.job_id)
    assert doc["status"] == "failed"
    assert "ran longer than its limit of 2 s (ADES_JOB_TIMEOUT)" in doc["message"]


def _workers_exited_by_themselves(executor: LocalExecutor) -> list[int | None]:
    # close() kills (SIGKILL, exit code -9) a worker that has not left by its deadline
    return [worker.exitcode for worker in executor.workers]


def test_close_starts_no_queued_job(sleep, echo, settings, job_store, es):
    executor = LocalExecutor(n_workers=1, grace=2.0)
    try:
        running = new_spec(sleep, {"seconds": 300}, settings, job_store)
        executor.submit(running)
        assert executor.wait_started(running.job_id, 60)
        queued = new_spec(echo, {"message": "after the restart"}, settings, job_store)
        executor.submit(queued)
    finally:
        executor.close()
    assert _workers_exited_by_themselves(executor) == [0]
    job_store.refresh()
    assert job_store.get(running.job_id)["status"] == "dismissed"
    # not started only to be killed: it waits, `submitted`, for the next start to re-queue it
    assert job_store.get(queued.job_id)["status"] == "submitted"
    assert not (queued.folder.outputs / "out.txt").exists()


def test_close_releases_a_worker_holding_a_job_while_execution_is_paused(echo, settings, job_store, es):
    from ades.jobs.pause import pause

    executor = LocalExecutor(n_workers=1, grace=2.0)
    try:
        first = new_spec(echo, {"message": "warm"}, settings, job_store)
        executor.submit(first)
        assert executor.wait(first.job_id, 60) == "succeeded"  # the worker is up, waiting on the queue
        pause(settings.data_dir)
        held = new_spec(echo, {"message": "held"}, settings, job_store)
        executor.submit(held)
        # the worker has taken the job off the queue and holds it (it used to never read the shutdown sentinel
        # queued behind it, and close() had to kill it)
        wait_for(lambda: not executor.backlog(), 60, "the worker to take the job")
    finally:
        executor.close()
    assert _workers_exited_by_themselves(executor) == [0]
    job_store.refresh()
    assert job_store.get(held.job_id)["status"] == "submitted"
