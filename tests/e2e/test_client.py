"""ades.client against a live server with real cwltool jobs: deploy, list, execute (async and sync), wait, logs,
results, download, dismiss, paging through every job by label, errors as ApiError, the bearer token on the wire."""

from __future__ import annotations

import io
import uuid
from pathlib import Path

import pytest

from ades.client import ApiError, Client
from tests.e2e.conftest import LiveServer
from tests.helpers import EXAMPLES, wait_for

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
def client(live: LiveServer) -> Client:
    client = Client(live.url)
    client.http.trust_env = False  # never a proxy for 127.0.0.1
    for path in (EXAMPLES / "two-step" / "two-step.cwl", EXAMPLES / "failing" / "failing.cwl",
                 EXAMPLES / "sleep" / "sleep.cwl"):
        summary = client.deploy(path)
        assert summary["id"] == path.stem
    return client


def test_deploy_and_list_processes(client: Client, tmp_path: Path) -> None:
    listed = {p["id"]: p for p in client.processes()}
    assert {"echo", "two-step", "failing", "sleep"} <= set(listed)
    assert listed["two-step"]["version"] == "1.2.0"
    assert client.process("two-step:1.2.0")["inputs"]["message"]["schema"] == {"type": "string"}
    # JSON by extension: the same package as application/cwl+json, under a new version
    as_json = tmp_path / "echo-copy.json"
    as_json.write_text('{"cwlVersion": "v1.2", "class": "CommandLineTool", "id": "echo-copy", '
                       '"baseCommand": "true", "inputs": {}, "outputs": {}}')
    assert client.deploy(as_json)["id"] == "echo-copy"
    client.undeploy("echo-copy")
    with pytest.raises(ApiError) as err:
        client.process("echo-copy")
    assert err.value.status == 404 and err.value.type.endswith("/no-such-process")


def test_execute_wait_logs_results_download(client: Client, tmp_path: Path) -> None:
    label = f"client-{uuid.uuid4().hex[:8]}"
    job = client.execute("two-step", {"message": "hello client"}, labels=[label, "client"])
    assert job.info["status"] == "accepted" and job.info["labels"] == [label, "client"]
    bar = io.StringIO()
    assert job.wait(timeout=120, progress=True, file=bar) == "successful"
    assert "100%" in bar.getvalue() and "successful" in bar.getvalue()  # the bar reached the end
    assert job.status() == "successful" and job.info["progress"] == 100
    assert job.logs().strip(), "a finished job has a log"

    results = job.results()
    assert results["shouted"]["href"].endswith(f"/jobs/{job.id}/results/shouted")
    written = job.download(tmp_path / "out")
    names = sorted(path.name for path in written)
    assert "results.json" in names and len(written) == 2
    [data_file] = [path for path in written if path.name != "results.json"]
    assert data_file.read_text().strip() == "HELLO CLIENT"
    assert data_file.parent == tmp_path / "out"


def test_sync_execute_returns_the_finished_job(client: Client) -> None:
    job = client.execute("echo", {"message": "sync"}, sync=True)
    assert job.info["status"] == "successful" and job.done
    assert "sync" in job.logs()
    failed = client.execute("failing", {"reason": "sync"}, sync=True)
    assert failed.info["status"] == "failed"


def test_failing_job(client: Client) -> None:
    job = client.execute("failing", {"reason": "client test"})
    assert job.wait(timeout=120) == "failed"
    assert "failing on purpose" in job.logs()
    with pytest.raises(ApiError) as err:
        job.results()
    assert err.value.status == 404 and "result-not-ready" in err.value.type


def test_follow_logs_ends_with_the_job(client: Client) -> None:
    job = client.execute("failing", {"reason": "followed"})
    text = "".join(job.follow_logs(poll=0.2))
    assert job.info["status"] == "failed"  # it returned because the job ended, having read the log after that
    assert "failing on purpose: no input data (followed)" in text


def test_dismiss_running_job(client: Client) -> None:
    job = client.execute("sleep", {"seconds": 300})
    wait_for(lambda: job.status() == "running", 60, "cwltool to be running the job", interval=0.1)
    assert job.info["status"] == "running"
    info = job.dismiss()
    assert info["status"] == "dismissed"
    assert job.wait(timeout=30) == "dismissed"


def test_jobs_iterates_every_page(client: Client, live: LiveServer) -> None:
    label = f"pages-{uuid.uuid4().hex[:8]}"
    started = [client.execute("echo", {"message": f"n{i}"}, labels=[label]) for i in range(5)]
    for job in started:
        assert job.wait(timeout=120) == "successful"
    other = client.execute("failing", {}, labels=[label])
    assert other.wait(timeout=120) == "failed"
    live.context.job_store.refresh()  # searches see a status once ES refreshes (1 s); do not wait for it

    found = list(client.jobs(labels=[label], page_size=2))  # 6 jobs, pages of 2: follows two next links
    assert sorted(job.id for job in found) == sorted([j.id for j in started] + [other.id])
    assert len({job.id for job in found}) == 6
    succeeded = list(client.jobs(labels=[label], status=["succeeded"], page_size=2))  # stored word accepted
    assert sorted(job.id for job in succeeded) == sorted(j.id for j in started)
    assert [job.id for job in client.jobs(labels=[label], status=["failed"])] == [other.id]
    assert list(client.jobs(labels=[label, "no-such-label"])) == []


def test_errors_are_api_errors(client: Client) -> None:
    with pytest.raises(ApiError) as err:
        client.execute("no-such-process", {})
    assert err.value.status == 404 and err.value.title and "no-such-process" in err.value.detail
    with pytest.raises(ApiError) as err:
        client.execute("two-step", {"wrong": 1})
    assert err.value.status == 400
    with pytest.raises(ApiError) as err:
        client.job("nope")
    assert err.value.status == 404


def test_token_is_sent_as_bearer_to_the_server_only(live: LiveServer, es_url: str) -> None:
    client = Client(live.url, token="s3cret")
    client.http.trust_env = False
    sent = client.request("GET", "/processes").request.headers  # what went over the wire
    assert sent["Authorization"] == "Bearer s3cret"
    plain = Client(live.url)
    plain.http.trust_env = False
    assert "Authorization" not in plain.request("GET", "/processes").request.headers
    # another origin (here Elasticsearch; in real life object storage behind a result href) never gets the token
    elsewhere = client.request("GET", f"{es_url}/_cluster/health").request.headers
    assert "Authorization" not in elsewhere
