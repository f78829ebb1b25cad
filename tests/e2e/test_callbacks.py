"""OGC callbacks against a live server and a real receiver: an execute request's `subscriber` is told the job's
changes (signed, verified here with the shared secret), retried after failures, refused at submission when it names
an address the server does not reach, and the delivery is visible on the job.

The receiver is an HTTP server on 127.0.0.1, reached by the name `localhost`, which the server's ADES_FETCH_ALLOW
allows (it stands in for the internet, as in tests/security/test_fetch.py); the same receiver by its address is
refused.
"""

from __future__ import annotations

import hashlib
import hmac
import http.server
import json
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
from pydantic import SecretStr

from ades.config import Settings
from tests.e2e.conftest import LiveServer, count_jobs, serve_app
from tests.helpers import GATE_CWL, assert_problem, gate_folder, wait_for

SECRET = "a-secret-the-receiver-shares-with-the-server"
ASYNC = {"Prefer": "respond-async"}


@dataclass
class Received:
    path: str
    headers: dict[str, str]
    body: bytes
    answered: int

    @property
    def document(self) -> dict[str, Any]:
        return json.loads(self.body)


@dataclass
class Receiver:
    port: int
    answers: dict[str, list[int]] = field(default_factory=dict)
    """Per path, the statuses to answer first (then 200)."""
    received: list[Received] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock)

    def url(self, path: str, host: str = "localhost") -> str:
        return f"http://{host}:{self.port}{path}"

    def at(self, path: str) -> list[Received]:
        with self.lock:
            return [r for r in self.received if r.path == path]


@pytest.fixture(scope="module")
def receiver() -> Iterator[Receiver]:
    holder: dict[str, Receiver] = {}

    class Handler(http.server.BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            body = self.rfile.read(int(self.headers.get("Content-Length", "0")))
            rec = holder["r"]
            with rec.lock:
                queue = rec.answers.get(self.path) or []
                status = queue.pop(0) if queue else 200
                rec.received.append(Received(self.path, dict(self.headers), body, status))
            self.send_response(status)
            self.send_header("Content-Length", "0")
            self.end_headers()

        def log_message(self, *args: Any) -> None:
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    holder["r"] = Receiver(server.server_port)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield holder["r"]
    server.shutdown()
    thread.join(5)


@pytest.fixture(scope="module")
def gates(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return gate_folder(tmp_path_factory.mktemp("callback-gates"))


@pytest.fixture(scope="module")
def server(e2e_settings: Settings, gates: Path) -> Iterator[LiveServer]:
    settings = e2e_settings.model_copy(update={"sandbox_read_only": [gates],
        "fetch_allow": ["localhost"], "callback_secret": SecretStr(SECRET), "callback_poll_interval": 0.1,
        "callback_retry_delay": 0.05, "callback_attempts": 3, "callback_progress_interval": 0.0})
    yield from serve_app(settings)


def verified(received: Received) -> dict[str, Any]:
    """The document of a callback whose signature checks out with the shared secret, checked as a receiver would
    (README, Callbacks), without ades."""
    headers = {k.lower(): v for k, v in received.headers.items()}
    assert headers["content-type"] == "application/json"
    stamp = headers["ades-timestamp"]
    expected = hmac.new(SECRET.encode(), stamp.encode() + b"." + received.body, hashlib.sha256).hexdigest()
    assert hmac.compare_digest(headers["ades-signature"], f"sha256={expected}"), headers
    assert abs(time.time() - int(stamp)) < 300
    return received.document


def callback_state(server: LiveServer, job_id: str, done: Any) -> dict[str, Any]:
    def reached() -> dict[str, Any] | None:
        state = server.get(f"/jobs/{job_id}").json().get("callback") or {}
        return state if done(state) else None
    return wait_for(reached, 30, f"the callback state of job {job_id}", interval=0.05)


def test_a_job_s_subscriber_is_told_its_progress_and_its_end_signed(server: LiveServer, receiver: Receiver,
                                                                   gates: Path) -> None:
    assert server.post("/processes", data=GATE_CWL, headers={"Content-Type": "application/cwl"}).status_code == 201
    gate = gates / "a"
    subscriber = {"successUri": receiver.url("/a/ok"), "inProgressUri": receiver.url("/a/run"),
                  "failedUri": receiver.url("/a/ko")}
    answer = server.post("/processes/gate/execution", headers=ASYNC,
                         json={"inputs": {"gate": str(gate)}, "subscriber": subscriber})
    assert answer.status_code == 201, answer.text
    job_id = answer.json()["jobID"]
    running = wait_for(lambda: receiver.at("/a/run") or None, 60, "the in-progress callback", interval=0.05)
    assert verified(running[0])["status"] == "running" and verified(running[0])["jobID"] == job_id
    state = callback_state(server, job_id, lambda s: s.get("lastDelivered") == "running")
    assert state["subscriber"] == subscriber and state["attempts"] == 0
    gate.touch()
    told = wait_for(lambda: receiver.at("/a/ok") or None, 60, "the success callback", interval=0.05)
    document = verified(told[0])
    assert document["jobID"] == job_id and document["status"] == "successful"
    shown = server.get(f"/jobs/{job_id}").json()
    assert document == {k: v for k, v in shown.items() if k != "callback"}  # the status document, links and all
    state = callback_state(server, job_id, lambda s: s.get("lastDelivered") == "successful")
    assert state["attempts"] == 0 and "lastError" not in state and "deliveredAt" in state
    assert not receiver.at("/a/ko") and len(receiver.at("/a/ok")) == 1  # an end is told once


def test_a_subscriber_that_answered_500_twice_is_told_again_the_same_delivery(server: LiveServer,
                                                                               receiver: Receiver) -> None:
    receiver.answers["/b/ok"] = [500, 500]
    answer = server.post("/processes/echo/jobs", json={"inputs": [{"id": "message", "data": "x"}],
                                                       "subscriber": {"successUri": receiver.url("/b/ok")}})
    assert answer.status_code == 201, answer.text
    job_id = answer.json()["jobID"]
    state = callback_state(server, job_id, lambda s: s.get("lastDelivered") == "successful")
    tries = receiver.at("/b/ok")
    assert [t.answered for t in tries] == [500, 500, 200]
    assert len({t.headers["Ades-Delivery"] for t in tries}) == 1  # one state, delivered at least once
    assert all(verified(t)["status"] == "successful" for t in tries)
    assert state["attempts"] == 0 and "deliveredAt" in state


def test_a_subscriber_that_never_takes_it_is_given_up_on_visibly(server: LiveServer, receiver: Receiver) -> None:
    receiver.answers["/c/ko"] = [503] * 10
    answer = server.post("/processes/echo/execution", headers=ASYNC, json={
        "inputs": {"message": "x"}, "delay": 600, "subscriber": {"failedUri": receiver.url("/c/ko")}})
    job_id = answer.json()["jobID"]
    assert server.delete(f"/jobs/{job_id}").status_code == 200
    state = callback_state(server, job_id, lambda s: s.get("gaveUp"))
    assert state["attempts"] == 3 and "503" in state["lastError"] and "lastDelivered" not in state
    assert [verified(t)["status"] for t in receiver.at("/c/ko")] == ["dismissed"] * 3


@pytest.mark.parametrize("route", ["ogc", "wpst"])
@pytest.mark.parametrize(("subscriber", "member", "said"), [
    ({"successUri": "http://127.0.0.1:9/x"}, "successUri", "127.0.0.1 is a loopback address"),
    ({"inProgressUri": "http://169.254.169.254/latest"}, "inProgressUri", "a cloud metadata address"),
    ({"failedUri": "http://10.1.2.3/x"}, "failedUri", "a private address"),
    ({"successUri": "ftp://localhost/x"}, "successUri", "only http:// and https://"),
    ({"successUri": "/relative"}, "successUri", "only http:// and https://"),
    ({"successUri": 3}, "successUri", "valid string"),
    ({"succesUri": "http://localhost/x"}, "succesUri", "Extra inputs"),
])
def test_a_subscriber_the_server_does_not_reach_is_refused_and_nothing_written(
        server: LiveServer, route: str, subscriber: dict[str, Any], member: str, said: str) -> None:
    before = count_jobs(server)
    if route == "ogc":
        answer = server.post("/processes/echo/execution", headers=ASYNC,
                             json={"inputs": {"message": "x"}, "subscriber": subscriber})
    else:
        answer = server.post("/processes/echo/jobs", json={"inputs": [{"id": "message", "data": "x"}],
                                                           "subscriber": subscriber})
    detail = assert_problem(answer, 400, "invalid-parameter")["detail"]
    assert detail.startswith(f"subscriber.{member}: ") and said in detail, detail
    assert count_jobs(server) == before


def test_callbacks_are_declared(server: LiveServer) -> None:
    conformance = server.get("/conformance").json()["conformsTo"]
    assert "http://www.opengis.net/spec/ogcapi-processes-1/1.0/conf/callback" in conformance
    document = server.get("/openapi", params={"f": "json"}).json()
    assert set(document["components"]["schemas"]["subscriber"]["properties"]) == {
        "successUri", "inProgressUri", "failedUri"}
    for path in ("/processes/{processId}/execution", "/processes/{processId}/jobs"):
        assert set(document["paths"][path]["post"]["callbacks"]) == {"jobSucceeded", "jobInProgress", "jobFailed"}



def test_a_created_job_takes_its_subscriber_by_patch_and_tells_it_once_started(server: LiveServer,
                                                                               receiver: Receiver) -> None:
    """OGC Part 4 and callbacks together: a subscriber set on a created job is checked as an execute request's is
    (refused with nothing changed), a created job is told nothing, and once started its end is delivered."""
    made = server.post("/jobs", json={"process": "echo", "inputs": {"message": "x"}})
    assert made.status_code == 201, made.text
    job_id = made.json()["jobID"]
    refused = server.http.patch(f"{server.url}/jobs/{job_id}", timeout=30,
                                json={"subscriber": {"successUri": "http://10.1.2.3/x"}})
    assert "subscriber.successUri: " in assert_problem(refused, 400, "invalid-parameter")["detail"]
    assert "callback" not in server.get(f"/jobs/{job_id}").json()
    patched = server.http.patch(f"{server.url}/jobs/{job_id}", timeout=30,
                                json={"subscriber": {"successUri": receiver.url("/d/ok")}})
    assert patched.status_code == 200, patched.text
    assert not receiver.at("/d/ok")
    assert server.post(f"/jobs/{job_id}/results").status_code == 202
    told = wait_for(lambda: receiver.at("/d/ok") or None, 60, "the success callback", interval=0.05)
    assert verified(told[0])["jobID"] == job_id and verified(told[0])["status"] == "successful"
