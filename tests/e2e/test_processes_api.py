"""Part 2 over HTTP: deploy (CWL YAML, CWL JSON, OGC application package), conflicts, media types, invalid CWL,
the immutable built-in echo, describe and package."""

from __future__ import annotations

import json
import time

import pytest
import yaml

from tests.e2e.conftest import LiveServer
from tests.helpers import EXAMPLES, OGC2, assert_problem

pytestmark = pytest.mark.integration

TWO_STEP = (EXAMPLES / "two-step" / "two-step.cwl").read_text()

def deploy(live: LiveServer, body: str | bytes, media: str):
    started = time.perf_counter()
    response = live.post("/processes", data=body, headers={"Content-Type": media})
    return response, (time.perf_counter() - started) * 1000


@pytest.mark.parametrize("form", ["yaml", "cwl", "json", "ogcapppkg"])
def test_deploy_forms_then_conflict_then_undeploy(live: LiveServer, form: str) -> None:
    if form == "yaml":
        body, media = TWO_STEP, "application/cwl+yaml"
    elif form == "cwl":
        body, media = TWO_STEP, "application/cwl"
    elif form == "json":
        body, media = json.dumps(yaml.safe_load(TWO_STEP)), "application/cwl+json"
    else:
        body = json.dumps({"processDescription": {"id": "two-step"},
                           "executionUnit": {"value": TWO_STEP, "mediaType": "application/cwl+yaml"}})
        media = "application/ogcapppkg+json"
    response, ms = deploy(live, body, media)
    assert response.status_code == 201, response.text
    print(f"deploy two-step as {form}: {ms:.0f} ms")
    assert response.headers["Location"] == f"{live.url}/processes/two-step"
    summary = response.json()["processSummary"]
    assert summary["id"] == "two-step" and summary["version"] == "1.2.0" and summary["mutable"] is True

    again, _ = deploy(live, body, media)
    assert_problem(again, 409, OGC2 + "duplicated-process")

    description = live.get("/processes/two-step:1.2.0").json()
    assert description["inputs"]["message"]["schema"] == {"type": "string"}
    assert "shouted" in description["outputs"]
    assert live.get("/processes/two-step").json()["version"] == "1.2.0"
    package = live.get("/processes/two-step/package")
    assert package.status_code == 200 and "$graph" in package.json()

    listed = {p["id"]: p for p in live.get("/processes").json()["processes"]}
    assert listed["two-step"]["mutable"] is True and listed["echo"]["mutable"] is False
    assert all(isinstance(p["mutable"], bool) for p in listed.values())
    pages, url = [], "/processes?limit=1"
    while url:  # one process a page, following the next links, gives every process once, by id
        page = live.get(url.replace(live.url, "")).json()
        pages.append([p["id"] for p in page["processes"]])
        url = next((link["href"] for link in page["links"] if link["rel"] == "next"), None)
    assert all(len(ids) == 1 for ids in pages) and [i for ids in pages for i in ids] == sorted(listed)
    assert_problem(live.get("/processes?limit=0"), 400, "invalid-parameter")
    assert_problem(live.get("/processes?offset=1.5"), 400, "invalid-parameter")

    assert live.delete("/processes/two-step").status_code == 204
    assert_problem(live.get("/processes/two-step"), 404, "no-such-process")


def test_replace_with_put(live: LiveServer) -> None:
    assert deploy(live, TWO_STEP, "application/cwl+yaml")[0].status_code == 201
    changed = TWO_STEP.replace("label: Shout", "label: Shout louder")
    response = live.put("/processes/two-step", data=changed, headers={"Content-Type": "application/cwl+yaml"})
    assert response.status_code == 204, response.text
    assert live.get("/processes/two-step").json()["title"] == "Shout louder"
    wrong = live.put("/processes/two-step", data=(EXAMPLES / "sleep" / "sleep.cwl").read_text(),
                     headers={"Content-Type": "application/cwl+yaml"})
    assert_problem(wrong, 400, "invalid-package")
    assert live.delete("/processes/two-step:1.2.0").status_code == 204
    assert_problem(live.put("/processes/two-step", data=TWO_STEP, headers={"Content-Type": "application/cwl"}),
                   404, "no-such-process")


def test_unsupported_media_type(live: LiveServer) -> None:
    assert_problem(deploy(live, TWO_STEP, "text/plain")[0], 415, OGC2 + "unsupported-media-type")
    assert_problem(deploy(live, TWO_STEP, "application/json")[0], 415, OGC2 + "unsupported-media-type")


def test_invalid_cwl_gets_cwltools_message(live: LiveServer) -> None:
    broken = TWO_STEP.replace("source: File", "source: Fiel")
    body = assert_problem(deploy(live, broken, "application/cwl+yaml")[0], 400, "invalid-package")
    assert "cwltool rejected the CWL" in body["detail"]
    assert "Fiel" in body["detail"]
    assert_problem(live.get("/processes/two-step"), 404, "no-such-process")


def test_echo_is_builtin_and_immutable(live: LiveServer) -> None:
    echo = live.get("/processes/echo").json()
    assert echo["mutable"] is False and echo["inputs"]["message"]["schema"]["type"] == "string"
    text = (EXAMPLES / "echo.cwl").read_text()
    assert_problem(live.put("/processes/echo", data=text, headers={"Content-Type": "application/cwl"}),
                   403, OGC2 + "immutable-process")
    assert_problem(live.delete("/processes/echo"), 403, OGC2 + "immutable-process")
    assert_problem(deploy(live, text.replace("1.0.0", "2.0.0"), "application/cwl")[0], 403, OGC2 + "immutable-process")
    assert live.get("/processes/echo").status_code == 200
