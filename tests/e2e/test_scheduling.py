"""Dependent jobs (`dependsOn`, `delay`) and back-pressure, over HTTP against a live server and the real ES."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from datetime import datetime
from pathlib import Path

import pytest

from ades.config import Settings
from tests.e2e.conftest import LiveServer, serve_app
from tests.helpers import journaled_jobs

pytestmark = pytest.mark.integration

SLEEP = Path(__file__).resolve().parents[2] / "cwl" / "examples" / "sleep" / "sleep.cwl"


@pytest.fixture(scope="module")
def server(e2e_settings: Settings) -> Iterator[LiveServer]:
    yield from serve_app(e2e_settings)


@pytest.fixture(scope="module")
def sleep_process(server: LiveServer) -> str:
    response = server.post("/processes", data=SLEEP.read_text(), headers={"Content-Type": "application/cwl+yaml"})
    assert response.status_code == 201, response.text
    return "sleep"


def _submit(server: LiveServer, process: str, inputs: dict, **extra) -> dict:
    response = server.post(f"/processes/{process}/execution", json={"inputs": inputs, **extra},
                           headers={"Prefer": "respond-async"})
    assert response.status_code == 201, response.text
    return response.json()


def _doc(server: LiveServer, job_id: str) -> dict:
    store = server.context.job_store
    return store.get(job_id)


def _time(value: str) -> datetime:
    return datetime.fromisoformat(value.replace("Z", "+00:00"))


def test_chain_with_delay_runs_in_order(server: LiveServer, sleep_process: str) -> None:
    a = _submit(server, sleep_process, {"seconds": 1})
    b = _submit(server, "echo", {"message": "after a"}, dependsOn=[a["jobID"]])
    c = _submit(server, "echo", {"message": "after b"}, dependsOn=[b["jobID"]], delay=1.5)
    waiting = server.get(f"/jobs/{c['jobID']}").json()
    assert waiting["status"] == "accepted"
    assert b["jobID"] in waiting["message"] and "1.5 s of delay" in waiting["message"]
    assert _doc(server, c["jobID"])["depends-on"] == [b["jobID"]]
    assert server.wait_status(c["jobID"])["status"] == "successful"
    docs = [_doc(server, j["jobID"]) for j in (a, b, c)]
    assert [d["status"] for d in docs] == ["succeeded"] * 3
    assert _time(docs[1]["start-time"]) >= _time(docs[0]["stop-time"])
    assert (_time(docs[2]["start-time"]) - _time(docs[1]["stop-time"])).total_seconds() >= 1.5


def test_a_failing_dependency_fails_the_chain_with_reasons(server: LiveServer) -> None:
    a = server.post("/processes", data=(SLEEP.parent.parent / "failing" / "failing.cwl").read_text(),
                    headers={"Content-Type": "application/cwl+yaml"})
    assert a.status_code in (201, 409), a.text
    first = _submit(server, "failing", {})
    second = _submit(server, "echo", {"message": "never"}, dependsOn=[first["jobID"]])
    third = _submit(server, "echo", {"message": "never either"}, dependsOn=[second["jobID"]], delay=0.5)
    assert server.wait_status(third["jobID"])["status"] == "failed"
    second_doc, third_doc = _doc(server, second["jobID"]), _doc(server, third["jobID"])
    assert second_doc["status"] == "failed" and first["jobID"] in second_doc["message"]
    assert "ended failed" in second_doc["message"]
    assert third_doc["status"] == "failed" and second["jobID"] in third_doc["message"]
    assert second_doc["start-time"] is None and third_doc["start-time"] is None  # they never ran


def test_dismissing_a_waiting_job_keeps_it_from_running(server: LiveServer, sleep_process: str) -> None:
    blocker = _submit(server, sleep_process, {"seconds": 3})
    waiting = _submit(server, "echo", {"message": "x"}, dependsOn=[blocker["jobID"]])
    assert server.delete(f"/jobs/{waiting['jobID']}").json()["status"] == "dismissed"
    server.wait_status(blocker["jobID"])
    assert server.wait_status(waiting["jobID"])["status"] == "dismissed"
    assert _doc(server, waiting["jobID"])["start-time"] is None


@pytest.mark.parametrize("extra, where", [
    ({"dependsOn": ["0b0f7c52-2a4c-4f7e-9a7f-000000000000"]}, "dependsOn: no job 0b0f7c52"),
    ({"dependsOn": "not-a-list"}, "dependsOn"),
    ({"dependsOn": ["../etc"]}, "dependsOn"),
    ({"delay": -1}, "delay"),
    ({"delay": 10**9}, "delay"),
])
def test_bad_scheduling_is_a_400_and_writes_nothing(server: LiveServer, extra: dict, where: str) -> None:
    label = f"bad-{uuid.uuid4().hex[:8]}"
    response = server.post("/processes/echo/execution", json={"inputs": {"message": "x"}, "labels": [label],
                                                              **extra}, headers={"Prefer": "respond-async"})
    assert response.status_code == 400, response.text
    assert where in response.json()["detail"]
    server.context.job_store.refresh()
    assert server.get(f"/jobs?labels={label}").json()["jobs"] == []


def test_wpst_route_takes_depends_on(server: LiveServer) -> None:
    first = _submit(server, "echo", {"message": "one"})
    response = server.post("/processes/echo/jobs", json={
        "inputs": [{"id": "message", "data": "two"}], "dependsOn": [first["jobID"]]})
    assert response.status_code == 201, response.text
    assert server.wait_status(response.json()["jobID"])["status"] == "successful"


@pytest.fixture
def capped(es_url: str, tmp_path: Path) -> Iterator[LiveServer]:
    settings = Settings(es_url=es_url, index_prefix=f"e2e-{uuid.uuid4().hex[:10]}-", data_dir=tmp_path / "data",
                        event_sink="direct", max_queued_jobs=3)
    yield from serve_app(settings)


def test_back_pressure_answers_503_and_writes_nothing(capped: LiveServer) -> None:
    # delayed jobs stay queued (submitted): the cap counts them
    for i in range(3):
        _submit(capped, "echo", {"message": f"queued {i}"}, delay=60, labels=["cap"])
    response = capped.post("/processes/echo/execution", json={"inputs": {"message": "one too many"},
                                                              "labels": ["cap"]}, headers={"Prefer": "respond-async"})
    assert response.status_code == 503, response.text
    assert response.headers["Retry-After"] == "5"
    body = response.json()
    assert body["status"] == 503 and "limit is 3" in body["detail"] and body["title"]
    capped.context.job_store.refresh()
    assert len(capped.get("/jobs?labels=cap").json()["jobs"]) == 3
    assert journaled_jobs(capped.settings.data_dir) == 3  # the refused one was never journaled
