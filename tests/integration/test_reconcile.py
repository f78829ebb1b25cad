"""Reconciliation after kill -9: `ades serve` (gunicorn, its warm job workers and their job processes) is killed
with SIGKILL while 100 jobs are in flight; after a restart on the same data dir every job ends within 60 s."""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import time
import uuid
from pathlib import Path

import pytest
import requests

from ades.config import Settings
from ades.jobs import groups
from ades.jobs.folder import DataDir, JobFolder
from ades.models import JobQuery
from ades.status import Status
from ades.store import JobStore, make_client
from ades.store.setup import drop_indexes
from tests.conftest import free_port
from tests.helpers import GATE_CWL, TimedOut, gate_folder, wait_for
from tests.integration.conftest import start_serve

pytestmark = pytest.mark.integration

JOBS = 40


def _kill_everything(server: subprocess.Popen, data_dir: Path) -> int:
    """SIGKILL the server's process group (gunicorn master, worker, job workers) and every job process group."""
    os.killpg(server.pid, signal.SIGKILL)
    server.wait()
    killed = 0
    for folder in DataDir(data_dir).folders():
        process = folder.process()
        if process is not None:
            groups.kill(process.pgid)
            killed += 1
    return killed


def _server_setup(es_url: str, tmp_path: Path) -> tuple[Settings, int, dict[str, str]]:
    """Settings of a fresh index prefix and data dir, a free port, and the environment of `ades serve` on them."""
    prefix = f"test-{uuid.uuid4().hex[:10]}-"
    data_dir = tmp_path / "data"
    settings = Settings(es_url=es_url, index_prefix=prefix, data_dir=data_dir, event_sink="direct")
    port = free_port()
    env = {**os.environ, "ADES_ES_URL": es_url, "ADES_INDEX_PREFIX": prefix, "ADES_DATA_DIR": str(data_dir),
           "ADES_EVENT_SINK": "direct", "ADES_PUBLIC_URL": f"http://127.0.0.1:{port}",
           "ADES_ANONYMOUS_ROLES": '["deployer"]'}  # the gate package is deployed without auth
    return settings, port, env


def test_every_job_ends_after_kill_9_and_restart(es_url: str, tmp_path: Path) -> None:
    settings, port, env = _server_setup(es_url, tmp_path)
    data_dir = settings.data_dir
    log = tmp_path / "server.log"
    store = JobStore(make_client(settings), settings)
    try:
        server = start_serve(env, port, log, "--workers", "1", "--job-workers", "1")
        ids = []
        with requests.Session() as http:
            for i in range(JOBS):
                r = http.post(f"http://127.0.0.1:{port}/processes/echo/execution",
                              json={"inputs": {"message": f"job {i}"}}, headers={"Prefer": "respond-async"},
                              timeout=30)
                assert r.status_code == 201, r.text
                ids.append(r.json()["jobID"])
        # one job with a dependency, waiting in the scheduler when the server dies
        r = requests.post(f"http://127.0.0.1:{port}/processes/echo/execution",
                          json={"inputs": {"message": "dependent"}, "dependsOn": [ids[-1]], "delay": 1},
                          timeout=30)
        assert r.status_code == 201, r.text
        ids.append(r.json()["jobID"])
        # at least one job has started: some will be lost mid-run
        wait_for(lambda: any(f.has_started() for f in DataDir(data_dir).folders()), 60, "a job to start")
        _kill_everything(server, data_dir)
        store.refresh()
        before = {d["id"]: d["status"] for d in store.search(JobQuery(size=1000)).jobs}
        in_flight = [i for i in ids if not Status(before[i]).terminal]
        assert len(in_flight) > JOBS // 2, before  # the kill came with most jobs still queued or running

        restarted = time.monotonic()
        server = start_serve(env, port, log, "--workers", "1", "--job-workers", "1")
        try:
            with contextlib.suppress(TimedOut):  # the assertion below says which jobs are not
                wait_for(lambda: all(Status(s).terminal for s in store.statuses(ids).values() if s),
                         60 - (time.monotonic() - restarted), "every job to end", interval=0.5)
            statuses = store.statuses(ids)
            unfinished = {i: s for i, s in statuses.items() if not Status(s).terminal}
            assert not unfinished, f"{len(unfinished)} jobs not terminal 60 s after the restart"
            docs = [store.get(i) for i in in_flight]
            succeeded = [d for d in docs if d["status"] == "succeeded"]
            failed = [d for d in docs if d["status"] == "failed"]
            assert len(succeeded) + len(failed) == len(in_flight)
            assert all("worker lost" in (d["message"] or "") or "lost" in (d["message"] or "") for d in failed)
            assert len(succeeded) >= len(in_flight) - 3  # only jobs that had started can be lost
            assert statuses[ids[-1]] == "succeeded"  # the dependent job survived the restart
            print(f"in flight {len(in_flight)}: {len(succeeded)} re-run and succeeded, {len(failed)} lost, "
                  f"all terminal {time.monotonic() - restarted:.1f} s after the restart")
        finally:
            server.terminate()
            server.wait(timeout=60)
    finally:
        drop_indexes(make_client(settings), settings)


def test_a_running_job_outlives_a_graceful_stop_and_reports_its_own_end(es_url: str, tmp_path: Path) -> None:
    # what the README says of stopping `ades serve`: a job is its own process group and publishes its own end
    settings, port, env = _server_setup(es_url, tmp_path)
    data_dir = settings.data_dir
    store = JobStore(make_client(settings), settings)
    gate = gate_folder(tmp_path) / "gate"
    env["ADES_SANDBOX_READ_ONLY"] = json.dumps([str(gate.parent)])  # the sandboxed tool waits for the gate
    server = start_serve(env, port, tmp_path / "server.log", "--workers", "1", "--job-workers", "1")
    try:
        base = f"http://127.0.0.1:{port}"
        r = requests.post(f"{base}/processes", data=GATE_CWL, headers={"Content-Type": "application/cwl"}, timeout=60)
        assert r.status_code == 201, r.text
        r = requests.post(f"{base}/processes/gate/execution", json={"inputs": {"gate": str(gate)}},
                          headers={"Prefer": "respond-async"}, timeout=30)
        assert r.status_code == 201, r.text
        job_id = r.json()["jobID"]
        folder = JobFolder(data_dir, job_id)
        wait_for(lambda: folder.has_started() and store.get(job_id)["status"] == "running", 60, "the job to start")
        process = folder.process()
        assert process is not None
        pgid = process.pgid

        # SIGTERM to gunicorn's master: a graceful stop, while the job waits at its gate (however long the stop takes)
        server.terminate()
        server.wait(timeout=60)
        os.killpg(pgid, 0)  # still there (raises ProcessLookupError if the stop took the job with it)
        assert store.get(job_id)["status"] == "running"

        gate.touch()  # with no server left, the job ends by itself and reports it
        wait_for(lambda: Status(store.get(job_id)["status"]) is Status.SUCCEEDED, 60, "the job to succeed", 0.2)
    finally:
        if server.poll() is None:
            server.terminate()
            server.wait(timeout=60)
        drop_indexes(make_client(settings), settings)
