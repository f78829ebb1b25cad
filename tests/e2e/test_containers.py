"""Packages that declare DockerRequirement, through a live server: refused at deploy when the server has no container
runtime and the operator did not allow running them without one (nothing stored); run in the sandbox when allowed;
a hint is never refused."""

from __future__ import annotations

import os
import pwd
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from ades.config import Settings
from tests.e2e.conftest import LiveServer, serve_app
from tests.helpers import assert_problem

pytestmark = pytest.mark.integration

CWL = "application/cwl+yaml"
IMAGE = "registry.invalid/eo/ndvi:2.1"
"""Never pulled: without a runtime the image is only named, and a run without containers ignores it."""


def probe(pid: str, where: str = "requirements", image: str = IMAGE) -> str:
    """A tool that says who runs it and whether it sees the host's Debian files (not in a container image)."""
    return f"""\
cwlVersion: v1.2
class: CommandLineTool
id: {pid}
{where}:
  DockerRequirement: {{dockerPull: "{image}"}}
baseCommand: [sh, -c]
arguments: ['printf uid=; id -u; test -e /etc/debian_version && echo host-files || echo image-files;
  ls "$0/queue" >/dev/null 2>&1 && echo sees-data-dir || echo no-data-dir', $(inputs.data_dir)]
inputs:
  data_dir: string
outputs:
  out: stdout
"""


def _settings(es_url: str, root: Path, **more: object) -> Settings:
    return Settings(es_url=es_url, index_prefix=f"ctr-{uuid.uuid4().hex[:8]}-", data_dir=root / "data",
                    event_sink="direct", **more)


def run_probe(server: LiveServer, pid: str) -> str:
    """What the probe printed, once its job succeeded (it lists the journal folder of the server's data dir)."""
    answer = server.post(f"/processes/{pid}/execution", headers={"Prefer": "respond-async"},
                         json={"inputs": {"data_dir": str(server.settings.data_dir)}})
    assert answer.status_code == 201, answer.text
    job_id = answer.json()["jobID"]
    info = server.wait_status(job_id)
    assert info["status"] == "successful", (info, server.get(f"/jobs/{job_id}/logs").text[-3000:])
    return server.get(f"/jobs/{job_id}/results/out").text


@pytest.fixture(scope="module")
def plain(es_url: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[LiveServer]:
    """A server as it ships: no container runtime, no leave to run without one."""
    yield from serve_app(_settings(es_url, tmp_path_factory.mktemp("plain")), workers=1)


@pytest.fixture(scope="module")
def allowing(es_url: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[LiveServer]:
    yield from serve_app(_settings(es_url, tmp_path_factory.mktemp("allowing"), docker_without_container=True),
                         workers=1)


def test_deploy_refuses_a_required_docker_image_and_stores_nothing(plain: LiveServer) -> None:
    answer = plain.post("/processes", data=probe("needs-docker"), headers={"Content-Type": CWL})
    body = assert_problem(answer, 400, "unsupported-requirement")
    detail = body["detail"]
    assert "DockerRequirement" in detail and IMAGE in detail, detail
    assert "ADES_CONTAINER_RUNTIME" in detail and "ADES_DOCKER_WITHOUT_CONTAINER" in detail, detail
    assert plain.get("/processes/needs-docker").status_code == 404
    assert "needs-docker" not in [p["id"] for p in plain.get("/processes").json()["processes"]]


def test_a_replace_that_adds_a_required_image_is_refused_and_the_old_version_stays(plain: LiveServer) -> None:
    plain_tool = probe("replaced", where="hints")
    assert plain.post("/processes", data=plain_tool, headers={"Content-Type": CWL}).status_code == 201
    before = plain.get("/processes/replaced/package").json()
    answer = plain.put("/processes/replaced", data=probe("replaced"), headers={"Content-Type": CWL})
    assert IMAGE in assert_problem(answer, 400, "unsupported-requirement")["detail"]
    assert plain.get("/processes/replaced/package").json() == before


def test_a_docker_hint_is_optional_it_deploys_and_runs_without_a_container(plain: LiveServer) -> None:
    answer = plain.post("/processes", data=probe("hinted", where="hints"), headers={"Content-Type": CWL})
    assert answer.status_code == 201, answer.text
    printed = run_probe(plain, "hinted")
    assert "host-files" in printed, printed  # no runtime: the hint is ignored, the tool runs on the worker


def test_allowed_without_containers_a_required_image_runs_in_the_sandbox(allowing: LiveServer) -> None:
    answer = allowing.post("/processes", data=probe("allowed"), headers={"Content-Type": CWL})
    assert answer.status_code == 201, answer.text
    printed = run_probe(allowing, "allowed")
    assert "host-files" in printed, printed  # no container: the image is ignored
    assert "no-data-dir" in printed, printed  # bwrap: the journal of the server is not there
    if os.geteuid() == 0:
        assert f"uid={pwd.getpwnam('ades-job').pw_uid}" in printed, printed  # the job user, not root


@pytest.fixture(scope="module")
def with_runtime(es_url: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[LiveServer]:
    """A server whose jobs would run DockerRequirement tools in podman (deploys only here: podman need not run)."""
    yield from serve_app(_settings(es_url, tmp_path_factory.mktemp("runtime"), container_runtime="podman"),
                         workers=1)


@pytest.mark.parametrize(("where", "source"), [
    ("requirements", {"dockerLoad": "http://127.0.0.1:9200/_cat/indices"}),  # the job store, fetched by the worker
    ("hints", {"dockerImport": "/etc/shadow"}),
    ("requirements", {"dockerFile": "FROM scratch\nRUN true"}),
])
def test_with_a_runtime_an_image_the_worker_would_fetch_or_build_is_refused(with_runtime: LiveServer, where: str,
                                                                            source: dict[str, str]) -> None:
    """dockerLoad, dockerImport and dockerFile make cwltool download (any URL, past the fetcher), read (any host
    path) or build an image on the worker, with its privileges and network."""
    field, value = next(iter(source.items()))
    cwl = probe("sourced", where=where).replace(f'dockerPull: "{IMAGE}"', f"dockerImageId: ades/x, {field}: {value!r}")
    body = assert_problem(with_runtime.post("/processes", data=cwl, headers={"Content-Type": CWL}), 400,
                          "unsupported-requirement")
    assert field in body["detail"], body
    assert with_runtime.get("/processes/sourced").status_code == 404


def test_with_a_runtime_a_required_image_deploys(with_runtime: LiveServer) -> None:
    answer = with_runtime.post("/processes", data=probe("pulled"), headers={"Content-Type": CWL})
    assert answer.status_code == 201, answer.text
