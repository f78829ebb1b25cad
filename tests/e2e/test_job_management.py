"""OGC API Processes Part 4 (job management) against a live server with auth, real Elasticsearch and local cwltool
workers: a job created (it does not run), edited, then started and run with what the edit said; what may no longer
be done once it started (409 `locked`); a bad edit changes nothing; another user's job is no job."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import pytest
import yaml

from ades.config import Settings
from ades.cwl import to_job_order
from ades.jobs.folder import JobFolder
from ades.jobs.journal import read_entries
from ades.jobs.lifecycle import HostState
from ades.models import Job
from ades.store import make_client
from ades.store.job_edits import read_versioned
from tests.e2e.conftest import LiveServer, serve_app
from tests.helpers import assert_problem

pytestmark = pytest.mark.integration

LOCKED = "http://www.opengis.net/def/exceptions/ogcapi-processes-4/1.0/locked"
ALICE = {"Authorization": "Bearer alice-token"}
BOB = {"Authorization": "Bearer bob-token"}


@pytest.fixture(scope="module")
def managed(e2e_settings: Settings, tmp_path_factory: pytest.TempPathFactory) -> Iterator[LiveServer]:
    tokens = tmp_path_factory.mktemp("auth") / "tokens.yaml"
    tokens.write_text(yaml.safe_dump({"alice-token": {"user": "alice"}, "bob-token": {"user": "bob"}}),
                      encoding="utf-8")
    yield from serve_app(e2e_settings.model_copy(update={"auth_tokens_file": tokens}), workers=1)


def stored(live: LiveServer, job_id: str) -> dict[str, Any]:
    """The job's document with its version (`_seq_no`), as Elasticsearch holds it."""
    client = make_client(live.settings)
    try:
        return dict(client.get(index=live.settings.jobs_alias, id=job_id))
    finally:
        client.close()


def create(live: LiveServer, message: str, **extra: Any) -> dict[str, Any]:
    body = {"process": f"{live.url}/processes/echo", "inputs": {"message": message}, **extra}
    response = live.post("/jobs", json=body, headers=ALICE)
    assert response.status_code == 201, response.text
    info = response.json()
    assert response.headers["Location"] == f"{live.url}/jobs/{info['jobID']}"
    assert info["status"] == "created" and info["processID"] == "echo"
    return info


def test_created_edited_then_started_runs_as_edited(managed: LiveServer) -> None:
    live = managed
    job_id = create(live, "as created", labels=["first"])["jobID"]
    # it does not run: no folder, nothing held by the job service, still `created`, listed and filterable
    assert not JobFolder(live.settings.data_dir, job_id).exists()
    assert live.context.jobs.table.state(job_id) is HostState.RELEASED  # "not held by this process"
    doc = stored(live, job_id)["_source"]
    assert doc["status"] == "created" and doc["host"] is None and doc["user-id"] == "alice"
    listed = live.get("/jobs", params={"status": "created"}, headers=ALICE).json()
    assert [j["jobID"] for j in listed["jobs"]] == [job_id]

    # a bad edit: refused with the reason, nothing written
    before = stored(live, job_id)
    for bad, where in (({"inputs": {"message": 5}}, "message"), ({"labels": ["ok", " "]}, "labels"),
                       ({"process": "echo"}, "process"), ({"inputs": {"message": "x"}, "mode": "sync"}, "mode")):
        body = assert_problem(live.http.patch(f"{live.url}/jobs/{job_id}", json=bad, headers=ALICE, timeout=30),
                              400, "invalid-parameter" if where != "message" else "invalid-input")
        assert where in body["detail"], body
    assert stored(live, job_id)["_seq_no"] == before["_seq_no"]

    # someone else's job is no job, whatever they ask of it
    assert_problem(live.http.patch(f"{live.url}/jobs/{job_id}", json={"labels": ["x"]}, headers=BOB, timeout=30),
                   404, "no-such-job")
    assert_problem(live.post(f"/jobs/{job_id}/results", headers=BOB), 404, "no-such-job")
    assert_problem(live.get(f"/jobs/{job_id}/definition", headers=BOB), 404, "no-such-job")
    assert stored(live, job_id)["_seq_no"] == before["_seq_no"]

    edited = live.http.patch(f"{live.url}/jobs/{job_id}", json={"inputs": {"message": "as edited"},
                                                                 "labels": ["second", "third"]},
                             headers=ALICE, timeout=30)
    assert edited.status_code == 200, edited.text
    assert edited.json()["status"] == "created" and edited.json()["labels"] == ["second", "third"]
    definition = live.get(f"/jobs/{job_id}/definition", headers=ALICE).json()
    assert definition["inputs"] == {"message": "as edited"} and definition["process"].endswith("/processes/echo:1.0.0")

    started = live.post(f"/jobs/{job_id}/results", headers=ALICE)
    assert started.status_code == 202, started.text
    assert started.json()["status"] in ("accepted", "running", "successful")
    # once started it is locked: no second start, no edit
    assert_problem(live.post(f"/jobs/{job_id}/results", headers=ALICE), 409, LOCKED)
    assert_problem(live.http.patch(f"{live.url}/jobs/{job_id}", json={"labels": ["late"]}, headers=ALICE,
                                   timeout=30), 409, LOCKED)
    info = live.wait_status(job_id, headers=ALICE)
    assert info["status"] == "successful", info
    assert info["labels"] == ["second", "third"]
    out = live.get(f"/jobs/{job_id}/results/out", headers=ALICE)
    assert out.text == "as edited\n"


def test_two_starts_at_once_run_the_job_once(managed: LiveServer) -> None:
    live = managed
    job_id = create(live, "once")["jobID"]
    with ThreadPoolExecutor(4) as pool:
        answers = list(pool.map(lambda _: live.post(f"/jobs/{job_id}/results", headers=ALICE), range(4)))
    assert sorted(a.status_code for a in answers) == [202, 409, 409, 409], [a.text for a in answers]
    assert live.wait_status(job_id, headers=ALICE)["status"] == "successful"
    # one run: the log of the job's folder tells each start of it
    log = live.get(f"/jobs/{job_id}/logs", headers=ALICE).text
    assert log.count(f"ades: job {job_id} starts") == 1, log


def test_an_edit_and_a_start_that_meet_run_what_the_store_says(managed: LiveServer) -> None:
    """Edits and starts sent at the same moment: whichever wins, the job runs with the inputs its document holds,
    and an edit that came too late is refused (409) rather than lost."""
    live = managed
    jobs = [create(live, "original")["jobID"] for _ in range(4)]

    def edit(job_id: str) -> int:
        return live.http.patch(f"{live.url}/jobs/{job_id}", json={"inputs": {"message": "edited"}}, headers=ALICE,
                               timeout=30).status_code

    def start(job_id: str) -> int:
        return live.post(f"/jobs/{job_id}/results", headers=ALICE).status_code

    with ThreadPoolExecutor(8) as pool:
        # half the pairs sent edit first, half start first: both orders meet in the server
        pairs = [(pool.submit(edit, job_id), pool.submit(start, job_id)) if n % 2 else
                 tuple(reversed((pool.submit(start, job_id), pool.submit(edit, job_id))))
                 for n, job_id in enumerate(jobs)]
        answers = [(e.result(), s.result()) for e, s in pairs]
    for job_id, (edited, started) in zip(jobs, answers, strict=True):
        assert started == 202 and edited in (200, 409), answers
        assert live.wait_status(job_id, headers=ALICE)["status"] == "successful"
        held = stored(live, job_id)["_source"]["inputs"]["message"]
        assert held == ("edited" if edited == 200 else "original")
        assert live.get(f"/jobs/{job_id}/results/out", headers=ALICE).text == held + "\n"


def test_a_start_that_lost_its_race_changes_nothing_and_takes_its_journal_line_back(managed: LiveServer) -> None:
    """The job service's start against a version of the job that an edit replaced meanwhile: refused by the
    store, nothing changed, its journal line voided (a restart must not run the job with the old inputs)."""
    live = managed
    c = live.context
    job_id = create(live, "old inputs")["jobID"]
    stale = read_versioned(c.job_store, job_id)
    edited = live.http.patch(f"{live.url}/jobs/{job_id}", json={"inputs": {"message": "new inputs"}}, headers=ALICE,
                             timeout=30)
    assert edited.status_code == 200, edited.text
    package = c.package_of(c.process_store.get("echo:1.0.0"))
    job_order = to_job_order(package, {"message": "old inputs"}, c.file_roots, c.fetcher)
    job = Job(id=job_id, process_id="echo", process_version="1.0.0", inputs={"message": "old inputs"},
              user_id="alice")
    assert c.jobs.start(package, job, job_order, stale) is False
    doc = stored(live, job_id)["_source"]
    assert doc["status"] == "created" and doc["inputs"] == {"message": "new inputs"}
    assert job_id not in read_entries(c.jobs.journal.path)
    assert c.jobs.table.state(job_id) is HostState.RELEASED


def test_a_created_job_dismissed_never_runs(managed: LiveServer) -> None:
    live = managed
    job_id = create(live, "never")["jobID"]
    dismissed = live.delete(f"/jobs/{job_id}", headers=ALICE)
    assert dismissed.status_code == 200 and dismissed.json()["status"] == "dismissed", dismissed.text
    assert not JobFolder(live.settings.data_dir, job_id).exists()
    assert_problem(live.post(f"/jobs/{job_id}/results", headers=ALICE), 409, LOCKED)


def test_a_restart_leaves_a_created_job_alone(managed: LiveServer) -> None:
    """Reconciliation (what a restarted server does with unfinished jobs) neither re-queues nor fails it."""
    live = managed
    job_id = create(live, "waits")["jobID"]
    report = live.context.jobs.reconcile()
    assert report is not None
    assert job_id not in {*report.requeued, *report.lost, *report.watched, *report.left}
    assert stored(live, job_id)["_source"]["status"] == "created"
    assert not JobFolder(live.settings.data_dir, job_id).exists()


def test_create_refuses_what_execute_refuses_and_writes_nothing(managed: LiveServer) -> None:
    live = managed
    client = make_client(live.settings)
    try:
        client.indices.refresh(index=live.settings.jobs_alias)
        before = client.count(index=live.settings.jobs_alias)["count"]
        for body, status, kind, where in (
            ({"inputs": {"message": "m"}}, 400, "invalid-parameter", "process"),
            ({"process": "http://elsewhere.example/processes/echo", "inputs": {"message": "m"}}, 400,
             "invalid-parameter", "not a process of this server"),
            ({"process": "nosuch", "inputs": {}}, 404, "no-such-process", "process"),
            ({"process": "echo", "inputs": {}}, 400, "invalid-input", "message"),
            ({"process": "echo", "inputs": {"message": "m"}, "status": "run"}, 400, "invalid-parameter", "status"),
            ({"process": "echo", "inputs": {"message": "m"}, "batch": {"items": []}}, 400, "invalid-parameter",
             "batch"),
            ({"process": "echo:1.0.0", "inputs": {"message": "m"}, "dependsOn": ["no-such-job"]}, 400,
             "invalid-parameter", "dependsOn"),
        ):
            body_seen = assert_problem(live.post("/jobs", json=body, headers=ALICE), status, kind)
            assert where in body_seen["detail"], body_seen
        assert_problem(live.post("/jobs", data="inputs", headers={**ALICE, "Content-Type": "text/plain"}), 415,
                       "unsupported-media-type")
        client.indices.refresh(index=live.settings.jobs_alias)
        assert client.count(index=live.settings.jobs_alias)["count"] == before
    finally:
        client.close()


def test_the_cli_creates_edits_and_starts(managed: LiveServer) -> None:
    """`ades execute --create`, `ades jobs edit`, `ades jobs start --wait` (the console script, in a subprocess)."""
    live = managed
    ades = [str(Path(sys.executable).with_name("ades")), "--url", live.url, "--token", "alice-token", "--json"]
    env = {**os.environ, "NO_PROXY": "127.0.0.1", "no_proxy": "127.0.0.1"}

    def run(*args: str) -> dict[str, Any]:
        done = subprocess.run([ades[0], *args, *ades[1:]], capture_output=True, text=True, env=env, timeout=120,
                              check=False)
        assert done.returncode == 0, done.stderr
        return json.loads(done.stdout)

    made = run("execute", "echo", "-i", "message=from the cli", "-l", "cli", "--create")
    assert made["status"] == "created" and made["labels"] == ["cli"]
    job_id = made["jobID"]
    assert run("jobs", "edit", job_id, "-i", "message=edited by the cli")["status"] == "created"
    assert run("jobs", "start", job_id, "--wait")["status"] == "successful"
    assert live.get(f"/jobs/{job_id}/results/out", headers=ALICE).text == "edited by the cli\n"
    again = subprocess.run([ades[0], "jobs", "start", job_id, *ades[1:]], capture_output=True, text=True, env=env,
                           timeout=120, check=False)
    assert again.returncode != 0 and "409" in again.stderr + again.stdout, (again.stdout, again.stderr)


def test_conformance_and_openapi_declare_job_management(managed: LiveServer) -> None:
    classes = managed.get("/conformance").json()["conformsTo"]
    assert "http://www.opengis.net/spec/ogcapi-processes-4/1.0/conf/job-management" in classes
    paths = managed.get("/openapi", params={"f": "json"}).json()["paths"]
    assert paths["/jobs"]["post"]["operationId"] == "createJob"
    assert paths["/jobs/{jobId}"]["patch"]["operationId"] == "updateJob"
    assert paths["/jobs/{jobId}/results"]["post"]["operationId"] == "startJob"
    assert "created" in paths["/jobs"]["get"]["parameters"][0]["schema"]["items"]["enum"]

