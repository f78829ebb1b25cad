"""DaskExecutor on a real Dask cluster: a scheduler and 2 workers (`ades dask scheduler|worker`, separate
processes), real cwltool and ES. Jobs run there, cancel kills the job's processes, a SIGKILLed worker fails its job
or has it run again, and `ades services start --dask` brings a cluster up and down."""

from __future__ import annotations

import os
import pwd
import signal
import socket
import subprocess
import sys
from collections.abc import Iterator, Sequence
from pathlib import Path

import pytest
from distributed import Client

from ades.config import Settings
from ades.events.sinks import SinkConfig
from ades.jobs import groups
from ades.jobs.dask_server import DaskExecutor
from ades.jobs.folder import JobFolder
from ades.jobs.pause import pause, resume
from ades.jobs.spec import RunSpec
from ades.store import JobStore
from tests import helpers
from tests.conftest import free_port
from tests.helpers import assert_a_restart_leaves_it, gate_folder, processes_in, wait_for

pytestmark = pytest.mark.integration

EXAMPLES = Path(__file__).resolve().parents[2] / "cwl" / "examples"
WORKERS = 2


def new_spec(package, inputs: dict, settings: Settings, job_store: JobStore, readable: Sequence[Path] = ()) -> RunSpec:
    return helpers.new_spec(package, inputs, settings.data_dir, SinkConfig.from_settings(settings), job_store,
                            readable=readable)


def worker_addresses(url: str) -> list[str]:
    with Client(url, set_as_default=False, timeout=10) as client:
        return sorted(client.scheduler_info(n_workers=-1)["workers"])


def wait_for_workers(url: str, count: int, timeout: float = 120) -> list[str]:
    wait_for(lambda: len(worker_addresses(url)) >= count, timeout, f"{count} Dask workers", interval=0.5)
    return worker_addresses(url)


@pytest.fixture(scope="module")
def cluster(tmp_path_factory) -> Iterator[str]:
    """`ades dask scheduler` and two `ades dask worker` processes on a free port, stopped afterwards."""
    logs = tmp_path_factory.mktemp("dask-cluster")
    port = free_port()
    url = f"tcp://127.0.0.1:{port}"
    ades = [sys.executable, "-m", "ades.cli"]
    commands = [[*ades, "dask", "scheduler", "--port", str(port)]] + [
        [*ades, "dask", "worker", "--scheduler", url, "--nworkers", "1"] for _ in range(WORKERS)
    ]
    procs = []
    try:
        for i, command in enumerate(commands):
            with (logs / f"{i}.log").open("ab") as out:
                procs.append(subprocess.Popen(command, stdout=out, stderr=subprocess.STDOUT,
                                              stdin=subprocess.DEVNULL, start_new_session=True))
            if i == 0:
                wait_for(lambda: _port_open(port), 60, "the Dask scheduler to listen")
        wait_for_workers(url, WORKERS)
        yield url
    finally:
        for proc in reversed(procs):
            groups.stop(proc.pid, 20)
            proc.wait(5)


def _port_open(port: int) -> bool:
    with socket.socket() as s:
        return s.connect_ex(("127.0.0.1", port)) == 0


@pytest.fixture
def executor(cluster: str, settings: Settings, es) -> Iterator[DaskExecutor]:
    wait_for_workers(cluster, WORKERS)  # a worker killed by an earlier test is back (its nanny restarts it)
    executor = DaskExecutor(cluster, settings.data_dir, grace=2.0)
    yield executor
    executor.close()


def job_running(executor: DaskExecutor, job_id: str) -> tuple[str, int] | None:
    """(worker address, job process group) once the job's child has been forked on a worker."""
    found = executor.running().get(job_id)
    return found if found and found[1] else None


def test_echo_jobs_run_on_both_workers(executor, cluster, echo, settings, job_store):
    specs = [new_spec(echo, {"message": f"hello {i}"}, settings, job_store) for i in range(8)]
    for spec in specs:
        executor.submit(spec)
    outcomes = [executor.wait(spec.job_id, 180) for spec in specs]
    assert outcomes == ["succeeded"] * len(specs), outcomes
    job_store.refresh()
    workers = set(worker_addresses(cluster))
    used = set()
    for i, spec in enumerate(specs):
        doc = job_store.get(spec.job_id)
        assert doc["status"] == "succeeded", doc
        assert (spec.folder.outputs / "out.txt").read_text() == f"hello {i}\n"
        [attempt] = spec.folder.attempts()
        assert attempt["worker"] in workers and attempt["pgid"] != os.getpid()
        used.add(attempt["worker"])
    # each worker has one thread, so the scheduler gives the 8 jobs to both
    assert used == workers, used


def test_paused_execution_holds_jobs_on_the_workers(executor, echo, settings, job_store):
    pause(settings.data_dir, "test")
    try:
        spec = new_spec(echo, {"message": "held"}, settings, job_store)
        executor.submit(spec)
        assert executor.wait(spec.job_id, 2) is None  # taken by a worker, not started: no attempt recorded
        assert not spec.folder.attempts()
    finally:
        resume(settings.data_dir)
    assert executor.wait(spec.job_id, 120) == "succeeded"
    assert (spec.folder.outputs / "out.txt").read_text() == "held\n"


def test_a_late_users_job_starts_before_another_users_backlog(executor, echo, settings, job_store):
    """Queued jobs start in a fair order across users: each task's Dask priority is its fair-queue tag."""
    def spec_of(user: str, message: str) -> RunSpec:
        return new_spec(echo, {"message": message}, settings, job_store).model_copy(update={"user_id": user})

    backlog = [spec_of("alice", f"alice {i}") for i in range(12)]
    bobs = spec_of("bob", "bob")
    pause(settings.data_dir, "a backlog gathers")
    try:
        for spec in backlog:
            executor.submit(spec)
        executor.submit(bobs)
        key = f"ades-job-{bobs.job_id}"
        wait_for(lambda: executor.client.run_on_scheduler(lambda dask_scheduler: key in dask_scheduler.tasks), 30,
                 "the scheduler to have bob's job")
    finally:
        resume(settings.data_dir)
    assert executor.wait(bobs.job_id, 120) == "succeeded"
    for spec in backlog:
        assert executor.wait(spec.job_id, 120) == "succeeded"
    started = {spec.job_id: spec.folder.attempts()[0]["at"] for spec in [*backlog, bobs]}
    ahead = sum(1 for spec in backlog if started[spec.job_id] < started[bobs.job_id])
    # Dask sends the first tasks of a burst (up to twice its threads) straight to the workers, before it sees a
    # group worth queueing: each worker holds one of alice's jobs while paused and has her next one in line. Bob's is
    # the first the scheduler sends after those, give or take the one a freed worker was sent in the same moment
    # (5 seen on a loaded host). First in first out started all twelve before bob's.
    assert ahead <= 2 * WORKERS + 2, f"{ahead} of alice's 12 jobs started before bob's"


def test_cancel_kills_the_running_job(executor, sleep, echo, settings, job_store):
    spec = new_spec(sleep, {"seconds": 300}, settings, job_store)
    executor.submit(spec)
    wait_for(lambda: job_running(executor, spec.job_id), 120, "the job to start on a worker", interval=0.2)
    wait_for(lambda: processes_in(spec.folder.work), 60, "the tool to run")
    assert executor.cancel(spec.job_id)
    assert executor.wait(spec.job_id, 60) == "dismissed"
    # sh and sleep of the tool, cwltool's child: the whole group is gone
    wait_for(lambda: not processes_in(spec.folder.path), 15, "the job's processes to be gone")
    job_store.refresh()
    doc = job_store.get(spec.job_id)
    assert doc["status"] == "dismissed" and doc["stop-time"]
    assert not executor.cancel(spec.job_id)  # over
    after = new_spec(echo, {"message": "still here"}, settings, job_store)
    executor.submit(after)
    assert executor.wait(after.job_id, 120) == "succeeded"


def test_cancel_a_queued_job(executor, sleep, settings, job_store):
    busy = [new_spec(sleep, {"seconds": 300}, settings, job_store) for _ in range(WORKERS)]
    for spec in busy:
        executor.submit(spec)
    wait_for(lambda: all(job_running(executor, s.job_id) for s in busy), 120, "both jobs to start", interval=0.2)
    queued = new_spec(sleep, {"seconds": 300}, settings, job_store)
    executor.submit(queued)
    assert executor.cancel(queued.job_id)
    assert executor.wait(queued.job_id, 60) == "dismissed"
    assert "starts" not in queued.folder.read_log()
    job_store.refresh()
    assert job_store.get(queued.job_id)["status"] == "dismissed"
    for spec in busy:
        assert executor.cancel(spec.job_id)
    assert [executor.wait(s.job_id, 60) for s in busy] == ["dismissed"] * WORKERS
    wait_for(lambda: not any(processes_in(s.folder.path) for s in busy), 15, "the jobs' processes to be gone")


def kill_worker_of(executor: DaskExecutor, job_id: str) -> str:
    """SIGKILL the Dask worker process running the job (not its nanny); returns the worker's address."""
    worker, _ = wait_for(lambda: job_running(executor, job_id), 120, "the job to start on a worker", interval=0.2)
    pid = executor.client.run(os.getpid, workers=[worker])[worker]
    os.kill(pid, signal.SIGKILL)
    return worker


def test_killed_worker_fails_its_job(executor, sleep, settings, job_store):
    spec = new_spec(sleep, {"seconds": 300}, settings, job_store)
    executor.submit(spec)
    wait_for(lambda: job_running(executor, spec.job_id), 120, "the job to start on a worker", interval=0.2)
    wait_for(lambda: processes_in(spec.folder.work), 60, "the tool to run")
    worker = kill_worker_of(executor, spec.job_id)
    assert executor.wait(spec.job_id, 120) == "failed"
    wait_for(lambda: not processes_in(spec.folder.path), 15, "the job's processes to be gone")
    job_store.refresh()
    doc = job_store.get(spec.job_id)
    assert doc["status"] == "failed" and doc["stop-time"]
    assert f"the Dask worker running the job ({worker}) was lost" in doc["message"]
    assert "ADES_DASK_RETRY_LOST is off" in doc["message"]
    assert len(spec.folder.attempts()) == 1  # not run again


def test_killed_launcher_fails_its_job(executor, sleep, echo, settings, job_store):
    spec = new_spec(sleep, {"seconds": 300}, settings, job_store)
    executor.submit(spec)
    found = wait_for(lambda: job_running(executor, spec.job_id), 120, "the job to start on a worker", interval=0.2)
    wait_for(lambda: processes_in(spec.folder.work), 60, "the tool to run")
    # the launcher is the parent of the job's group leader
    launcher = int(Path(f"/proc/{found[1]}/stat").read_text().rsplit(")", 1)[1].split()[1])
    assert "ades.jobs.dask_launchers" in Path(f"/proc/{launcher}/cmdline").read_bytes().decode()
    os.kill(launcher, signal.SIGKILL)
    assert executor.wait(spec.job_id, 60) == "failed"
    wait_for(lambda: not processes_in(spec.folder.path), 15, "the job's processes to be gone")
    job_store.refresh()
    assert "launcher process on" in job_store.get(spec.job_id)["message"]
    after = new_spec(echo, {"message": "a new launcher"}, settings, job_store)
    executor.submit(after)
    assert executor.wait(after.job_id, 120) == "succeeded"


def test_killed_worker_job_is_retried(cluster, gate, settings, job_store, es, tmp_path):
    wait_for_workers(cluster, WORKERS)
    executor = DaskExecutor(cluster, settings.data_dir, retry_lost=True, grace=2.0)
    opened = gate_folder(tmp_path) / "gate"
    try:
        # killed while the tool waits at its gate; the gate opens once the second attempt runs, which then ends
        spec = new_spec(gate, {"gate": str(opened)}, settings, job_store, readable=[opened.parent])
        executor.submit(spec)
        wait_for(lambda: processes_in(spec.folder.work), 120, "the tool to run")
        worker = kill_worker_of(executor, spec.job_id)
        wait_for(lambda: sum("pgid" in a for a in spec.folder.attempts()) == 2, 120, "the second attempt to start")
        opened.touch()
        assert executor.wait(spec.job_id, 180) == "succeeded"
    finally:
        executor.close()
    attempts = spec.folder.attempts()
    assert [a["attempt"] for a in attempts] == [1, 2], attempts
    assert attempts[0]["worker"] == worker and attempts[1]["worker"] != worker
    assert [f.read_text() for f in spec.folder.outputs.iterdir()] == ["opened\n"]
    assert f"({worker}) was lost; running the job again" in spec.folder.read_log()
    job_store.refresh()
    doc = job_store.get(spec.job_id)
    assert doc["status"] == "succeeded" and doc["progress"] == 100, doc


def test_a_restart_leaves_a_job_a_live_worker_on_another_host_holds(cluster, gate, settings, job_store, es,
                                                                    tmp_path):
    """A job a Dask worker runs on another host beats like any job (ades.jobs.heartbeat): a restarting server leaves
    it to finish (it used to be failed as "worker lost", then finished, and stayed failed)."""
    from ades.jobs.service import JobService

    wait_for_workers(cluster, WORKERS)
    opened = gate_folder(tmp_path) / "gate"
    executor = DaskExecutor(cluster, settings.data_dir, grace=2.0)
    restarted = JobService(settings.model_copy(update={"executor": "dask", "dask_scheduler": cluster}), job_store,
                           "http://127.0.0.1:5000")
    spec = new_spec(gate, {"gate": str(opened)}, settings, job_store, readable=[opened.parent])
    assert_a_restart_leaves_it(executor, restarted, spec, job_store, opened)


def test_cancel_unknown_job(executor):
    assert not executor.cancel("no-such-job")


def test_the_job_service_builds_the_dask_executor(cluster, settings, job_store):
    from ades.jobs.service import JobService

    service = JobService(settings.model_copy(update={"executor": "dask", "dask_scheduler": cluster}), job_store,
                         "http://127.0.0.1:5000")
    try:
        assert isinstance(service.executor, DaskExecutor)
    finally:
        service.close()


@pytest.fixture(scope="module")
def dask_live(cluster: str, es_url: str, tmp_path_factory) -> Iterator:
    """A live server (tests/e2e) whose settings say ADES_EXECUTOR=dask, on the module's cluster."""
    import uuid

    from tests.e2e.conftest import serve_app

    settings = Settings(es_url=es_url, index_prefix=f"e2e-dask-{uuid.uuid4().hex[:10]}-", event_sink="direct",
                        data_dir=tmp_path_factory.mktemp("e2e-dask") / "data", executor="dask",
                        dask_scheduler=cluster)
    yield from serve_app(settings)


def test_http_jobs_run_on_the_cluster_and_dismiss(dask_live):
    live = dask_live
    response = live.post("/processes", data=(EXAMPLES / "sleep" / "sleep.cwl").read_text(),
                         headers={"Content-Type": "application/cwl"})
    assert response.status_code == 201, response.text
    sync = live.post("/processes/echo/execution", json={"inputs": {"message": "over dask"}})
    assert sync.status_code == 200, sync.text
    job = live.post("/processes/echo/execution", headers={"Prefer": "respond-async"},
                    json={"inputs": {"message": "async over dask"}}).json()
    assert live.wait_status(job["jobID"])["status"] == "successful"
    assert live.get(f"/jobs/{job['jobID']}/results/out").text == "async over dask\n"
    executor = live.context.jobs.executor
    assert isinstance(executor, DaskExecutor)
    assert JobFolder(live.settings.data_dir, job["jobID"]).attempts()[0]["worker"] in worker_addresses(
        executor.client.scheduler.address)

    sleeping = live.post("/processes/sleep/execution", headers={"Prefer": "respond-async"},
                         json={"inputs": {"seconds": 300}}).json()["jobID"]
    folder = JobFolder(live.settings.data_dir, sleeping)
    wait_for(lambda: processes_in(folder.work), 120, "the tool to run")
    dismissed = live.delete(f"/jobs/{sleeping}")
    assert dismissed.status_code == 200 and dismissed.json()["status"] == "dismissed"
    assert executor.wait(sleeping, 60) == "dismissed"
    wait_for(lambda: not processes_in(folder.path), 15, "the job's processes to be gone")


WHO_AM_I = """\
cwlVersion: v1.2
class: CommandLineTool
id: whoami
baseCommand: [sh, -c, 'id -u; ls /proc | grep -c "^[0-9]"']
inputs: []
outputs:
  out: stdout
"""


def test_tools_on_the_cluster_run_in_the_same_sandbox(dask_live):
    """The sandbox is the launcher's, so a Dask worker confines a tool as a local worker does: the job user, a
    process namespace of its own (the shell, ls and grep are all it sees)."""
    assert dask_live.post("/processes", data=WHO_AM_I, headers={"Content-Type": "application/cwl"}).status_code == 201
    job = dask_live.post("/processes/whoami/execution", headers={"Prefer": "respond-async"}, json={"inputs": {}})
    assert dask_live.wait_status(job.json()["jobID"])["status"] == "successful"
    uid, processes = dask_live.get(f"/jobs/{job.json()['jobID']}/results/out").text.split()
    assert int(uid) == (pwd.getpwnam("ades-job").pw_uid if os.geteuid() == 0 else os.geteuid())
    assert int(processes) <= 5

def test_services_start_dask(tmp_path):
    """`ades services start --dask` on its own data dir and port: a scheduler, ADES_DASK_WORKERS workers, the two
    lines in services.env (other lines kept); `ades services stop dask` stops it all and takes the lines out."""
    data_dir = tmp_path / "ades"
    data_dir.mkdir()
    (data_dir / "services.env").write_text("ADES_AWS_REGION=us-east-1\n")
    port = free_port()
    env = os.environ | {"ADES_DATA_DIR": str(data_dir), "ADES_DASK_PORT": str(port), "ADES_DASK_WORKERS": "2"}
    ades = [sys.executable, "-m", "ades.cli"]
    try:
        start = subprocess.run([*ades, "services", "start", "dask"], env=env, capture_output=True, text=True,
                               timeout=300, cwd=tmp_path)
        assert start.returncode == 0, start.stderr
        url = f"tcp://127.0.0.1:{port}"
        assert f"dask: {url}" in start.stdout
        assert len(worker_addresses(url)) == 2
        lines = (data_dir / "services.env").read_text().splitlines()
        assert lines == ["ADES_AWS_REGION=us-east-1", "ADES_EXECUTOR=dask", f"ADES_DASK_SCHEDULER={url}"]
        status = subprocess.run([*ades, "services", "status", "--check", "dask"], env=env,
                                capture_output=True, text=True, timeout=60, cwd=tmp_path)
        assert status.returncode == 0 and "dask: running" in status.stdout and "2 workers" in status.stdout
    finally:
        stop = subprocess.run([*ades, "services", "stop", "dask"], env=env, capture_output=True, text=True,
                              timeout=120, cwd=tmp_path)
    assert stop.returncode == 0, stop.stderr
    assert not _port_open(port)
    assert (data_dir / "services.env").read_text() == "ADES_AWS_REGION=us-east-1\n"
    status = subprocess.run([*ades, "services", "status", "--check", "dask"], env=env, capture_output=True,
                            text=True, timeout=60, cwd=tmp_path)
    assert status.returncode == 1 and "dask: not running" in status.stdout
