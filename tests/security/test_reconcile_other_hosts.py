"""A restarting server must not fail jobs that run on another host sharing its data dir (the issue's "wrong status"
finding): it used to fail every job whose process record named another host as "worker lost" unless the Dask
executor vouched for it, so a job still running elsewhere was failed, finished, and stayed failed. Now each job's
process beats (ades.jobs.heartbeat) and reconciliation leaves a beating job alone, failing it only once the beat
stops."""

from __future__ import annotations

import os
import threading
import time

import pytest

from ades.config import Settings
from ades.cwl import Package, load_package
from ades.events.sinks import SinkConfig
from ades.jobs.folder import ProcessRecord
from ades.jobs.heartbeat import STALE_SECONDS
from ades.jobs.lifecycle import JobTable
from ades.jobs.local import LocalExecutor
from ades.jobs.publisher import Publisher
from ades.jobs.reconcile import HOST_LOST, Reconciler
from ades.jobs.service import JobService
from ades.models import StatusUpdate
from ades.status import Status
from ades.store import JobStore, make_client
from tests import helpers
from tests.conftest import free_port
from tests.helpers import GATE_CWL, assert_a_restart_leaves_it, gate_folder, wait_for

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
def gate() -> Package:
    return load_package(GATE_CWL, "application/cwl")


def test_a_restart_leaves_a_job_running_on_another_host_and_it_ends_succeeded(gate, settings: Settings,
                                                                             job_store: JobStore, es, tmp_path):
    opened = gate_folder(tmp_path) / "gate"
    executor = LocalExecutor(n_workers=1, grace=2.0)
    restarted = JobService(settings, job_store, "http://127.0.0.1:5000")
    spec = helpers.new_spec(gate, {"gate": str(opened)}, settings.data_dir, SinkConfig.from_settings(settings),
                            job_store, readable=[opened.parent])
    assert_a_restart_leaves_it(executor, restarted, spec, job_store, opened)  # with the local executor


def _running_elsewhere(settings: Settings, job_store: JobStore, gate, last_beat: float) -> str:
    """A stored running job whose process record names another host and last beat at `last_beat`."""
    spec = helpers.new_spec(gate, {"gate": "/nowhere"}, settings.data_dir, SinkConfig.from_settings(settings),
                            job_store)
    Publisher().publish(StatusUpdate(job_id=spec.job_id, status=Status.RUNNING), spec.sink)
    spec.folder.make()
    spec.folder.record_process(ProcessRecord(pid=1, pgid=1, host="another-host", started=last_beat))
    os.utime(spec.folder.path / "process.json", (last_beat, last_beat))
    return spec.job_id


def test_a_job_elsewhere_fails_when_its_beat_stops_and_at_once_when_it_has_stopped(gate, settings: Settings,
                                                                                  job_store: JobStore, es):
    beating = _running_elsewhere(settings, job_store, gate, time.time())
    silent = _running_elsewhere(settings, job_store, gate, time.time() - STALE_SECONDS - 1)
    reconciler = Reconciler(job_store, settings.data_dir, lambda queued: None, Publisher(SinkConfig.from_settings(
        settings)), JobTable(), grace=0.5)
    reconciler.watch_seconds = 0.2
    report = reconciler.run()
    assert report.left == [beating] and report.lost == [silent], report

    def status(job_id: str) -> str:
        job_store.refresh()
        return job_store.get(job_id)["status"]

    wait_for(lambda: status(silent) == "failed", 30, "the silent job to fail")
    assert status(beating) == "running"
    stale = time.time() - STALE_SECONDS - 1
    os.utime(settings.data_dir / "jobs" / beating / "process.json", (stale, stale))  # its host died
    wait_for(lambda: status(beating) == "failed", 30, "the job whose beat stopped to fail")
    assert job_store.get(beating)["message"] == HOST_LOST


def test_closing_the_reconciler_stops_its_watchers_while_their_jobs_still_run(gate, settings: Settings,
                                                                               job_store: JobStore, es):
    """A watcher outliving its server polled a store whose client was closed, for ever (CI saw one log hundreds of
    retries, and the tracebacks it logged raced another thread's `ast.parse`)."""
    beating = _running_elsewhere(settings, job_store, gate, time.time())
    reconciler = Reconciler(job_store, settings.data_dir, lambda queued: None, Publisher(SinkConfig.from_settings(
        settings)), JobTable())
    reconciler.watch_seconds = 0.2
    assert reconciler.run().left == [beating]
    watchers = [t for t in threading.enumerate() if t.name == "ades-watch-beats"]
    assert watchers
    reconciler.close()
    for watcher in watchers:
        watcher.join(5)
        assert not watcher.is_alive()
    job_store.refresh()
    assert job_store.get(beating)["status"] == "running"


def test_reconciliation_runs_once_the_store_answers_after_a_failed_first_try(gate, settings: Settings,
                                                                               job_store: JobStore, es):
    """A server that starts before Elasticsearch retries reconciliation; the retry used to open the data dir's lock
    a second time, which the first handle (same process, another open file) still held: reconciliation never ran
    and a job lost before the restart stayed running."""
    silent = _running_elsewhere(settings, job_store, gate, time.time() - STALE_SECONDS - 1)
    down = settings.model_copy(update={"es_url": f"http://127.0.0.1:{free_port()}", "es_max_retries": 0,
                                       "es_request_timeout": 1})
    service = JobService(settings, JobStore(make_client(down), down), "http://127.0.0.1:5000")
    try:
        with pytest.raises(Exception):  # noqa: B017 (whatever the client raises for a closed port)
            service.reconcile()
        service.store = job_store  # Elasticsearch answers now
        report = service.reconcile()
        assert report is not None and report.lost == [silent], report
    finally:
        service.close()
