"""`ades execution pause|resume|status` against a live server with real job workers and the real ES: while paused,
jobs are accepted and wait as `accepted`, a running job still finishes, a waiting one can be dismissed, and on
resume the waiting jobs run."""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from ades.config import Settings
from ades.jobs.folder import DataDir, JobFolder
from ades.jobs.lifecycle import HostState
from ades.jobs.pause import pause, paused, paused_store, resume
from tests.e2e.conftest import LiveServer, serve_app

pytestmark = pytest.mark.integration

SLEEP = Path(__file__).resolve().parents[2] / "cwl" / "examples" / "sleep" / "sleep.cwl"
ADES = Path(sys.executable).with_name("ades")


@pytest.fixture(scope="module")
def server(e2e_settings: Settings) -> Iterator[LiveServer]:
    yield from serve_app(e2e_settings)


def _submit(server: LiveServer, process: str, inputs: dict) -> str:
    response = server.post(f"/processes/{process}/execution", json={"inputs": inputs},
                           headers={"Prefer": "respond-async"})
    assert response.status_code == 201, response.text
    return response.json()["jobID"]


def _cli(server: LiveServer, *args: str) -> str:
    # the server's data dir and store: the store-wide switch goes under its index prefix
    settings = server.settings
    env = os.environ | {"ADES_DATA_DIR": str(settings.data_dir), "ADES_ES_URL": settings.elasticsearch_url,
                        "ADES_INDEX_PREFIX": settings.index_prefix}
    result = subprocess.run([str(ADES), "execution", *args], capture_output=True, text=True, timeout=60, env=env,
                            check=True)
    return result.stdout


def test_pause_holds_new_jobs_lets_running_ones_finish_and_resume_runs_them(server: LiveServer) -> None:
    data_dir = Path(server.settings.data_dir)
    response = server.post("/processes", data=SLEEP.read_text(), headers={"Content-Type": "application/cwl+yaml"})
    assert response.status_code == 201, response.text
    running = _submit(server, "sleep", {"seconds": 2})
    assert server.wait_status(running, ("running",), timeout=60)["status"] == "running"

    assert "execution paused" in _cli(server, "pause", "--reason", "maintenance")
    assert DataDir(data_dir).pause_file.exists()
    store_pause = paused_store(server.context.job_store.client, server.settings.index_prefix)
    assert store_pause is not None and store_pause.reason == "maintenance"  # every Dask worker of the store holds
    assert "maintenance" in _cli(server, "status")
    waiting = _submit(server, "echo", {"message": "after the pause"})
    dropped = _submit(server, "echo", {"message": "dismissed while paused"})

    # the job that was running when execution paused ends normally
    assert server.wait_status(running, timeout=60)["status"] == "successful"
    # both job workers have taken a job off their queue, found execution paused, and hold it
    table = server.context.jobs.table
    assert all(table.wait_for(job_id, 30, HostState.HELD) for job_id in (waiting, dropped))
    assert server.get(f"/jobs/{waiting}").json()["status"] == "accepted"
    assert server.delete(f"/jobs/{dropped}").status_code == 200
    assert not JobFolder(data_dir, waiting).outputs.exists()

    assert "execution resumed" in _cli(server, "resume")
    assert paused_store(server.context.job_store.client, server.settings.index_prefix) is None
    assert "execution runs" in _cli(server, "status")
    assert server.wait_status(waiting, timeout=60)["status"] == "successful"
    assert server.wait_status(dropped, timeout=60)["status"] == "dismissed"
    results = server.get(f"/jobs/{waiting}/results").json()
    assert results, results


def test_pause_is_idempotent_and_a_damaged_file_still_pauses(tmp_path: Path) -> None:
    first = pause(tmp_path, "first")
    assert pause(tmp_path, "second") == first  # the earlier pause keeps its time and reason
    DataDir(tmp_path).pause_file.write_text("{not json", encoding="utf-8")
    state = paused(tmp_path)
    assert state is not None and "unreadable" in (state.reason or "")
    assert resume(tmp_path) and not resume(tmp_path)
    assert paused(tmp_path) is None
