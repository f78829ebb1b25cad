"""ADES_CONTAINER_RUNTIME=podman, for real: `ades serve` runs a package's DockerRequirement tool in a podman container
of a local image (built here from busybox: no registry is reached), as cwltool does it.

Skipped where podman cannot run a container (not installed, no static busybox to build the image from). Debian's
podman as configured by default cannot start one on hosts whose hard limits are below what it asks (setrlimit EPERM)
or whose cgroups are hybrid (crun refuses them): the test then gives podman a containers.conf that asks the host's
limits and runc, through CONTAINERS_CONF, as an operator of such a host would."""

from __future__ import annotations

import contextlib
import io
import os
import pwd
import resource
import shutil
import signal
import socket
import subprocess
import sys
import tarfile
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
import requests

from ades.config import Settings
from ades.cwl import load_package
from ades.events.sinks import SinkConfig
from ades.execute.sandbox import Sandbox
from ades.jobs import groups
from ades.store import JobStore
from tests import helpers
from tests.conftest import free_port
from tests.e2e.conftest import drop_test_indexes
from tests.helpers import wait_for
from tests.integration.conftest import start_serve

pytestmark = pytest.mark.integration

TOOL = """\
cwlVersion: v1.2
class: CommandLineTool
id: {pid}
{where}:
  DockerRequirement: {{dockerPull: "{image}"}}
baseCommand: [sh, -c]
arguments: [$(inputs.script)]
inputs:
  script: string
outputs:
  out: {{type: File, outputBinding: {{glob: out.txt}}}}
"""
PROBE = ("printf uid=; id -u; test -e /etc/debian_version && echo host-files || echo image-files; "
         "cat /etc/passwd; ls {queue} >/dev/null 2>&1 && echo sees-journal || echo no-journal; "
         "grep -E 'NoNewPrivs|CapBnd' /proc/self/status")


def _podman(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(["podman", *args], capture_output=True, text=True, timeout=120, env=env)


def _rootfs_tar() -> bytes:
    """A tiny image: static busybox and its applets, and a passwd file that says whose image it is."""
    busybox = shutil.which("busybox")
    if busybox is None or "statically linked" not in subprocess.run(["file", "-L", busybox], capture_output=True,
                                                                     text=True).stdout:
        pytest.skip("no static busybox to build the test image from (apt-get install -y busybox-static file)")
    applets = subprocess.run([busybox, "--list"], capture_output=True, text=True, check=True).stdout.split()
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w") as tar:
        for folder in ("bin", "etc", "tmp"):
            info = tarfile.TarInfo(folder)
            info.type, info.mode = tarfile.DIRTYPE, 0o1777 if folder == "tmp" else 0o755
            tar.addfile(info)
        tar.add(busybox, "bin/busybox")
        for applet in applets:
            if applet != "busybox":
                link = tarfile.TarInfo(f"bin/{applet}")
                link.type, link.linkname = tarfile.SYMTYPE, "busybox"
                tar.addfile(link)
        passwd = b"root:x:0:0:the-test-image:/:/bin/sh\n"
        info = tarfile.TarInfo("etc/passwd")
        info.size = len(passwd)
        tar.addfile(info, io.BytesIO(passwd))
    return buffer.getvalue()


def _host_conf(folder: Path) -> Path:
    nofile = resource.getrlimit(resource.RLIMIT_NOFILE)[1]
    conf = folder / "containers.conf"
    conf.write_text(f'[containers]\ndefault_ulimits = ["nofile={nofile}:{nofile}", "nproc=4096:4096"]\n'
                    '[engine]\nruntime = "runc"\ncgroup_manager = "cgroupfs"\nevents_logger = "file"\n')
    return conf


@pytest.fixture(scope="module")
def image(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[str, dict[str, str]]]:
    """(a local image's tag, what the environment needs for podman to run it)."""
    if shutil.which("podman") is None:
        pytest.skip("podman is not installed (apt-get install -y podman runc)")
    work = tmp_path_factory.mktemp("podman")
    tarball = work / "rootfs.tar"
    tarball.write_bytes(_rootfs_tar())
    tag = f"localhost/ades-test-busybox:{uuid.uuid4().hex[:8]}"
    imported = _podman("import", str(tarball), tag)
    if imported.returncode != 0:
        pytest.skip(f"podman import failed: {imported.stderr.strip()}")
    try:
        extra: dict[str, str] = {}
        tried = _podman("run", "--rm", tag, "true")
        if tried.returncode != 0:
            extra = {"CONTAINERS_CONF": str(_host_conf(work))}
            again = _podman("run", "--rm", tag, "true", env={**os.environ, **extra})
            if again.returncode != 0:
                pytest.skip(f"podman cannot run a container here: {tried.stderr.strip()}; with {extra}: "
                            f"{again.stderr.strip()}")
        yield tag, extra
    finally:
        _podman("rmi", "-f", tag)


@pytest.fixture(scope="module")
def server(es_url: str, image: tuple[str, dict[str, str]],
           tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[str, Path]]:
    """(URL, data dir) of `ades serve` with ADES_CONTAINER_RUNTIME=podman, anonymous deploying."""
    work = tmp_path_factory.mktemp("serve-podman")
    prefix = f"test-{uuid.uuid4().hex[:10]}-"
    port = free_port()
    data = work / "data"
    env = {**os.environ, **image[1], "ADES_ES_URL": es_url, "ADES_INDEX_PREFIX": prefix, "ADES_DATA_DIR": str(data),
           "ADES_EVENT_SINK": "direct", "ADES_CONTAINER_RUNTIME": "podman", "ADES_ANONYMOUS_ROLES": '["deployer"]'}
    process = start_serve(env, port, work / "server.log", "--workers", "1", "--job-workers", "1")
    try:
        yield f"http://127.0.0.1:{port}", data
    finally:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(process.pid, signal.SIGTERM)
        process.wait(timeout=60)
        drop_test_indexes(Settings(es_url=es_url, index_prefix=prefix))


def deploy_and_run(url: str, cwl: str, script: str) -> tuple[str, str, str]:
    """(the job's status, its `out` file as the server serves it, its log)."""
    deployed = requests.post(f"{url}/processes", data=cwl, headers={"Content-Type": "application/cwl+yaml"},
                             timeout=60)
    assert deployed.status_code == 201, deployed.text
    pid = deployed.json()["processSummary"]["id"]
    answer = requests.post(f"{url}/processes/{pid}/execution", json={"inputs": {"script": script}},
                           headers={"Prefer": "respond-async"}, timeout=60)
    assert answer.status_code == 201, answer.text
    job = answer.json()["jobID"]

    def ended() -> dict | None:
        info = requests.get(f"{url}/jobs/{job}", timeout=30).json()
        return info if info["status"] in ("successful", "failed") else None

    info = wait_for(ended, 120, f"job {job} to end", interval=0.2)
    log = requests.get(f"{url}/jobs/{job}/logs", timeout=30).text
    out = requests.get(f"{url}/jobs/{job}/results/out", timeout=30)
    return info["status"], out.text if out.ok else "", log


@pytest.mark.parametrize("where", ["requirements", "hints"])
def test_a_docker_tool_runs_in_its_image_through_podman(server: tuple[str, Path], image: tuple[str, dict[str, str]],
                                                        where: str) -> None:
    url, data = server
    cwl = TOOL.format(pid=f"in-podman-{where}", where=where, image=image[0])
    status, out, log = deploy_and_run(url, cwl, "{ " + PROBE.format(queue=data / "queue") + "; } > out.txt")
    assert status == "successful", log[-3000:]
    assert "image-files" in out and "the-test-image" in out, out  # the image's files, not the host's
    assert "no-journal" in out, out
    assert "NoNewPrivs:\t1" in out and "CapBnd:\t0000000000000000" in out, out  # no way back to privileges
    assert "podman \\\n    run" in log and "--net=none" in log, log[-3000:]  # cwltool ran podman, no network
    assert "--userns=keep-id" not in log  # rootful podman refuses it
    if os.geteuid() == 0:
        job_uid = pwd.getpwnam("ades-job").pw_uid
        assert f"uid={job_uid}" in out, out  # the job user's, not root
        assert f"--user={job_uid}:" in log


def test_a_tool_without_docker_requirement_stays_in_the_sandbox(server: tuple[str, Path]) -> None:
    url, data = server
    lines = TOOL.format(pid="plain-tool", where="hints", image="unused").splitlines()
    cwl = "\n".join(line for line in lines if line != "hints:" and "DockerRequirement" not in line)
    status, out, log = deploy_and_run(url, cwl, "{ " + PROBE.format(queue=data / "queue") + "; } > out.txt")
    assert status == "successful", log[-3000:]
    assert "host-files" in out and "no-journal" in out, out  # bwrap: the host's system, not its data dir
    assert "$ bwrap \\\n" in log and "podman \\\n    run" not in log, log[-3000:]


def test_an_output_linked_to_a_host_file_is_not_served(server: tuple[str, Path], image: tuple[str, dict[str, str]],
                                                       tmp_path: Path) -> None:
    """In the container, a link to a host path points nowhere; collected on the host (outside the container), it
    would serve the host's file."""
    secret = tmp_path / "tokens.yaml"
    secret.write_text("alice-token: {user: alice}\n")
    url, _ = server
    cwl = TOOL.format(pid="podman-linker", where="requirements", image=image[0])
    _, out, log = deploy_and_run(url, cwl, f"ln -s {secret} out.txt")
    assert "alice-token" not in out, out
    assert "outside what the tool may read" in log, log[-3000:]


def test_a_dismissed_jobs_container_goes_with_it(server: tuple[str, Path], image: tuple[str, dict[str, str]]) -> None:
    """The container is podman's child, not the job's: stopping the job's process group alone left it running."""
    url, _ = server
    cwl = TOOL.format(pid="podman-sleeper", where="requirements", image=image[0])
    assert requests.post(f"{url}/processes", data=cwl, headers={"Content-Type": "application/cwl+yaml"},
                         timeout=60).status_code == 201
    answer = requests.post(f"{url}/processes/podman-sleeper/execution", json={"inputs": {"script": "sleep 300"}},
                           headers={"Prefer": "respond-async"}, timeout=60)
    job = answer.json()["jobID"]

    def containers() -> list[str]:
        listed = _podman("ps", "-q", "--filter", f"ancestor={image[0]}", env={**os.environ, **image[1]})
        return listed.stdout.split()

    wait_for(containers, 60, "the job's container to run", interval=0.2)
    assert requests.delete(f"{url}/jobs/{job}", timeout=30).status_code == 200
    wait_for(lambda: not containers(), 30, "the dismissed job's container to be removed", interval=0.2)


def _listening(port: int) -> bool:
    with socket.socket() as probe:
        return probe.connect_ex(("127.0.0.1", port)) == 0


@pytest.fixture(scope="module")
def dask_cluster(image: tuple[str, dict[str, str]], tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """A Dask scheduler and one `ades dask worker` whose environment lets podman run (and nothing else of ades')."""
    from tests.integration.test_execute_dask import wait_for_workers

    logs = tmp_path_factory.mktemp("dask-podman")
    port = free_port()
    url = f"tcp://127.0.0.1:{port}"
    ades = [sys.executable, "-m", "ades.cli"]
    procs = []
    try:
        for i, command in enumerate([[*ades, "dask", "scheduler", "--port", str(port)],
                                     [*ades, "dask", "worker", "--scheduler", url, "--nworkers", "1"]]):
            with (logs / f"{i}.log").open("ab") as out:
                procs.append(subprocess.Popen(command, stdout=out, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                                              env={**os.environ, **image[1]}, start_new_session=True))
            if i == 0:
                wait_for(lambda: _listening(port), 60, "the Dask scheduler to listen")
        wait_for_workers(url, 1)
        yield url
    finally:
        for proc in reversed(procs):
            groups.stop(proc.pid, 20)
            proc.wait(5)


def test_the_runtime_reaches_a_dask_worker_in_the_runspec(dask_cluster: str, image: tuple[str, dict[str, str]],
                                                          settings: Settings, job_store: JobStore) -> None:
    """The worker is told nothing of ADES_CONTAINER_RUNTIME: the job's RunSpec (JSON) carries it."""
    from ades.jobs.dask_server import DaskExecutor

    package = load_package(TOOL.format(pid="dask-podman", where="requirements", image=image[0]), "application/cwl")
    spec = helpers.new_spec(package, {"script": "{ " + PROBE.format(queue="/nowhere") + "; } > out.txt"},
                            settings.data_dir, SinkConfig.from_settings(settings), job_store)
    spec = spec.model_copy(update={"sandbox": Sandbox(container="podman")})
    executor = DaskExecutor(dask_cluster, settings.data_dir, grace=2.0)
    try:
        executor.submit(spec)
        assert executor.wait(spec.job_id, 120) == "succeeded", spec.folder.log.read_text()[-3000:]
    finally:
        executor.close()
    out = (spec.folder.outputs / "out.txt").read_text()
    assert "image-files" in out and "the-test-image" in out, out
