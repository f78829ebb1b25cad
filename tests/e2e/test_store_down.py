"""Store downtime against a live server and an Elasticsearch node of this module's own (port 9281, so stopping it
disturbs no other test): while the node is down, execute (both routes) answers 503 with a clear message and
Retry-After and writes nothing, neither a document nor a job folder; when the node is back, the same server, never
restarted, serves and runs jobs again. Also the half-down case: the jobs index refuses writes (what ES does at its
flood-stage disk watermark) after the job's folder was prepared, and the folder is removed again.
"""

from __future__ import annotations

import shutil
import tempfile
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from ades.config import Settings
from ades.services import elasticsearch
from ades.store import make_client
from ades.store.setup import physical_index
from tests.e2e.conftest import LiveServer, _serve
from tests.e2e.test_processes_api import assert_problem

pytestmark = pytest.mark.integration

NODE_PORT = 9281
ASYNC = {"Prefer": "respond-async"}
ECHO = {"inputs": {"message": "store"}}


@pytest.fixture(scope="module")
def node(es_url: str) -> Iterator[Settings]:
    """A node of our own (es_url first: the distribution is then surely cached)."""
    data_dir = Path(tempfile.mkdtemp(prefix="ades-store-down-", dir="/tmp"))  # not tmp_path: pytest makes it 0700
    settings = Settings(es_url=None, es_port=NODE_PORT, data_dir=data_dir, es_heap="384m")
    elasticsearch.ensure_running(settings)
    yield settings
    elasticsearch.stop(settings)
    shutil.rmtree(data_dir, ignore_errors=True)


@pytest.fixture(scope="module")
def server(node: Settings, tmp_path_factory: pytest.TempPathFactory) -> Iterator[LiveServer]:
    settings = Settings(es_url=f"http://127.0.0.1:{NODE_PORT}", index_prefix=f"e2e-down-{uuid.uuid4().hex[:8]}-",
                        data_dir=tmp_path_factory.mktemp("down") / "data", event_sink="direct", es_max_retries=0,
                        es_request_timeout=5)
    yield from _serve(settings, workers=1)


def run_echo(server: LiveServer) -> dict:
    answer = server.post("/processes/echo/execution", json=ECHO, headers=ASYNC)
    assert answer.status_code == 201, answer.text
    return server.wait_status(answer.json()["jobID"])


def job_folders(server: LiveServer) -> list[str]:
    jobs = Path(server.settings.data_dir) / "jobs"
    return sorted(p.name for p in jobs.iterdir()) if jobs.is_dir() else []


def documents(server: LiveServer) -> int:
    es = make_client(server.settings)
    try:
        pattern = f"{server.settings.index_prefix}*"
        es.indices.refresh(index=pattern)
        return int(es.count(index=pattern)["count"])
    finally:
        es.close()


def test_store_down_503_writes_nothing_then_serves_again(server: LiveServer, node: Settings) -> None:
    assert run_echo(server)["status"] == "successful"
    docs, folders = documents(server), job_folders(server)

    elasticsearch.stop(node)
    try:
        for answer in (server.post("/processes/echo/execution", json=ECHO, headers=ASYNC),
                       server.post("/processes/echo/execution", json=ECHO),
                       server.post("/processes/echo/jobs", json={"inputs": [{"id": "message", "data": "x"}]})):
            body = assert_problem(answer, 503, "service-unavailable")
            assert "Elasticsearch" in body["detail"] and "unavailable" in body["detail"], body
            assert answer.headers["Retry-After"] == "5"
        assert_problem(server.get("/jobs"), 503, "service-unavailable")
        assert server.get("/conformance").status_code == 200  # what needs no store still answers
        assert job_folders(server) == folders
    finally:
        elasticsearch.ensure_running(node)

    assert documents(server) == docs  # nothing was written while the store was down
    assert job_folders(server) == folders
    # the same server process, not restarted: the store's client finds the node again
    back = time.monotonic()
    while (listed := server.get("/jobs")).status_code != 200:
        assert time.monotonic() < back + 60, listed.text
        time.sleep(0.5)
    print(f"serving again {time.monotonic() - back:.1f} s after the node answered")
    assert run_echo(server)["status"] == "successful"


def test_jobs_index_refusing_writes_leaves_no_folder(server: LiveServer) -> None:
    index = physical_index(server.settings.jobs_alias)
    es = make_client(server.settings)
    docs, folders = documents(server), job_folders(server)
    es.indices.put_settings(index=index, settings={"index.blocks.write": True})
    try:
        answer = server.post("/processes/echo/execution", json=ECHO, headers=ASYNC)
        body = assert_problem(answer, 503, "service-unavailable")
        assert "could not store job" in body["detail"], body
    finally:
        es.indices.put_settings(index=index, settings={"index.blocks.write": None})
        es.close()
    assert documents(server) == docs
    assert job_folders(server) == folders  # (its journal line stays, inert: the store has no such job)
    assert run_echo(server)["status"] == "successful"
