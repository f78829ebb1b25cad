"""A server as it ships, attacked by whoever can reach it (issue 21, safe defaults): without auth it listens on
loopback only, `anonymous` may run jobs but neither deploy packages nor see anyone else's jobs, and a request whose
Host names another site (a web page that rebinds its DNS name to 127.0.0.1) is refused before anything runs."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from ades.config import Settings
from ades.models import Job
from tests.e2e.conftest import LiveServer, serve_app
from tests.helpers import EXAMPLES, assert_problem, store_jobs
from tests.security.serving import cleanup, served

pytestmark = pytest.mark.integration

CWL_YAML = {"Content-Type": "application/cwl+yaml"}
TWO_STEP = (EXAMPLES / "two-step" / "two-step.cwl").read_text()


@pytest.fixture(scope="module")
def as_shipped(es_url: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[LiveServer]:
    """A server without auth and with every exposure setting at its default."""
    settings = Settings(_env_file=None, es_url=es_url, index_prefix=f"sec-{uuid.uuid4().hex[:8]}-",
                        data_dir=tmp_path_factory.mktemp("exposure") / "data", event_sink="direct")
    yield from serve_app(settings, workers=1, anonymous_deploys=False)


def test_an_open_server_refuses_to_listen_beyond_loopback(es_url: str, tmp_path: Path) -> None:
    server = served(es_url, tmp_path)
    try:
        code = server.start("--host", "0.0.0.0").outcome()
        output = server.output()
        assert code is not None, f"ades serve --host 0.0.0.0 without auth started and answered:\n{output[-2000:]}"
        assert code == 1, output
        assert "0.0.0.0" in output and "ADES_AUTH_TOKENS_FILE" in output, output
        assert "ADES_ALLOW_UNAUTHENTICATED_BIND" in output, output
        assert "Traceback" not in output, output
    finally:
        cleanup(server)


def test_anonymous_may_neither_deploy_nor_see_anyone_elses_jobs(as_shipped: LiveServer) -> None:
    refused = as_shipped.post("/processes", data=TWO_STEP, headers=CWL_YAML)
    body = assert_problem(refused, 403, "forbidden")
    assert "'anonymous'" in body["detail"] and "deployer" in body["detail"]
    assert as_shipped.get("/processes/two-step").status_code == 404  # nothing was deployed
    assert assert_problem(as_shipped.delete("/processes/echo"), 403, "forbidden")

    bobs = Job(process_id="echo", inputs={"message": "bob's secret"}, user_id="bob")
    store_jobs(as_shipped.context.job_store, [bobs], refresh=True)
    assert_problem(as_shipped.get(f"/jobs/{bobs.id}"), 404, "no-such-job")
    assert bobs.id not in as_shipped.get("/jobs").text

    # what anonymous may still do on an open loopback server: run the processes there are, and see its own jobs
    mine = as_shipped.post("/processes/echo/execution", json={"inputs": {"message": "mine"}},
                           headers={"Prefer": "respond-async"})
    assert mine.status_code == 201, mine.text
    assert as_shipped.wait_status(mine.json()["jobID"])["status"] == "successful"


def count_jobs(server: LiveServer) -> int:
    store = server.context.job_store
    store.refresh()
    return int(store.client.count(index=store.index)["count"])


@pytest.mark.parametrize("host", ["evil.example", "evil.example:80", "localhost.evil.example", "127.0.0.1.nip.io"])
def test_a_request_for_another_host_is_refused(as_shipped: LiveServer, host: str) -> None:
    before = count_jobs(as_shipped)
    submitted = as_shipped.post("/processes/echo/execution", json={"inputs": {"message": "rebound"}},
                                headers={"Host": host, "Prefer": "respond-async"})
    body = assert_problem(submitted, 400, "invalid-parameter")
    assert "Host" in body["detail"] and host.split(":")[0] in body["detail"]
    assert_problem(as_shipped.get("/jobs", headers={"Host": host}), 400, "invalid-parameter")
    assert_problem(as_shipped.get("/conformance", headers={"Host": host}), 400, "invalid-parameter")
    assert count_jobs(as_shipped) == before  # nothing was written


@pytest.mark.parametrize("host", ["127.0.0.1", "localhost", "LOCALHOST.", "[::1]"])
def test_the_servers_own_names_are_served(as_shipped: LiveServer, host: str) -> None:
    port = as_shipped.url.rsplit(":", 1)[1]
    assert as_shipped.get("/jobs", headers={"Host": f"{host}:{port}"}).status_code == 200
