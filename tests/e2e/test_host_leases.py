"""Host leases with two API nodes (own data dirs and ports) on one Elasticsearch, a 2 s lease: node A is `ades
serve` (gunicorn), node B a live server in this process that adopts lost jobs (ADES_ADOPT_LOST_JOBS).

- a job waiting on A for a dependency that runs on B starts on A once B's job succeeded (the store carries it);
- kill -9 A (gunicorn and its job processes) with a job running on its workers, a job waiting on a dependency
  that runs on B, and a delayed job: B fails the running one with the reason naming A, adopts the two that never
  started and runs them to success, the delayed one after what was left of its delay (counted from its document);
- restart A: it touches neither the jobs B adopted (still waiting on B when A restarts) nor the job running on B."""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import uuid
from collections.abc import Iterator
from datetime import datetime
from pathlib import Path

import pytest
import requests

from ades.config import Settings
from ades.jobs import groups
from ades.jobs.folder import DataDir
from ades.jobs.journal import read_entries
from ades.jobs.leases import node_id
from ades.store import JobStore, make_client
from tests.conftest import free_port
from tests.e2e.conftest import LiveServer, serve_app
from tests.helpers import GATE_CWL, gate_folder, wait_for
from tests.integration.conftest import start_serve

pytestmark = pytest.mark.integration
LEASE = 2.0
DELAY = 6.0


class NodeA:
    """`ades serve` on its own data dir and port, killed with SIGKILL and restarted by the test."""

    def __init__(self, settings: Settings, gates: Path, log: Path) -> None:
        self.settings = settings
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.log = log
        self.env = {**os.environ, "ADES_ES_URL": str(settings.es_url), "ADES_INDEX_PREFIX": settings.index_prefix,
                    "ADES_DATA_DIR": str(settings.data_dir), "ADES_EVENT_SINK": "direct",
                    "ADES_PUBLIC_URL": self.url, "ADES_ANONYMOUS_ROLES": '["deployer"]',
                    "ADES_HOST_LEASE": str(LEASE), "ADES_ADOPT_LOST_JOBS": "true",
                    "ADES_SANDBOX_READ_ONLY": json.dumps([str(gates)])}
        self.server: subprocess.Popen | None = None

    def start(self) -> None:
        self.server = start_serve(self.env, self.port, self.log, "--workers", "1", "--job-workers", "1")

    def kill(self) -> None:
        """SIGKILL gunicorn's group (master, worker, job workers) and every job's own process group."""
        assert self.server is not None
        os.killpg(self.server.pid, signal.SIGKILL)
        self.server.wait()
        for folder in DataDir(self.settings.data_dir).folders():
            process = folder.process()
            if process is not None:
                groups.kill(process.pgid)

    def stop(self) -> None:
        if self.server is not None and self.server.poll() is None:
            self.server.terminate()
            self.server.wait(timeout=60)

    def post(self, path: str, **kwargs) -> requests.Response:
        return requests.post(self.url + path, timeout=30, **kwargs)

    def journaled(self) -> set[str]:
        return {i for p in DataDir(self.settings.data_dir).journals.glob("*.jsonl") for i in read_entries(p)}


@pytest.fixture
def two_nodes(es_url: str, tmp_path: Path) -> Iterator[tuple[NodeA, LiveServer, Path]]:
    prefix = f"e2e-{uuid.uuid4().hex[:10]}-"
    gates = gate_folder(tmp_path)

    def settings(name: str, **more) -> Settings:
        return Settings(es_url=es_url, index_prefix=prefix, data_dir=tmp_path / name, event_sink="direct",
                        host_lease=LEASE, sandbox_read_only=[gates], **more)

    a = NodeA(settings("node-a"), gates, tmp_path / "node-a.log")
    b_nodes = serve_app(settings("node-b", adopt_lost_jobs=True))
    b = next(b_nodes)
    try:
        a.start()
        yield a, b, gates
    finally:
        a.stop()
        next(b_nodes, None)


def _execute(node, process: str, inputs: dict, **scheduling) -> str:
    r = node.post(f"/processes/{process}/execution", json={"inputs": inputs, **scheduling},
                  headers={"Prefer": "respond-async"})
    assert r.status_code == 201, r.text
    return r.json()["jobID"]


def _time(value: str) -> datetime:
    return datetime.fromisoformat(value.replace("Z", "+00:00"))


def test_a_dead_node_s_jobs_are_failed_or_adopted_and_its_restart_leaves_them(two_nodes) -> None:
    a, b, gates = two_nodes
    store = JobStore(make_client(b.settings), b.settings)
    a_id, b_id = node_id(a.settings.data_dir), node_id(b.settings.data_dir)
    assert a.post("/processes", data=GATE_CWL, headers={"Content-Type": "application/cwl"}).status_code == 201

    # across nodes: A's waiting job starts once its dependency on B succeeded
    gate_b = gates / "b-first"
    on_b = _execute(b, "gate", {"gate": str(gate_b)})
    dependent = _execute(a, "echo", {"message": "after B"}, dependsOn=[on_b])
    assert store.get(dependent)["host"] == a_id and store.get(on_b)["host"] == b_id
    gate_b.touch()
    wait_for(lambda: store.get(dependent)["status"] == "succeeded", 60, "A's dependent job to succeed")
    assert (a.settings.data_dir / "jobs" / dependent).is_dir() and store.get(dependent)["host"] == a_id

    # kill -9 A with a job running there, one waiting on a job of B, one in its delay
    running = _execute(a, "gate", {"gate": str(gates / "never")})
    wait_for(lambda: store.get(running)["status"] == "running", 60, "the job to run on A")
    assert store.get(running)["host"] == a_id  # the running event carried it
    gate_b2 = gates / "b-second"
    on_b2 = _execute(b, "gate", {"gate": str(gate_b2)})
    waiting = _execute(a, "echo", {"message": "waits for B"}, dependsOn=[on_b2])
    delayed = _execute(a, "echo", {"message": "delayed"}, delay=DELAY)
    assert {waiting, delayed} <= a.journaled()
    a.kill()

    wait_for(lambda: store.get(running)["status"] == "failed", 30, "B to fail the job that ran on A")
    message = store.get(running)["message"]
    assert f"host lost: api {a_id}" in message and "running there" in message, message
    wait_for(lambda: store.get(delayed)["status"] == "succeeded", 60, "B to adopt and run the delayed job")
    doc = store.get(delayed)
    assert doc["host"] == b_id and doc["adopted"]["from"] == a_id and doc["adopted"]["by"] == b_id
    started, created = _time(doc["start-time"]), _time(doc["created"])
    assert (started - created).total_seconds() >= DELAY  # its delay was kept ...
    assert (started - _time(doc["adopted"]["at"])).total_seconds() < DELAY  # ... counted from its document
    adopted = store.get(waiting)
    assert adopted["host"] == b_id and adopted["status"] == "submitted"  # B holds it until on_b2 succeeds

    # restart A: its journal still names `waiting`, which lives on B now; and on_b2 runs on B
    a.start()
    wait_for(lambda: waiting not in a.journaled() and delayed not in a.journaled(), 30,
             "A's reconciliation to drop the jobs B adopted from its journal")
    assert store.get(on_b2)["status"] == "running" and store.get(waiting)["status"] == "submitted"
    gate_b2.touch()
    wait_for(lambda: store.get(waiting)["status"] == "succeeded", 60, "B to run the adopted dependent job")
    assert store.get(on_b2)["status"] == "succeeded"
    for job_id in (waiting, delayed, on_b2):
        assert not (a.settings.data_dir / "jobs" / job_id).exists(), f"A touched {job_id}"
        assert (b.settings.data_dir / "jobs" / job_id).is_dir()
    with contextlib.suppress(requests.RequestException):
        assert requests.get(f"{a.url}/jobs/{waiting}", timeout=10).json()["status"] == "successful"
