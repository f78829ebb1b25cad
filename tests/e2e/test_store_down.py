"""Store downtime against a live server and the spare Elasticsearch node (tests/conftest.py: stopping it disturbs no
other test): while the node is down, execute (both routes) answers 503 with a clear message and
Retry-After and writes nothing, neither a document nor a job folder; when the node is back, the same server, never
restarted, serves and runs jobs again. Also the half-down case: the jobs index refuses writes (what ES does at its
flood-stage disk watermark) after the job's folder was prepared, and the folder is removed again.
"""

from __future__ import annotations

import time
import uuid
from collections.abc import Iterator

import pytest

from ades.config import Settings
from ades.jobs.folder import DataDir
from ades.services import elasticsearch
from ades.store import make_client
from ades.store.setup import physical_index
from tests.e2e.conftest import LiveServer, serve_app
from tests.helpers import assert_problem, wait_for

pytestmark = pytest.mark.integration

ASYNC = {"Prefer": "respond-async"}
ECHO = {"inputs": {"message": "store"}}


@pytest.fixture(scope="module")
def node(spare_node: Settings) -> Settings:
    """The spare node (tests/conftest.py): stopping it disturbs no other test."""
    elasticsearch.ensure_running(spare_node)
    return spare_node


@pytest.fixture(scope="module")
def server(node: Settings, tmp_path_factory: pytest.TempPathFactory) -> Iterator[LiveServer]:
    settings = Settings(es_url=node.elasticsearch_url, index_prefix=f"e2e-down-{uuid.uuid4().hex[:8]}-",
                        data_dir=tmp_path_factory.mktemp("down") / "data", event_sink="direct", es_max_retries=0,
                        es_request_timeout=5)
    yield from serve_app(settings, workers=1)


def run_echo(server: LiveServer) -> dict:
    answer = server.post("/processes/echo/execution", json=ECHO, headers=ASYNC)
    assert answer.status_code == 201, answer.text
    return server.wait_status(answer.json()["jobID"])


def job_folders(server: LiveServer) -> list[str]:
    return [folder.job_id for folder in DataDir(server.settings.data_dir).folders()]


def documents(server: LiveServer) -> int:
    es = make_client(server.settings)
    try:
        pattern = f"{server.settings.index_prefix}*,-{server.settings.hosts_alias}*"  # a node's lease is no request's
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
    wait_for(lambda: server.get("/jobs").status_code == 200, 60, "the server to list jobs again", interval=0.5)
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
