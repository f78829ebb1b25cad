"""OGC API Processes 1.0 results negotiation against a live server, with the built-in `echo`: `response` raw or
document, each output by value or by reference, synchronous and asynchronous, one output and several; and the
monitor links that tell a client where to follow its job."""

from __future__ import annotations

import email
import email.policy
from typing import Any

import pytest
import requests

from tests.e2e.conftest import LiveServer, count_jobs
from tests.helpers import assert_problem

pytestmark = pytest.mark.integration

ASYNC = {"Prefer": "respond-async"}
RESULTS_REL = "http://www.opengis.net/def/rel/ogc/1.0/results"


def run(live: LiveServer, body: dict[str, Any], headers: dict[str, str] | None = None) -> requests.Response:
    return live.post("/processes/echo/execution", json=body, headers=headers)


def links_of(response: requests.Response) -> list[dict[str, str]]:
    """The Link headers of a response, parsed (requests keeps only one per rel; we want them all)."""
    found = []
    for value in response.raw.headers.get_all("Link") or []:
        found += requests.utils.parse_header_links(value)
    return found


def parts_of(response: requests.Response) -> dict[str, Any]:
    """The parts of a multipart/related answer by Content-ID (without its angle brackets)."""
    head = f"Content-Type: {response.headers['Content-Type']}\r\n\r\n".encode()
    message = email.message_from_bytes(head + response.content, policy=email.policy.HTTP)
    assert message.is_multipart()
    return {part["Content-ID"].strip("<>"): part for part in message.iter_parts()}


def test_raw_value_of_one_output_is_the_value_itself(live: LiveServer) -> None:
    answer = run(live, {"inputs": {"message": "just this"}, "outputs": {"out": {"transmissionMode": "value"}},
                        "response": "raw"})
    assert answer.status_code == 200, answer.text
    assert answer.text == "just this\n"
    assert answer.headers["Content-Type"].startswith("text/plain")  # the output's declared media type
    monitor = [link for link in links_of(answer) if link["rel"] == "monitor"]
    assert len(monitor) == 1 and "/jobs/" in monitor[0]["url"]

    text = run(live, {"inputs": {"message": "m", "choice": "plain words"}, "response": "raw",
                      "outputs": {"choice_echo": {"transmissionMode": "value"}}})
    assert text.status_code == 200 and text.text == "plain words"
    assert text.headers["Content-Type"].startswith("text/plain")
    numbers = run(live, {"inputs": {"message": "m", "numbers": [3, 1, 2]}, "response": "raw",
                         "outputs": {"numbers_echo": {"transmissionMode": "value"}}})
    assert numbers.status_code == 200 and numbers.headers["Content-Type"] == "application/json"
    assert numbers.json() == [3, 1, 2]


def test_raw_by_reference_is_204_with_a_link_per_output(live: LiveServer) -> None:
    answer = run(live, {"inputs": {"message": "linked", "numbers": [7]}, "response": "raw",
                        "outputs": {"out": {"transmissionMode": "reference"},
                                    "numbers_echo": {"transmissionMode": "reference"}}})
    assert answer.status_code == 204, answer.text
    assert answer.content == b""
    results = {link["title"]: link for link in links_of(answer) if link["rel"] == RESULTS_REL}
    assert set(results) == {"out", "numbers_echo"}
    assert live.http.get(results["out"]["url"], timeout=10).text == "linked\n"
    assert live.http.get(results["numbers_echo"]["url"], timeout=10).json() == [7]
    assert any(link["rel"] == "monitor" for link in links_of(answer))


def test_raw_with_several_outputs_is_multipart_related(live: LiveServer) -> None:
    answer = run(live, {"inputs": {"message": "several", "choice": 42, "area": {"bbox": [1, 2, 3, 4]}},
                        "response": "raw",
                        "outputs": {"out": {"transmissionMode": "value"}, "choice_echo": {"transmissionMode": "value"},
                                    "area_echo": {"transmissionMode": "reference"}}})
    assert answer.status_code == 200, answer.text
    assert answer.headers["Content-Type"].startswith("multipart/related")
    parts = parts_of(answer)
    assert list(parts) == ["out", "choice_echo", "area_echo"]
    assert parts["out"].get_content_type() == "text/plain"
    assert parts["out"].get_payload(decode=True) == b"several\n"
    assert parts["choice_echo"].get_payload(decode=True) == b"42"
    # by reference: an empty part that says where the output is
    assert parts["area_echo"].get_payload(decode=True) in (b"", None)
    area = live.http.get(parts["area_echo"]["Content-Location"], timeout=10).json()
    assert area["bbox"] == [1, 2, 3, 4]


def test_document_gives_each_output_as_asked(live: LiveServer) -> None:
    answer = run(live, {"inputs": {"message": "inline me", "numbers": [1, 2]},
                        "outputs": {"out": {"transmissionMode": "value"},
                                    "numbers_echo": {"transmissionMode": "reference"}}})
    assert answer.status_code == 200, answer.text
    results = answer.json()
    assert results["out"] == {"value": "inline me\n", "mediaType": "text/plain"}
    assert set(results["numbers_echo"]) == {"href", "type"}
    assert live.http.get(results["numbers_echo"]["href"], timeout=10).json() == [1, 2]
    # asked for one output: only that one comes back
    only = run(live, {"inputs": {"message": "one", "numbers": [1]}, "outputs": {"numbers_echo": {}}})
    assert only.json() == {"numbers_echo": {"value": [1]}}


def test_outputs_the_run_did_not_produce_are_left_out(live: LiveServer) -> None:
    """echo's optional outputs echo inputs this request leaves out: no null in the results (OGC's schema has
    none), and a raw answer is still the one file."""
    document = run(live, {"inputs": {"message": "only the file"}})
    assert document.status_code == 200 and set(document.json()) == {"out"}, document.text
    raw = run(live, {"inputs": {"message": "only the file"}, "response": "raw"})
    assert raw.status_code == 200 and raw.text == "only the file\n"


def test_async_results_answer_as_the_execute_request_asked(live: LiveServer) -> None:
    created = run(live, {"inputs": {"message": "later", "choice": "x"}, "response": "raw",
                         "outputs": {"out": {"transmissionMode": "value"}}}, ASYNC)
    assert created.status_code == 201, created.text
    assert any(link["rel"] == "monitor" and link["url"] == created.headers["Location"]
               for link in links_of(created))
    job_id = created.json()["jobID"]
    info = live.wait_status(job_id)
    assert info["status"] == "successful"
    results = live.get(f"/jobs/{job_id}/results")
    assert results.status_code == 200 and results.text == "later\n"
    assert results.headers["Content-Type"].startswith("text/plain")
    # f=json: the same outputs, as a document
    assert live.get(f"/jobs/{job_id}/results?f=json").json() == {"out": {"value": "later\n",
                                                                          "mediaType": "text/plain"}}

    several = run(live, {"inputs": {"message": "both", "choice": 5}, "response": "raw"}, ASYNC).json()["jobID"]
    live.wait_status(several)
    parts = parts_of(live.get(f"/jobs/{several}/results"))
    assert parts["out"].get_payload(decode=True) == b"both\n" and parts["choice_echo"].get_payload(decode=True) == b"5"

    refs = run(live, {"inputs": {"message": "refs"}, "response": "raw",
                      "outputs": {"out": {"transmissionMode": "reference"}}}, ASYNC).json()["jobID"]
    live.wait_status(refs)
    answer = live.get(f"/jobs/{refs}/results")
    assert answer.status_code == 204
    assert [link["title"] for link in links_of(answer) if link["rel"] == RESULTS_REL] == ["out"]


def test_a_wpst_job_answers_its_results_as_its_request_asked(live: LiveServer) -> None:
    body = {"inputs": [{"id": "message", "data": "wps-t raw"}], "response": "raw",
            "outputs": [{"id": "out", "transmissionMode": "value"}]}
    created = live.post("/processes/echo:1.0.0/jobs", json=body)
    assert created.status_code == 201, created.text
    job_id = created.json()["jobID"]
    assert live.wait_status(job_id)["status"] == "successful"
    results = live.get(f"/jobs/{job_id}/results")
    assert results.status_code == 200 and results.text == "wps-t raw\n"
    before = count_jobs(live)
    unknown = live.post("/processes/echo:1.0.0/jobs", json={**body, "outputs": [{"id": "nope"}]})
    assert "nope" in assert_problem(unknown, 400, "invalid-parameter")["detail"]
    assert count_jobs(live) == before


def test_a_job_says_where_to_monitor_it(live: LiveServer) -> None:
    created = run(live, {"inputs": {"message": "wait", "pause": 3}}, ASYNC)
    job_id = created.json()["jobID"]
    try:
        for info in (created.json(), live.get(f"/jobs/{job_id}").json()):
            monitor = [link["href"] for link in info["links"] if link["rel"] == "monitor"]
            assert monitor and monitor[0].endswith(f"/jobs/{job_id}"), info
        # still pausing: no results yet
        assert_problem(live.get(f"/jobs/{job_id}/results"), 404, "result-not-ready")
    finally:
        live.delete(f"/jobs/{job_id}")


@pytest.mark.parametrize(("outputs", "where"), [
    ({"nope": {}}, "'nope'"),
    ({"out": {"transmissionMode": "inline"}}, "outputs.out.transmissionMode"),
    ({"out": "value"}, "outputs.out"),
])
def test_a_bad_outputs_request_is_refused_and_writes_nothing(live: LiveServer, outputs: dict, where: str) -> None:
    before = count_jobs(live)
    body = assert_problem(run(live, {"inputs": {"message": "x"}, "outputs": outputs}, ASYNC), 400,
                          "invalid-parameter")
    assert where in body["detail"]
    assert count_jobs(live) == before


def nulls_in(value: Any, where: str = "") -> list[str]:
    """Where a JSON document holds null (OGC's schemas allow it nowhere in these answers)."""
    if value is None:
        return [where or "(the document)"]
    if isinstance(value, dict):
        return [spot for key, item in value.items() for spot in nulls_in(item, f"{where}.{key}")]
    if isinstance(value, list):
        return [spot for i, item in enumerate(value) for spot in nulls_in(item, f"{where}[{i}]")]
    return []


def test_no_answer_holds_null(live: LiveServer) -> None:
    """Every OGC document a client reads, in every state of a job: nothing unknown is sent as null."""
    created = run(live, {"inputs": {"message": "audit", "pause": 1}}, ASYNC)
    job_id = created.json()["jobID"]
    seen = {"created": created.json(), "accepted or running": live.get(f"/jobs/{job_id}").json()}
    seen["successful"] = live.wait_status(job_id)
    for path in ("/", "/conformance", "/processes", "/processes?limit=1", "/processes/echo", "/jobs",
                 f"/jobs/{job_id}/results", f"/jobs/{job_id}/results?f=json"):
        seen[path] = live.get(path).json()
    seen["sync document"] = run(live, {"inputs": {"message": "audit"}}).json()
    assert {name: nulls_in(doc) for name, doc in seen.items() if nulls_in(doc)} == {}
