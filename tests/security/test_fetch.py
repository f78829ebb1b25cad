"""What leaves the host on a user's or a deployer's behalf (ades.fetch), tried as an attacker would against a real
server: local files through inputs of any type, http(s) inputs that point at the server's own network (the job
store on 127.0.0.1:9200, cloud metadata), redirects, oversized and endless downloads, `executionUnit.href` and
`$include`/`$import` at deploy, and a package's own defaults.

"The internet" is an HTTP server on 127.0.0.1 that records every request it gets. Loopback is refused by default,
so the ades server allows that one test server by the name `localhost` (ADES_FETCH_ALLOW=["localhost"]): the same
server by its address, 127.0.0.1, is not allowed, and shows what an unlisted internal address gets.
"""

from __future__ import annotations

import http.server
import json
import tempfile
import threading
import urllib.parse
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from ades.config import Settings
from ades.jobs.folder import DataDir, JobFolder
from tests.e2e.conftest import LiveServer, serve_app
from tests.helpers import assert_problem

pytestmark = pytest.mark.integration

ASYNC = {"Prefer": "respond-async"}
MAX_BYTES = 64 * 1024
TAKE_ANY = """\
cwlVersion: v1.2
class: CommandLineTool
id: take-any
baseCommand: cat
arguments: [$(inputs.thing.path)]
inputs:
  thing: Any
outputs:
  out: stdout
"""
TAKE_FILE = """\
cwlVersion: v1.2
class: CommandLineTool
id: take-file
baseCommand: cat
inputs:
  file: {type: File, inputBinding: {position: 1}}
outputs:
  out: stdout
"""
WITH_DEFAULT = """\
cwlVersion: v1.2
class: CommandLineTool
id: with-default-{name}
baseCommand: cat
inputs:
  file:
    type: File
    default: {{class: File, location: "{location}"}}
    inputBinding: {{position: 1}}
outputs:
  out: stdout
"""


@dataclass
class Internet:
    """An HTTP server on 127.0.0.1 playing the internet: what it serves, and every path it was asked for."""

    port: int
    secret: str
    asked: list[str] = field(default_factory=list)
    release: threading.Event = field(default_factory=threading.Event)

    def url(self, path: str, host: str = "localhost") -> str:
        return f"http://{host}:{self.port}{path}"


def _handler(internet: Internet, files: dict[str, bytes]) -> type[http.server.BaseHTTPRequestHandler]:
    class Handler(http.server.BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            internet.asked.append(self.path)
            path, _, query = self.path.partition("?")
            if path == "/redirect":
                self.send_response(302)
                self.send_header("Location", urllib.parse.parse_qs(query)["to"][0])
                self.end_headers()
                return
            if path == "/stall":  # headers, then nothing until the test lets go
                self.send_response(200)
                self.send_header("Content-Length", "10")
                self.end_headers()
                self.wfile.flush()
                internet.release.wait(60)
                return
            body = files.get(path)
            if body is None:
                self.send_error(404)
                return
            self.send_response(200)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args: Any) -> None:
            pass

    return Handler


@pytest.fixture(scope="module")
def internet() -> Iterator[Internet]:
    secret = f"secret-{uuid.uuid4().hex}"
    files = {"/secret.txt": secret.encode(), "/big": b"x" * (MAX_BYTES + 1),
             "/hello.cwl": TAKE_FILE.replace("take-file", "from-href").encode(),
             "/doc.txt": f"included {secret}".encode()}
    inet = Internet(0, secret)
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _handler(inet, files))
    inet.port = server.server_address[1]
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        yield inet
    finally:
        inet.release.set()
        server.shutdown()


@pytest.fixture(scope="module")
def inputs_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("inputs")
    (root / "inside.txt").write_text("inside the roots\n")
    (root / "folder").mkdir()
    return root


@pytest.fixture(scope="module")
def secret_file(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A file of the server's user outside the input roots (a tokens file, say). Readable by others, as such a
    file often is: what stops a job from reading it must be ades, not the file's mode."""
    path = tmp_path_factory.mktemp("server-home") / "tokens.yaml"
    path.write_text(f"token-{uuid.uuid4().hex}: {{user: alice, roles: [deployer]}}\n")
    path.chmod(0o644)
    return path


@pytest.fixture(scope="module")
def server(es_url: str, tmp_path_factory: pytest.TempPathFactory, inputs_dir: Path,
           internet: Internet) -> Iterator[LiveServer]:
    settings = Settings(es_url=es_url, index_prefix=f"sec-fetch-{uuid.uuid4().hex[:8]}-",
                        data_dir=tmp_path_factory.mktemp("fetch") / "data", event_sink="direct",
                        fetch_allow=["localhost"], fetch_max_bytes=MAX_BYTES, fetch_timeout=3)
    for live in serve_app(settings, file_roots=[inputs_dir], workers=1):
        for cwl in (TAKE_ANY, TAKE_FILE):
            deployed = live.post("/processes", data=cwl, headers={"Content-Type": "application/cwl+yaml"})
            assert deployed.status_code == 201, deployed.text
        yield live


def snapshot(server: LiveServer) -> tuple[int, list[str]]:
    """(documents under the server's index prefix, job folders in its data dir)."""
    es = server.context.job_store.client
    pattern = f"{server.settings.index_prefix}*,-{server.settings.hosts_alias}*"  # a node's lease is no request's
    es.indices.refresh(index=pattern)
    return int(es.count(index=pattern)["count"]), [f.job_id for f in DataDir(server.settings.data_dir).folders()]


def execute(server: LiveServer, process: str, inputs: dict[str, Any]) -> Any:
    return server.post(f"/processes/{process}/execution", json={"inputs": inputs}, headers=ASYNC)


def refused(server: LiveServer, process: str, inputs: dict[str, Any], status: int = 400) -> str:
    """The detail of the refusal of an execute request, having checked it wrote nothing."""
    before = snapshot(server)
    answer = execute(server, process, inputs)
    if answer.status_code == 201:  # what an unguarded server does: say what the job then got
        pytest.fail(f"accepted: {_outcome(server, answer.json()['jobID'])}")
    body = assert_problem(answer, status, "invalid-input")
    assert snapshot(server) == before
    return body["detail"]


def _outcome(server: LiveServer, job_id: str) -> str:
    try:
        info = server.wait_status(job_id, timeout=15)
    except AssertionError:
        return "the job did not end within 15 s"
    out = server.get(f"/jobs/{job_id}/results/out").text if info["status"] == "successful" else ""
    return f"the job ended {info['status']} ({info.get('message')}), its output: {out[:200]!r}"


def run(server: LiveServer, process: str, inputs: dict[str, Any]) -> tuple[str, dict[str, Any]]:
    """(job id, its final statusInfo) of an accepted execute request."""
    answer = execute(server, process, inputs)
    assert answer.status_code == 201, answer.text
    job_id = answer.json()["jobID"]
    return job_id, server.wait_status(job_id, timeout=30)


# --- file:// anywhere in the inputs ----------------------------------------------------------------------------
def test_a_local_file_through_an_any_input_is_refused(server: LiveServer, secret_file: Path) -> None:
    detail = refused(server, "take-any", {"thing": {"class": "File", "location": secret_file.as_uri()}})
    assert "'thing'" in detail and "outside the directories" in detail, detail


def _shapes(secret: str, inside: str, folder: str) -> dict[str, Any]:
    file = {"class": "File", "location": secret}
    return {
        "path instead of location": {"class": "File", "path": secret.removeprefix("file://")},
        "a Directory": {"class": "Directory", "location": secret.rsplit("/", 1)[0]},
        "in an array": ["a", {"deeper": [file]}],
        "in a record": {"meta": {"source": file}},
        "a secondaryFile": {"class": "File", "location": inside, "secondaryFiles": [file]},
        "a listing": {"class": "Directory", "location": folder, "listing": [file]},
        "a literal Directory's listing": {"class": "Directory", "basename": "d", "listing": [file]},
    }


@pytest.mark.parametrize("shape", list(_shapes("file:///x", "", "")))
def test_every_file_and_directory_anywhere_in_the_inputs_is_checked(server: LiveServer, secret_file: Path,
                                                                   inputs_dir: Path, shape: str) -> None:
    value = _shapes(secret_file.as_uri(), (inputs_dir / "inside.txt").as_uri(),
                    (inputs_dir / "folder").as_uri())[shape]
    detail = refused(server, "take-any", {"thing": value})
    assert "'thing'" in detail and "outside the directories" in detail, detail


def test_a_file_inside_the_input_roots_still_works(server: LiveServer, inputs_dir: Path) -> None:
    inside = {"class": "File", "location": (inputs_dir / "inside.txt").as_uri()}
    job_id, info = run(server, "take-any", {"thing": inside})
    assert info["status"] == "successful", server.get(f"/jobs/{job_id}/logs").text[-2000:]
    assert server.get(f"/jobs/{job_id}/results/out").text == "inside the roots\n"


# --- http(s) inputs: SSRF ----------------------------------------------------------------------------------------
def _internal(server: LiveServer, internet: Internet) -> dict[str, str]:
    es = server.settings.elasticsearch_url.rstrip("/")
    return {
        "the job store": f"{es}/{server.settings.index_prefix}jobs/_search?q=user-id:bob",
        "loopback, not allowed": internet.url("/secret.txt", "127.0.0.1"),
        "IPv6 loopback": f"http://[::1]:{internet.port}/secret.txt",
        "cloud metadata": "http://169.254.169.254/latest/meta-data/iam/security-credentials/",
        "cloud metadata, IPv6": "http://[fd00:ec2::254]/latest/meta-data/",
        "a private network": "http://10.0.0.1/",
        "the unspecified address": f"http://0.0.0.0:{internet.port}/secret.txt",
        "IPv4 mapped in IPv6": f"http://[::ffff:127.0.0.1]:{internet.port}/secret.txt",
    }


@pytest.mark.parametrize("target", ["the job store", "loopback, not allowed", "IPv6 loopback", "cloud metadata",
                                    "cloud metadata, IPv6", "a private network", "the unspecified address",
                                    "IPv4 mapped in IPv6"])
def test_http_inputs_to_internal_addresses_are_refused(server: LiveServer, internet: Internet, target: str) -> None:
    url = _internal(server, internet)[target]
    asked = len(internet.asked)
    detail = refused(server, "take-file", {"file": {"href": url}})
    assert "'file'" in detail and "ADES_FETCH_ALLOW" in detail, detail
    assert internet.asked[asked:] == []


def test_an_allowed_http_input_is_fetched_into_the_job_folder_and_gone_with_it(server: LiveServer,
                                                                                internet: Internet) -> None:
    leftovers = _temp_files_holding(internet.secret)
    job_id, info = run(server, "take-file", {"file": {"href": internet.url("/secret.txt")}})
    log = server.get(f"/jobs/{job_id}/logs").text
    assert info["status"] == "successful", log[-2000:]
    assert server.get(f"/jobs/{job_id}/results/out").text == internet.secret
    folder = JobFolder(server.settings.data_dir, job_id)
    staged = [p for p in folder.path.rglob("secret.txt") if p.read_text() == internet.secret]
    assert staged, "the fetched input is not in the job folder"
    assert _temp_files_holding(internet.secret) == leftovers  # nothing left in /tmp
    assert server.delete(f"/jobs/{job_id}").status_code == 200
    assert not folder.path.exists() and not any(p.exists() for p in staged)


def _temp_files_holding(text: str) -> list[Path]:
    found = []
    for path in Path(tempfile.gettempdir()).iterdir():
        try:
            if path.is_file() and path.stat().st_size < 4096 and text in path.read_text(errors="replace"):
                found.append(path)
        except OSError:
            continue
    return found


def test_a_redirect_to_a_refused_address_is_refused(server: LiveServer, internet: Internet) -> None:
    to = internet.url("/secret.txt", "127.0.0.1")
    url = internet.url("/redirect?" + urllib.parse.urlencode({"to": to}))
    asked = len(internet.asked)
    _, info = run(server, "take-file", {"file": {"href": url}})
    assert info["status"] == "failed"
    assert f"redirected to {to}" in info["message"] and "loopback" in info["message"], info["message"]
    assert internet.asked[asked:] == [url.removeprefix(f"http://localhost:{internet.port}")]


@pytest.mark.parametrize(("path", "reason"), [("/big", f"more than the {MAX_BYTES} bytes allowed"),
                                              ("/stall", "took longer than the 3 s allowed (ADES_FETCH_TIMEOUT)")])
def test_downloads_are_capped_in_bytes_and_time(server: LiveServer, internet: Internet, path: str,
                                                reason: str) -> None:
    internet.release.clear()
    try:
        job_id, info = run(server, "take-file", {"file": {"href": internet.url(path)}})
    finally:
        internet.release.set()
    assert info["status"] == "failed" and reason in info["message"], info["message"]
    folder = JobFolder(server.settings.data_dir, job_id)
    assert not [p for p in folder.path.rglob("*") if p.name in ("big", "stall") or ".partial" in p.name]


# --- deploying ---------------------------------------------------------------------------------------------------
def deploy_refused(server: LiveServer, body: Any, media: str) -> str:
    before = snapshot(server)
    data = body if isinstance(body, str) else json.dumps(body)
    answer = server.post("/processes", data=data, headers={"Content-Type": media})
    if answer.status_code == 201:  # what an unguarded server does: say what every user now sees
        process = answer.json()["processSummary"]["id"]
        pytest.fail(f"deployed: {json.dumps(server.get(f'/processes/{process}').json())[:600]}")
    detail = assert_problem(answer, 400, "invalid-package")["detail"]
    assert snapshot(server) == before
    return detail


def test_an_execution_unit_href_is_fetched_through_the_fetcher(server: LiveServer, internet: Internet) -> None:
    unit = {"executionUnit": {"href": internet.url("/hello.cwl", "127.0.0.1")}}
    asked = len(internet.asked)
    detail = deploy_refused(server, unit, "application/ogcapppkg+json")
    assert "loopback" in detail and internet.asked[asked:] == [], detail
    allowed = {"executionUnit": {"href": internet.url("/hello.cwl")}}
    answer = server.post("/processes", data=json.dumps(allowed), headers={"Content-Type": "application/ogcapppkg+json"})
    assert answer.status_code == 201, answer.text


@pytest.mark.parametrize("directive", ["$include", "$import"])
def test_includes_of_local_files_are_refused(server: LiveServer, secret_file: Path, directive: str) -> None:
    # an input's doc is shown to every user in the process description; a foreign field takes any document
    where = ("  file: {type: File, inputBinding: {position: 1}, doc: {$include: %s}}" if directive == "$include"
             else "  file: {type: File, inputBinding: {position: 1}, s:about: {$import: %s}}")
    cwl = TAKE_FILE.replace("id: take-file", f"id: include-{directive[1:]}\n$namespaces: {{s: https://schema.org/}}")
    cwl = cwl.replace("  file: {type: File, inputBinding: {position: 1}}", where % secret_file.as_uri())
    detail = deploy_refused(server, cwl, "application/cwl+yaml")
    assert "outside the directories" in detail and secret_file.read_text().split(":")[0] not in detail, detail


def test_http_includes_go_through_the_fetcher(server: LiveServer, internet: Internet) -> None:
    cwl = TAKE_FILE.replace("id: take-file", "id: include-http\ndoc: {$include: %s}")
    asked = len(internet.asked)
    detail = deploy_refused(server, cwl % internet.url("/doc.txt", "127.0.0.1"), "application/cwl+yaml")
    assert "loopback" in detail and internet.asked[asked:] == [], detail
    answer = server.post("/processes", data=cwl % internet.url("/doc.txt"),
                         headers={"Content-Type": "application/cwl+yaml"})
    assert answer.status_code == 201, answer.text
    assert server.get("/processes/include-http").json()["description"] == f"included {internet.secret}"


# --- what a package itself names -----------------------------------------------------------------------------------
def test_a_package_default_reaches_no_more_than_an_input(server: LiveServer, internet: Internet,
                                                         secret_file: Path) -> None:
    to_loopback = internet.url("/secret.txt", "127.0.0.1")
    for name, location, reason in (("http", to_loopback, "loopback"),
                                   ("file", secret_file.as_uri(), "outside the job folder")):
        cwl = WITH_DEFAULT.format(name=name, location=location)
        assert server.post("/processes", data=cwl, headers={"Content-Type": "application/cwl+yaml"}).status_code == 201
        asked = len(internet.asked)
        job_id, info = run(server, f"with-default-{name}", {})
        assert info["status"] == "failed", server.get(f"/jobs/{job_id}/results/out").text
        assert reason in info["message"], info["message"]
        assert internet.asked[asked:] == []
