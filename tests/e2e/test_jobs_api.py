"""Execution over HTTP with real cwltool runs: both execute routes, labels, results, logs, job search (HTTP and raw
ES), failures, validation errors that index nothing, and dismissing a running job."""

from __future__ import annotations

import contextlib
import os
import time
import uuid
from pathlib import Path

import pytest

from ades.app import close_app, create_app
from ades.jobs.folder import JobFolder
from ades.store import make_client
from tests.e2e.conftest import LiveServer, count_jobs
from tests.helpers import EXAMPLES, TimedOut, assert_problem, wait_for

pytestmark = pytest.mark.integration

ASYNC = {"Prefer": "respond-async"}


@pytest.fixture(scope="module")
def deployed(live: LiveServer) -> LiveServer:
    for path, media in ((EXAMPLES / "two-step" / "two-step.cwl", "application/cwl+yaml"),
                        (EXAMPLES / "failing" / "failing.cwl", "application/cwl"),
                        (EXAMPLES / "sleep" / "sleep.cwl", "application/cwl")):
        response = live.post("/processes", data=path.read_text(), headers={"Content-Type": media})
        assert response.status_code == 201, response.text
    return live


def test_two_step_through_both_routes_with_labels(deployed: LiveServer) -> None:
    live = deployed
    tag = f"run-{uuid.uuid4().hex[:8]}"
    ogc = live.post("/processes/two-step/execution", headers=ASYNC,
                    json={"inputs": {"message": "hello ogc"}, "labels": [tag, "ogc"]})
    assert ogc.status_code == 201, ogc.text
    wpst = live.post("/processes/two-step:1.2.0/jobs",
                     json={"mode": "async", "response": "document", "inputs": [{"id": "message", "data": "hello wpst"}],
                           "outputs": [{"id": "shouted", "transmissionMode": "reference"}], "labels": [tag, "wpst"]})
    assert wpst.status_code == 201, wpst.text
    for response, text, route in ((ogc, "HELLO OGC", "ogc"), (wpst, "HELLO WPST", "wpst")):
        job_id = response.json()["jobID"]
        assert response.headers["Location"] == f"{live.url}/jobs/{job_id}"
        assert response.json()["status"] == "accepted" and response.json()["labels"] == [tag, route]
        info = live.wait_status(job_id)
        assert info["status"] == "successful", info
        assert info["processID"] == "two-step" and info["labels"] == [tag, route]
        assert info["progress"] == 100 and info["started"] and info["finished"]
        assert any(link["rel"].endswith("/results") for link in info["links"])
        results = live.get(f"/jobs/{job_id}/results").json()
        href = results["shouted"]["href"]
        assert href == f"{live.url}/jobs/{job_id}/results/shouted"
        assert live.http.get(href, timeout=10).text == text + "\n"
        log = live.get(f"/jobs/{job_id}/logs")
        assert log.headers["Content-Type"].startswith("text/plain")
        assert text.lower() in log.text  # the first step's stdout

    found = live.get("/jobs", params={"labels": f"{tag},ogc"}).json()
    assert [j["jobID"] for j in found["jobs"]] == [ogc.json()["jobID"]]
    both = live.get("/jobs", params=[("labels", tag)]).json()
    assert {j["jobID"] for j in both["jobs"]} == {ogc.json()["jobID"], wpst.json()["jobID"]}
    repeated = live.get("/jobs", params=[("labels", tag), ("labels", "wpst")]).json()
    assert [j["jobID"] for j in repeated["jobs"]] == [wpst.json()["jobID"]]

    client = make_client(live.settings)
    try:
        client.indices.refresh(index=live.settings.jobs_alias)
        hits = client.search(index=live.settings.jobs_alias, query={"term": {"labels": tag}})["hits"]["hits"]
    finally:
        client.close()
    assert {h["_source"]["id"] for h in hits} == {ogc.json()["jobID"], wpst.json()["jobID"]}
    assert {h["_source"]["status"] for h in hits} == {"succeeded"}
    assert {h["_source"]["user-id"] for h in hits} == {"anonymous"}


def test_echo_sync_and_timing(deployed: LiveServer) -> None:
    live = deployed
    document = live.post("/processes/echo/execution", json={"inputs": {"message": "warm up"}})
    assert document.status_code == 200, document.text
    href = document.json()["out"]["href"]
    assert live.http.get(href, timeout=10).text == "warm up\n"
    raw = live.post("/processes/echo/execution", json={"inputs": {"message": "raw!"}, "response": "raw"})
    assert raw.status_code == 200 and raw.text == "raw!\n"

    started = time.perf_counter()
    submitted = live.post("/processes/echo/execution", headers=ASYNC, json={"inputs": {"message": "timed"}})
    info = live.wait_status(submitted.json()["jobID"])
    elapsed = time.perf_counter() - started
    assert info["status"] == "successful"
    print(f"echo submit -> successful: {elapsed:.2f} s")


def test_failing_workflow_reports_the_error(deployed: LiveServer) -> None:
    live = deployed
    response = live.post("/processes/failing/execution", headers=ASYNC, json={"inputs": {"reason": "e2e"}})
    assert response.status_code == 201
    info = live.wait_status(response.json()["jobID"])
    assert info["status"] == "failed"
    assert "failing on purpose: no input data (e2e)" in info["message"]
    assert_problem(live.get(f"/jobs/{info['jobID']}/results"), 404, "result-not-ready")
    sync = live.post("/processes/failing/execution", json={"inputs": {}})
    body = assert_problem(sync, 500, "execution-failed")
    assert "failing on purpose" in body["detail"]


@pytest.mark.parametrize("labels", ["a,b", {"a": 1}, [1, 2], ["ok", None], [""], 7])
def test_labels_must_be_an_array_of_strings(deployed: LiveServer, labels: object) -> None:
    live = deployed
    before = count_jobs(live)
    ogc = live.post("/processes/echo/execution", headers=ASYNC, json={"inputs": {"message": "x"}, "labels": labels})
    assert "labels" in assert_problem(ogc, 400, "invalid-parameter")["detail"]
    wpst = live.post("/processes/echo/jobs", json={"inputs": [{"id": "message", "data": "x"}], "labels": labels})
    assert_problem(wpst, 400, "invalid-parameter")
    assert count_jobs(live) == before


def test_empty_labels_are_fine(deployed: LiveServer) -> None:
    response = deployed.post("/processes/echo/jobs", json={"inputs": [{"id": "message", "data": "x"}], "labels": []})
    assert response.status_code == 201 and response.json()["labels"] == []
    assert deployed.wait_status(response.json()["jobID"])["status"] == "successful"


def test_bad_inputs_name_the_input_and_index_nothing(deployed: LiveServer) -> None:
    live = deployed
    before = count_jobs(live)
    wrong_type = live.post("/processes/sleep/execution", headers=ASYNC, json={"inputs": {"seconds": "soon"}})
    assert "seconds" in assert_problem(wrong_type, 400, "invalid-input")["detail"]
    unknown = live.post("/processes/echo/jobs", json={"inputs": [{"id": "mesage", "data": "x"}]})
    assert "mesage" in assert_problem(unknown, 400, "invalid-input")["detail"]
    missing = live.post("/processes/echo/execution", headers=ASYNC, json={"inputs": {}})
    assert "message" in assert_problem(missing, 400, "invalid-input")["detail"]
    not_json = live.post("/processes/echo/execution", data="{not json", headers={"Content-Type": "application/json"})
    assert_problem(not_json, 400, "invalid-parameter")
    assert_problem(live.post("/processes/nope/execution", json={}), 404, "no-such-process")
    assert count_jobs(live) == before


def _alive(pgid: int) -> bool:
    try:
        os.killpg(pgid, 0)
    except ProcessLookupError:
        return False
    return True


def assert_status_document(info: dict, job_id: str) -> None:
    """What OGC clients (and the OGC test suite) read: no null for what is not known yet, and a `status` link to
    follow the job by."""
    assert None not in info.values(), info
    assert "finished" not in info, info
    assert any(link["rel"] == "status" and link["href"].endswith(f"/jobs/{job_id}") for link in info["links"]), info


def test_dismiss_a_running_job(deployed: LiveServer) -> None:
    live = deployed
    response = live.post("/processes/sleep/execution", headers=ASYNC, json={"inputs": {"seconds": 300}})
    job_id = response.json()["jobID"]
    assert_status_document(response.json(), job_id)  # accepted: not started, not finished
    running = live.wait_status(job_id, ("running",), timeout=60)
    assert running["status"] == "running"
    assert_status_document(running, job_id)
    pgid = live.context.jobs.table.wait_started(job_id, 30)
    assert pgid is not None and _alive(pgid)
    dismissed = live.delete(f"/jobs/{job_id}")
    assert dismissed.status_code == 200 and dismissed.json()["status"] == "dismissed"
    wait_for(lambda: not _alive(pgid), 15, "the job's process group to be gone after the dismissal", interval=0.1)
    assert live.context.jobs.wait(job_id, 15) == "dismissed"
    assert live.get(f"/jobs/{job_id}").json()["status"] == "dismissed"
    assert_problem(live.get(f"/jobs/{job_id}/results"), 404, "result-not-ready")


def test_dismiss_a_finished_job_removes_its_files(deployed: LiveServer) -> None:
    live = deployed
    job_id = live.post("/processes/echo/execution", headers=ASYNC, json={"inputs": {"message": "bye"}}).json()["jobID"]
    assert live.wait_status(job_id)["status"] == "successful"
    folder = JobFolder(live.settings.data_dir, job_id)
    assert folder.exists()
    assert live.delete(f"/jobs/{job_id}").status_code == 200
    assert not folder.exists()
    assert_problem(live.get(f"/jobs/{job_id}/results/out"), 404, "no-such-output")


def test_job_list_filters_and_paging(deployed: LiveServer) -> None:
    live = deployed
    tag = f"page-{uuid.uuid4().hex[:8]}"
    ids = []
    for i in range(3):
        r = live.post("/processes/echo/jobs", json={"inputs": [{"id": "message", "data": str(i)}], "labels": [tag]})
        ids.append(r.json()["jobID"])
    for job_id in ids:
        assert live.wait_status(job_id)["status"] == "successful"
    seen: list[str] = []
    url = f"/jobs?labels={tag}&limit=2"
    while url:
        page = live.get(url).json()
        seen += [j["jobID"] for j in page["jobs"]]
        nxt = [link["href"] for link in page["links"] if link["rel"] == "next"]
        url = nxt[0].removeprefix(live.url) if nxt else ""
    assert sorted(seen) == sorted(ids) and len(seen) == 3
    count_jobs(live)  # refreshes: searches see status changes after the next refresh, GET /jobs/{id} at once
    done = live.get("/jobs", params={"labels": tag, "status": "successful", "processID": "echo"}).json()
    assert len(done["jobs"]) == 3
    assert live.get("/jobs", params={"labels": tag, "status": "failed,running"}).json()["jobs"] == []
    assert live.get("/jobs", params={"labels": tag, "processID": "sleep"}).json()["jobs"] == []
    assert len(live.get("/jobs", params={"labels": tag, "datetime": "2000-01-01T00:00:00Z/.."}).json()["jobs"]) == 3
    assert live.get("/jobs", params={"labels": tag, "datetime": "../2000-01-01T00:00:00Z"}).json()["jobs"] == []
    assert len(live.get("/jobs", params={"labels": tag, "minDuration": 0, "maxDuration": 600}).json()["jobs"]) == 3
    assert live.get("/jobs", params={"labels": tag, "minDuration": 600}).json()["jobs"] == []
    html = live.get("/jobs", params={"labels": tag, "f": "html"})
    assert html.headers["Content-Type"].startswith("text/html") and ids[0] in html.text
    assert_problem(live.get("/jobs", params={"status": "succeeded"}), 400, "invalid-parameter")
    assert_problem(live.get("/jobs", params={"limit": 0}), 400, "invalid-parameter")
    assert_problem(live.get("/jobs", params={"limit": 1001}), 400, "invalid-parameter")
    assert_problem(live.get("/jobs", params={"after": "%%%"}), 400, "invalid-parameter")
    assert_problem(live.get("/jobs", params={"datetime": "yesterday"}), 400, "invalid-parameter")


def test_unknown_job_and_escaping_paths(deployed: LiveServer) -> None:
    live = deployed
    assert_problem(live.get("/jobs/does-not-exist"), 404, "no-such-job")
    assert_problem(live.get("/jobs/does-not-exist/logs"), 404, "no-such-job")
    assert_problem(live.delete("/jobs/does-not-exist"), 404, "no-such-job")
    job_id = live.post("/processes/echo/execution", headers=ASYNC, json={"inputs": {"message": "x"}}).json()["jobID"]
    assert live.wait_status(job_id)["status"] == "successful"
    for path in ("..%2F..%2Fjob.log", "..%2Fjob.log", "%2Fetc%2Fpasswd", "..%2F..%2F..%2F..%2Fetc%2Fpasswd"):
        response = live.get(f"/jobs/{job_id}/files/{path}")
        assert response.status_code in (400, 404) and response.json()["status"] in (400, 404)


def test_dismiss_a_job_another_server_process_runs(deployed: LiveServer) -> None:
    """Two apps on one store and one data folder, like two gunicorn workers: B dismisses what A started."""
    live = deployed
    other = create_app(live.settings, public_url=live.url, workers=1)
    try:
        response = live.post("/processes/sleep/execution", headers=ASYNC, json={"inputs": {"seconds": 300}})
        job_id = response.json()["jobID"]
        assert live.wait_status(job_id, ("running",), timeout=60)["status"] == "running"
        pgid = live.context.jobs.table.wait_started(job_id, 30)
        assert pgid is not None
        with contextlib.suppress(TimedOut):
            wait_for(lambda: _tool_running_in(JobFolder(live.settings.data_dir, job_id).path), 10, "the tool to run")
        dismissed = other.test_client().delete(f"/jobs/{job_id}")
        assert dismissed.status_code == 200 and dismissed.get_json()["status"] == "dismissed"
        assert live.context.jobs.wait(job_id, 20) == "dismissed"
        # killed members are reaped a moment later
        wait_for(lambda: not _alive(pgid), 10, "the job's process group to be gone", interval=0.1)
    finally:
        close_app(other)


def _tool_running_in(folder: Path) -> bool:
    for entry in Path("/proc").iterdir():
        try:
            if entry.name.isdigit() and os.readlink(entry / "cwd").startswith(str(folder)):
                return True
        except OSError:
            continue
    return False
