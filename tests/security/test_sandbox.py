"""Job code in the sandbox (ades.execute.sandbox), tried as an attacker would: a deployed package runs shell
commands in its job and reports what they could do. With ADES_SANDBOX=bwrap (the default) a tool runs as the job
user, sees neither other jobs, nor the server's files, nor the network unless it declares NetworkAccess, and can
write only its own folders. The same probes with ADES_SANDBOX=none (how every job ran before the sandbox) reach all
of it: the difference is the sandbox's."""

from __future__ import annotations

import os
import pwd
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from ades.config import Settings
from ades.jobs.folder import JobFolder
from tests.e2e.conftest import LiveServer, serve_app

pytestmark = pytest.mark.integration

PROBE = """\
cwlVersion: v1.2
class: CommandLineTool
id: probe{suffix}
requirements:
  NetworkAccess: {{networkAccess: {network}}}
baseCommand: [sh, -c]
arguments: [$(inputs.script)]
inputs:
  script: string
outputs:
  out: stdout
"""


def _server(es_url: str, root: Path, sandbox: str) -> Iterator[LiveServer]:
    settings = Settings(es_url=es_url, index_prefix=f"sec-{uuid.uuid4().hex[:8]}-", data_dir=root / "data",
                        event_sink="direct", sandbox=sandbox)
    for server in serve_app(settings, workers=1):
        for network in ("false", "true"):
            suffix = "-net" if network == "true" else ""
            deployed = server.post("/processes", data=PROBE.format(suffix=suffix, network=network),
                                   headers={"Content-Type": "application/cwl+yaml"})
            assert deployed.status_code == 201, deployed.text
        yield server


@pytest.fixture(scope="module")
def confined(es_url: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[LiveServer]:
    yield from _server(es_url, tmp_path_factory.mktemp("sandboxed"), "bwrap")


@pytest.fixture(scope="module")
def unconfined(es_url: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[LiveServer]:
    yield from _server(es_url, tmp_path_factory.mktemp("unconfined"), "none")


def run(server: LiveServer, script: str, network: bool = False) -> str:
    """What the probe printed (its stdout), once its job succeeded."""
    process = "probe-net" if network else "probe"
    answer = server.post(f"/processes/{process}/execution", json={"inputs": {"script": script}},
                         headers={"Prefer": "respond-async"})
    assert answer.status_code == 201, answer.text
    job_id = answer.json()["jobID"]
    info = server.wait_status(job_id)
    assert info["status"] == "successful", (info, server.get(f"/jobs/{job_id}/logs").text[-3000:])
    return server.get(f"/jobs/{job_id}/results/out").text


def _secret(root: Path) -> Path:
    secret = root / "tokens.yaml"
    secret.write_text("alice-token: {user: alice}\n")
    secret.chmod(0o600)
    return secret


@pytest.mark.parametrize("server_name", ["confined", "unconfined"])
def test_a_tool_runs_as_the_job_user_not_as_the_server(server_name: str, request: pytest.FixtureRequest) -> None:
    server: LiveServer = request.getfixturevalue(server_name)
    uid = int(run(server, "id -u").strip())
    if server_name == "unconfined" or os.geteuid() != 0:
        assert uid == os.geteuid()  # the server's own user (a server that is not root confines tools as itself)
    else:
        assert uid == pwd.getpwnam("ades-job").pw_uid  # not root: the job user


def test_a_tool_sees_no_other_job_nor_the_servers_files(confined: LiveServer, unconfined: LiveServer,
                                                       tmp_path: Path) -> None:
    secret = _secret(tmp_path)
    for server, reaches in ((unconfined, True), (confined, False)):
        other = server.post("/processes/echo/execution", json={"inputs": {"message": "someone else's"}},
                            headers={"Prefer": "respond-async"}).json()["jobID"]
        assert server.wait_status(other)["status"] == "successful"
        log = JobFolder(server.settings.data_dir, other).log
        seen = run(server, f"cat {log} {secret} {server.settings.data_dir}/queue/*.jsonl 2>/dev/null; echo end")
        assert ("someone else's" in seen) is reaches, seen  # another job's log
        assert ("alice-token" in seen) is reaches, seen  # a secret of the server's user
        assert ('"job_id"' in seen) is reaches, seen  # the journal: every user's inputs


def test_a_tool_writes_only_its_own_folders(confined: LiveServer, unconfined: LiveServer, tmp_path: Path) -> None:
    for server, reaches in ((unconfined, True), (confined, False)):
        target = tmp_path / f"planted-{server.settings.sandbox}"
        seen = run(server, f"echo x > {target} 2>/dev/null && echo planted; echo here > mine && cat mine")
        assert ("planted" in seen) is reaches, seen
        assert target.exists() is reaches
        assert "here" in seen  # its own working folder is writable


def test_no_network_unless_declared(confined: LiveServer, unconfined: LiveServer) -> None:
    es = f"{confined.settings.elasticsearch_url.rstrip('/')}/_cat/indices"
    fetch = ("python3 -c \"import sys, urllib.request as u; print(u.urlopen(sys.argv[1], timeout=5).status)\" "
             f"{es} 2>&1 | tail -1")
    assert run(unconfined, fetch).strip() == "200"  # the job store, from inside a job
    assert "200" not in run(confined, fetch)
    assert run(confined, fetch, network=True).strip() == "200"  # declared NetworkAccess, and the operator allows it


LINKER = """\
cwlVersion: v1.2
class: CommandLineTool
id: linker
baseCommand: [ln, -s]
arguments: [$(inputs.target), out.txt]
inputs:
  target: string
outputs:
  out: {type: File, outputBinding: {glob: out.txt}}
"""


def test_an_output_linked_to_a_host_file_never_serves_that_file(confined: LiveServer, tmp_path: Path) -> None:
    """A tool cannot read the server's files, but it can name one: an output that is a symbolic link to a secret is
    collected and served by the server, outside the sandbox. Neither the sync raw answer nor the results route may
    give the secret away."""
    secret = _secret(tmp_path)
    assert confined.post("/processes", data=LINKER, headers={"Content-Type": "application/cwl+yaml"}).status_code \
        == 201
    raw = confined.post("/processes/linker/execution", json={"inputs": {"target": str(secret)}, "response": "raw"})
    assert "alice-token" not in raw.text, raw.text
    answer = confined.post("/processes/linker/execution", json={"inputs": {"target": str(secret)}},
                           headers={"Prefer": "respond-async"})
    job_id = answer.json()["jobID"]
    confined.wait_status(job_id)
    for path in (f"/jobs/{job_id}/results", f"/jobs/{job_id}/results/out"):
        assert "alice-token" not in confined.get(path).text, path
