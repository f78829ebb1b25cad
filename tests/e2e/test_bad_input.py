"""A catalogue of bad input over HTTP. Each request is refused with a 4xx OGC exception ({type, title, status,
detail}) whose detail says what was wrong and where (the field, input or parameter), and leaves nothing behind: the
number of documents under the test's index prefix (jobs and processes) and the job folders in the data dir are the
same before and after.

The catalogue server runs with limits lower than the defaults (body, labels, label length, page size), so each case
also shows that the setting, not a constant, decides. The limits that need a user or time (jobs per user, run-time
per job) have tests of their own below, on a server with bearer tokens.
"""

from __future__ import annotations

import http.client
import json
import subprocess
import sys
import uuid
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import requests
import yaml

from ades.config import DEFAULT_RUNNING_JOBS_PER_USER, DEFAULT_SYNC_EXECUTES_PER_USER, Settings
from ades.jobs.folder import DataDir
from ades.store import make_client
from tests.e2e.conftest import LiveServer, drop_test_indexes, serve_app
from tests.e2e.fuzz_harness import COUNT_LINES
from tests.helpers import EXAMPLES, OGC, OGC2, assert_problem, journaled_jobs, wait_for

pytestmark = pytest.mark.integration

ASYNC = {"Prefer": "respond-async"}
BODY_LIMIT = 256 * 1024
LIMITS = {"max_body_bytes": BODY_LIMIT, "max_labels": 20, "max_label_length": 64, "max_page_limit": 50}
BROKEN_YAML = "cwlVersion: v1.2\nclass: CommandLineTool\nid: broken\n  inputs: {x: [\n"
NOT_CWL = ("cwlVersion: v1.2\nclass: CommandLineTool\nid: not-cwl\nbaseCommand: echo\n"
           "inputs:\n  x:\n    type: strin\noutputs: {}\n")


@dataclass
class World:
    """What the catalogue's requests refer to: the server, a finished job, processes with int and File inputs."""

    server: LiveServer
    done_job: str
    inside_file: Path


@pytest.fixture(scope="module")
def world(e2e_settings: Settings, tmp_path_factory: pytest.TempPathFactory) -> Iterator[World]:
    roots = tmp_path_factory.mktemp("inputs")
    inside = roots / "three-lines.txt"
    inside.write_text("a\nb\nc\n")
    settings = e2e_settings.model_copy(update={**LIMITS, "index_prefix": f"e2e-bad-{uuid.uuid4().hex[:8]}-",
                                               "data_dir": tmp_path_factory.mktemp("bad") / "data"})
    for server in serve_app(settings, file_roots=[roots], workers=1):
        for cwl in ((EXAMPLES / "sleep" / "sleep.cwl").read_text(), COUNT_LINES):
            deployed = server.post("/processes", data=cwl, headers={"Content-Type": "application/cwl+yaml"})
            assert deployed.status_code == 201, deployed.text
        done = server.post("/processes/echo/execution", json={"inputs": {"message": "done"}}, headers=ASYNC)
        assert done.status_code == 201, done.text
        job_id = done.json()["jobID"]
        assert server.wait_status(job_id)["status"] == "successful"
        yield World(server, job_id, inside)


def snapshot(server: LiveServer) -> tuple[int, list[str]]:
    """(documents under the server's index prefix, job folders in its data dir)."""
    es = server.context.job_store.client
    pattern = f"{server.settings.index_prefix}*,-{server.settings.hosts_alias}*"  # a node's lease is no request's
    es.indices.refresh(index=pattern)
    docs = int(es.count(index=pattern)["count"])
    return docs, [folder.job_id for folder in DataDir(server.settings.data_dir).folders()]


def execute(body: Any, ref: str = "echo", **headers: str) -> Callable[[World], requests.Response]:
    def send(w: World) -> requests.Response:
        data = body if isinstance(body, bytes) else json.dumps(body).encode()
        return w.server.post(f"/processes/{ref}/execution", data=data,
                             headers={"Content-Type": "application/json", **ASYNC, **headers})
    return send


def deploy(body: str | bytes, media: str) -> Callable[[World], requests.Response]:
    return lambda w: w.server.post("/processes", data=body, headers={"Content-Type": media})


def get(path: str) -> Callable[[World], requests.Response]:
    return lambda w: w.server.get(path.replace("{done}", w.done_job))


def raw_get(path: str) -> Callable[[World], requests.Response]:
    """GET with the path sent byte for byte (requests would remove `..` segments before sending)."""
    def send(w: World) -> requests.Response:
        host, port = w.server.url.removeprefix("http://").split(":")
        conn = http.client.HTTPConnection(host, int(port), timeout=30)
        conn.request("GET", path.replace("{done}", w.done_job))
        answer = conn.getresponse()
        response = requests.Response()
        response.status_code, response._content = answer.status, answer.read()
        conn.close()
        return response
    return send


def chunked(head: bytes, filler: bytes, tail: bytes, size: int, path: str = "/processes/echo/execution",
            media: str = "application/json") -> Callable[[World], requests.Response]:
    """A body without Content-Length (chunked): the limit must hold while reading, not only on the header."""
    def parts() -> Iterator[bytes]:
        yield head
        for _ in range(size // 65536):
            yield filler * (65536 // len(filler))
        yield tail
    return lambda w: w.server.post(path, data=parts(), headers={"Content-Type": media, **ASYNC})


@dataclass(frozen=True)
class Bad:
    name: str
    send: Callable[[World], requests.Response]
    status: int
    kind: str
    says: tuple[str, ...]
    """Substrings of the detail: what was wrong, and where."""


CATALOGUE = [
    # --- point 2 of issue 9 ---------------------------------------------------------------------------------------
    Bad("malformed JSON", execute(b'{"inputs": {"message": "x"'), 400, "invalid-parameter",
        ("body", "not valid JSON", "line 1 column")),
    Bad("JSON that is not an object", execute(b"[1, 2]"), 400, "invalid-parameter", ("body", "JSON object")),
    Bad("NaN is not JSON", execute(b'{"inputs": {"message": NaN}}'), 400, "invalid-parameter", ("body", "NaN")),
    Bad("body nested too deep", execute(b'{"inputs": {"message": ' + b"[" * 5000 + b"]" * 5000 + b"}}"), 400,
        "invalid-parameter", ("body", "nested deeper than 32")),
    Bad("wrong content type (execute)", execute(b"{}", **{"Content-Type": "text/plain"}), 415,
        "unsupported-media-type", ("Content-Type", "text/plain", "application/json")),
    Bad("wrong content type (deploy)", deploy(COUNT_LINES, "application/xml"), 415, OGC2 + "unsupported-media-type",
        ("Content-Type", "application/xml", "application/cwl+yaml")),
    Bad("huge body (Content-Length)", execute({"inputs": {"message": "x" * (BODY_LIMIT + 1)}}), 413,
        "payload-too-large", ("body", f"{BODY_LIMIT} bytes", "ADES_MAX_BODY_BYTES")),
    Bad("huge body (chunked)", chunked(b'{"inputs": {"message": "', b"x", b'"}}', 2 * BODY_LIMIT), 413,
        "payload-too-large", ("body", f"{BODY_LIMIT} bytes")),
    # cut at the limit, this one would be a valid package: it must not deploy
    Bad("huge package (chunked)", chunked(COUNT_LINES.replace("count-lines", "cut-short").encode(), b"#\n", b"",
                                          2 * BODY_LIMIT, "/processes", "application/cwl+yaml"), 413,
        "payload-too-large", ("body", "ADES_MAX_BODY_BYTES")),
    Bad("huge package", deploy(COUNT_LINES + "#" * BODY_LIMIT, "application/cwl+yaml"), 413, "payload-too-large",
        ("body", "ADES_MAX_BODY_BYTES")),
    Bad("unknown process", execute({"inputs": {}}, ref="no-such-process"), 404, "no-such-process",
        ("processId", "'no-such-process'")),
    Bad("unknown version", execute({"inputs": {"message": "x"}}, ref="echo:9.9.9"), 404, "no-such-process",
        ("processId", "'echo'", "'9.9.9'", "1.0.0")),
    Bad("process id that is not an id", execute({"inputs": {}}, ref="x" * 600), 404, "no-such-process",
        ("processId", "xxx", "1-128")),
    Bad("input of the wrong type", execute({"inputs": {"seconds": "soon"}}, ref="sleep"), 400, "invalid-input",
        ("'seconds'", "integer", "'soon'")),
    Bad("unknown input", execute({"inputs": {"message": "x", "colour": "red"}}), 400, "invalid-input",
        ("'colour'", "unknown input", "'message'")),
    Bad("missing required input", execute({"inputs": {}}), 400, "invalid-input",
        ("missing required input", "'message'")),
    Bad("inputs not an object", execute({"inputs": ["message", "x"]}), 400, "invalid-parameter", ("inputs",)),
    Bad("labels not an array", execute({"inputs": {"message": "x"}, "labels": "demo"}), 400, "invalid-parameter",
        ("labels", "must be an array of strings", "a string")),
    Bad("labels not strings", execute({"inputs": {"message": "x"}, "labels": ["ok", 7]}), 400, "invalid-parameter",
        ("labels", "item 1", "a number")),
    Bad("empty label", execute({"inputs": {"message": "x"}, "labels": ["ok", " "]}), 400, "invalid-parameter",
        ("labels", "item 1", "empty")),
    Bad("10,000 labels", execute({"inputs": {"message": "x"}, "labels": [f"l{i}" for i in range(10_000)]}), 400,
        "invalid-parameter", ("labels", "10000 labels", "at most 20", "ADES_MAX_LABELS")),
    Bad("WPS-T labels not strings", lambda w: w.server.post("/processes/echo/jobs", json={
        "inputs": [{"id": "message", "data": "x"}], "labels": [{"a": 1}]}), 400, "invalid-parameter",
        ("labels", "item 0", "an object")),
    Bad("CWL with syntax errors", deploy(BROKEN_YAML, "application/cwl+yaml"), 400, "invalid-package",
        ("not valid YAML", "line 4")),
    Bad("CWL JSON with syntax errors", deploy('{"cwlVersion": "v1.2",', "application/cwl+json"), 400,
        "invalid-package", ("not valid JSON", "line 1")),
    Bad("valid YAML, invalid CWL", deploy(NOT_CWL, "application/cwl+yaml"), 400, "invalid-package",
        ("cwltool rejected the CWL", "package.cwl:7", "strin")),
    Bad("CWL inputs not a map or list", deploy(NOT_CWL.replace("inputs:\n  x:\n    type: strin\n", "inputs: 3\n"),
                                               "application/cwl+yaml"), 400, "invalid-package",
        ("not-cwl.inputs", "map or a list")),
    Bad("CWL nested too deep", deploy("cwlVersion: v1.2\nhints: " + "[" * 3000, "application/cwl+yaml"), 400,
        "invalid-package", ("nested deeper than 64",)),
    Bad("input href outside the allowed roots", execute({"inputs": {"data": {"href": "file:///etc/passwd"}}},
                                                         ref="count-lines"), 400, "invalid-input",
        ("'data'", "file:///etc/passwd", "outside")),
    Bad("input href with ..", lambda w: execute({"inputs": {"data": {
        "href": f"file://{w.inside_file.parent}/../{w.inside_file.parent.name}/{w.inside_file.name}"}}},
        ref="count-lines")(w), 400, "invalid-input", ("'data'", "'..'")),
    Bad("package href outside the allowed roots", deploy(json.dumps({"executionUnit": {
        "href": "file:///etc/passwd"}}), "application/ogcapppkg+json"), 400, "invalid-package",
        ("executionUnit href", "file:///etc/passwd", "outside")),
    Bad("result path with .. (encoded)", get("/jobs/{done}/files/%2E%2E/job.log"), 404, "no-such-file",
        ("'../job.log'",)),
    Bad("result path with .. (raw)", raw_get("/jobs/{done}/files/../../../../../../etc/passwd"), 404,
        "no-such-file", ("'../../../../../../etc/passwd'",)),
    Bad("result path with a NUL byte", get("/jobs/{done}/files/out%00.txt"), 404, "no-such-file", ("out\\x00",)),
    Bad("output name ..", get("/jobs/{done}/results/%2E%2E"), 404, "no-such-output", ("output '..'",)),
    Bad("job id that is not an id (long)", get("/jobs/" + "j" * 600), 404, "no-such-job", ("jobId", "1-128")),
    Bad("job id that is not an id (..)", get("/jobs/%2E%2E"), 404, "no-such-job", ("jobId", "'..'")),
    Bad("job id that is not an id (dismiss)", lambda w: w.server.delete("/jobs/a%20b"), 404, "no-such-job",
        ("jobId", "'a b'")),
    Bad("dependsOn that is not a job id", execute({"inputs": {"message": "x"}, "dependsOn": ["../etc"]}), 400,
        "invalid-parameter", ("dependsOn", "job ids")),
    Bad("jobs filter: label longer than any label", get("/jobs?labels=" + "l" * 40_000), 400, "invalid-parameter",
        ("labels", "at most 64")),
    Bad("jobs filter: processID that is no id", get("/jobs?processID=" + "p" * 40_000), 400, "invalid-parameter",
        ("processID",)),
    Bad("jobs filter: a paging cursor not ours", get("/jobs?after=W10"), 400, "invalid-parameter", ("after",)),
    Bad("jobs filter: NaN duration", get("/jobs?minDuration=nan"), 400, "invalid-parameter", ("minDuration", "nan")),
    # --- point 3: limits that a single request can exceed ---------------------------------------------------------
    Bad("label too long", execute({"inputs": {"message": "x"}, "labels": ["l" * 65]}), 400, "invalid-parameter",
        ("labels", "item 0", "65 characters", "at most 64", "ADES_MAX_LABEL_LENGTH")),
    Bad("more jobs per page than allowed", get("/jobs?limit=51"), 400, "invalid-parameter",
        ("limit", "between 1 and 50", "51")),
]


@pytest.mark.parametrize("case", CATALOGUE, ids=[c.name for c in CATALOGUE])
def test_bad_input_is_refused_and_leaves_nothing(world: World, case: Bad) -> None:
    before = snapshot(world.server)
    response = case.send(world)
    body = assert_problem(response, case.status, case.kind)
    assert set(body) >= {"type", "title", "status", "detail"}
    for text in case.says:
        assert text in body["detail"], (text, body["detail"])
    assert snapshot(world.server) == before


def test_the_catalogue_server_still_works(world: World) -> None:
    """The refusals above were refusals of bad input, not of everything: good requests at the limits pass."""
    ok = execute({"inputs": {"message": "x"}, "labels": [f"l{i}" for i in range(19)] + ["l" * 64]})(world)
    assert ok.status_code == 201, ok.text
    counted = execute({"inputs": {"data": {"href": world.inside_file.as_uri()}}}, ref="count-lines")(world)
    assert counted.status_code == 201, counted.text
    assert world.server.wait_status(counted.json()["jobID"])["status"] == "successful"
    page = world.server.get("/jobs?limit=50")
    assert page.status_code == 200 and page.json()["numberReturned"] >= 3


def test_openapi_tells_the_configured_limits(world: World) -> None:
    document = world.server.get("/openapi").json()
    for body in ("execute", "executeWpst"):
        labels = document["components"]["schemas"][body]["properties"]["labels"]
        assert (labels["maxItems"], labels["items"]["maxLength"]) == (20, 64)
    limit = next(p for p in document["paths"]["/jobs"]["get"]["parameters"] if p["name"] == "limit")
    assert limit["schema"]["maximum"] == 50
    for path in ("/processes/{processId}/execution", "/processes/{processId}/jobs"):
        assert {"413", "415", "429"} <= set(document["paths"][path]["post"]["responses"])


def test_readme_tells_the_limits() -> None:
    readme = (Path(__file__).resolve().parents[2] / "README.md").read_text()
    for name in ("max_body_bytes", "max_labels", "max_label_length", "max_page_limit", "min_free_disk_bytes"):
        assert f"| `ADES_{name.upper()}` | `{Settings.model_fields[name].default}` |" in readme, name
    for name, default in (("max_running_jobs_per_user", DEFAULT_RUNNING_JOBS_PER_USER),
                          ("max_sync_executes_per_user", DEFAULT_SYNC_EXECUTES_PER_USER)):
        assert f"| `ADES_{name.upper()}` | `{default}` with auth, else `0` |" in readme, name


def test_defaults_are_sane() -> None:
    defaults = Settings.model_construct()
    assert defaults.max_body_bytes == 10 * 1024 * 1024
    assert (defaults.max_labels, defaults.max_label_length, defaults.max_page_limit) == (100, 256, 1000)
    assert defaults.running_jobs_cap == 0 and defaults.sync_executes_cap == 0 and defaults.job_timeout == 86_400.0
    assert defaults.min_free_disk_bytes == 1024**3


# --- limits per user and per job, on a server with bearer tokens -------------------------------------------------
TOKENS = {"alice-token": {"user": "alice"}, "bob-token": {"user": "bob"},
          "admin-token": {"user": "root", "roles": ["admin"]}}
ALICE, BOB, ADMIN = ({"Authorization": f"Bearer {t}"} for t in TOKENS)


@pytest.fixture(scope="module")
def limited(e2e_settings: Settings, tmp_path_factory: pytest.TempPathFactory) -> Iterator[LiveServer]:
    tokens = tmp_path_factory.mktemp("tokens") / "tokens.yaml"
    tokens.write_text(yaml.safe_dump(TOKENS), encoding="utf-8")
    settings = e2e_settings.model_copy(update={
        "index_prefix": f"e2e-limits-{uuid.uuid4().hex[:8]}-", "auth_tokens_file": tokens,
        "data_dir": tmp_path_factory.mktemp("limits") / "data",
        "max_running_jobs_per_user": 2, "job_timeout": 4.0})
    for server in serve_app(settings, workers=1):
        deployed = server.post("/processes", data=(EXAMPLES / "sleep" / "sleep.cwl").read_text(),
                               headers={"Content-Type": "application/cwl+yaml", **ADMIN})
        assert deployed.status_code == 201, deployed.text
        yield server


def _delayed(server: LiveServer, headers: dict[str, str]) -> requests.Response:
    # a delayed job stays `submitted` (unfinished) without running anything
    return server.post("/processes/echo/execution", json={"inputs": {"message": "later"}, "delay": 600},
                       headers={**headers, **ASYNC})


def test_running_jobs_per_user_cap(limited: LiveServer) -> None:
    first = [_delayed(limited, ALICE) for _ in range(2)]
    assert [r.status_code for r in first] == [201, 201], [r.text for r in first]
    before = snapshot(limited)
    refused = _delayed(limited, ALICE)
    body = assert_problem(refused, 429, "too-many-jobs")
    assert refused.headers["Retry-After"] == "5"
    for text in ("'alice'", "2 unfinished", "limit is 2", "ADES_MAX_RUNNING_JOBS_PER_USER", "nothing was submitted"):
        assert text in body["detail"], body["detail"]
    wpst = limited.post("/processes/echo/jobs", json={"inputs": [{"id": "message", "data": "x"}], "delay": 600},
                        headers=ALICE)
    assert_problem(wpst, 429, "too-many-jobs")
    assert snapshot(limited) == before
    # per user: bob is not held back by alice's jobs
    assert _delayed(limited, BOB).status_code == 201
    # a finished job frees its place (seen at the next count, at most a second later)
    dismissed = limited.delete(f"/jobs/{first[0].json()['jobID']}", headers=ALICE)
    assert dismissed.status_code == 200 and dismissed.json()["status"] == "dismissed"
    wait_for(lambda: _delayed(limited, ALICE).status_code == 201, 1.1, "alice's place to be given back", 0.1)


def test_run_time_per_job(limited: LiveServer) -> None:
    """ADES_JOB_TIMEOUT over HTTP: a job past it is killed and failed, with the reason in its status."""
    started = limited.post("/processes/sleep/execution", json={"inputs": {"seconds": 120}},
                           headers={**BOB, **ASYNC})
    assert started.status_code == 201, started.text
    job_id = started.json()["jobID"]
    info = limited.wait_status(job_id, ("failed", "successful"), timeout=60, headers=BOB)
    assert info["status"] == "failed"
    assert "ran longer than its limit of 4 s (ADES_JOB_TIMEOUT)" in info["message"], info["message"]


def test_under_gunicorn_the_cap_holds_and_refusals_are_ogc(e2e_settings: Settings) -> None:
    """16 submissions at once through 2 gunicorn worker processes, cap 3: exactly 3 jobs, 13 refusals. What gunicorn
    refuses itself, before the app (a header with a control character, a request line too long), is an OGC exception
    too, and the body limit holds for chunked bodies as for others."""
    from tests.conftest import free_port

    port = free_port()
    settings = e2e_settings.model_copy(update={
        "index_prefix": f"e2e-race-{uuid.uuid4().hex[:8]}-", "max_running_jobs_per_user": 3, "max_body_bytes": 65536,
        "data_dir": Path(e2e_settings.data_dir).parent / f"race-{port}"})
    code = ("import sys; from ades.config import Settings; from ades.serve import serve; "
            f"serve(Settings.model_validate_json(sys.argv[1]), '127.0.0.1', {port}, workers=2, job_workers=1)")
    proc = subprocess.Popen([sys.executable, "-c", code, settings.model_dump_json()],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    url = f"http://127.0.0.1:{port}"
    try:
        def up() -> bool:
            assert proc.poll() is None, "gunicorn exited"
            try:
                return requests.get(f"{url}/processes/echo", timeout=30).status_code == 200
            except requests.ConnectionError:
                return False

        wait_for(up, 90, "gunicorn to come up", interval=0.2)

        def submit(i: int) -> int:
            return requests.post(f"{url}/processes/echo/execution", headers=ASYNC, timeout=60,
                                 json={"inputs": {"message": f"race {i}"}, "delay": 600}).status_code

        with ThreadPoolExecutor(16) as pool:
            codes = sorted(pool.map(submit, range(16)))
        assert codes == [201] * 3 + [429] * 13, codes
        es = make_client(settings)
        es.indices.refresh(index=settings.jobs_alias)
        assert es.count(index=settings.jobs_alias)["count"] == 3
        es.close()
        assert journaled_jobs(settings.data_dir) == 3  # the refused ones were never journaled

        for path, headers, status in (("/jobs", {"Authorization": "Bearer a\x0fb"}, 400),
                                      ("/jobs?labels=" + "l" * 5000, {}, 414)):
            conn = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
            conn.putrequest("GET", path)
            for name, value in headers.items():
                conn.putheader(name, value.encode("latin1"))  # http.client refuses to send it otherwise
            conn.endheaders()
            answer = conn.getresponse()
            assert answer.status == status and answer.getheader("Content-Type") == "application/json"
            body = json.loads(answer.read())
            assert body["status"] == status and body["type"].startswith(OGC) and body["detail"], body
            conn.close()

        # the body limit under gunicorn too, chunked (gunicorn de-chunks, werkzeug would cut it short) or not
        def parts() -> Iterator[bytes]:
            yield b'{"inputs": {"message": "'
            yield b"x" * 131072
            yield b'"}}'

        for data in (parts(), b'{"inputs": {"message": "' + b"x" * 131072 + b'"}}'):
            answer = requests.post(f"{url}/processes/echo/execution", data=data, timeout=60,
                                   headers={"Content-Type": "application/json", **ASYNC})
            assert_problem(answer, 413, "payload-too-large")
    finally:
        proc.terminate()
        proc.wait(30)
        drop_test_indexes(settings)
