"""Dask workers with data dirs of their own (issue 23): a real scheduler and 2 `ades dask worker --data-dir`
processes, each with a data dir that shares no path with the server's, the real ES. Nothing but the store and the
scheduler is shared: a job runs in its worker's dir (the wrapped workflow written there from the task), a
dismissal from any node stops it there (broadcast, or the worker's own watch of the store), a SIGKILLed worker's job
fails with the reason (told by the scheduler, not a shared folder), jobs queued by an API process that is then
killed -9 run to the end, one store-wide pause holds every worker, and a job that already ended does not run
again."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
from collections.abc import Iterator
from pathlib import Path

import pytest
from distributed import Client

from ades.config import Settings
from ades.events.sinks import SinkConfig
from ades.jobs import groups
from ades.jobs.dask_checks import StartCheck, StoreAddress, check_store
from ades.jobs.dask_server import DaskExecutor
from ades.jobs.folder import DataDir, JobFolder
from ades.jobs.pause import pause_store, resume_store
from ades.jobs.spec import RunSpec
from ades.models import StatusUpdate, utcnow
from ades.status import Status
from ades.store import JobStore
from ades.store.hosts import HostStore
from tests import helpers
from tests.conftest import free_port
from tests.helpers import processes_in, wait_for

pytestmark = pytest.mark.integration

WORKERS = 2


def worker_addresses(url: str) -> list[str]:
    with Client(url, set_as_default=False, timeout=10) as client:
        return sorted(client.scheduler_info(n_workers=-1)["workers"])


def listening(port: int) -> bool:
    import socket

    with socket.socket() as s:
        return s.connect_ex(("127.0.0.1", port)) == 0


@pytest.fixture(scope="module")
def worker_dirs(tmp_path_factory) -> list[Path]:
    return [tmp_path_factory.mktemp(f"worker{i}") / "data" for i in range(WORKERS)]


@pytest.fixture(scope="module")
def cluster(tmp_path_factory, worker_dirs: list[Path]) -> Iterator[str]:
    """`ades dask scheduler` and two `ades dask worker --data-dir` processes, each with its own data dir."""
    logs = tmp_path_factory.mktemp("own-dirs-cluster")
    port = free_port()
    url = f"tcp://127.0.0.1:{port}"
    ades = [sys.executable, "-m", "ades.cli"]
    commands = [[*ades, "dask", "scheduler", "--port", str(port)]] + [
        [*ades, "dask", "worker", "--scheduler", url, "--nworkers", "1", "--data-dir", str(d)] for d in worker_dirs
    ]
    env = {k: v for k, v in os.environ.items() if k != "ADES_DATA_DIR"}
    procs = []
    try:
        for i, command in enumerate(commands):
            with (logs / f"{i}.log").open("ab") as out:
                procs.append(subprocess.Popen(command, stdout=out, stderr=subprocess.STDOUT, env=env,
                                              stdin=subprocess.DEVNULL, start_new_session=True))
            if i == 0:
                wait_for(lambda: listening(port), 60, "the Dask scheduler to listen")
        wait_for(lambda: len(worker_addresses(url)) >= WORKERS, 120, "2 Dask workers", interval=0.5)
        yield url
    finally:
        for proc in reversed(procs):
            groups.stop(proc.pid, 20)
            proc.wait(5)


@pytest.fixture
def store_address(settings: Settings) -> StoreAddress:
    return StoreAddress.from_settings(settings)


@pytest.fixture
def executor(cluster: str, settings: Settings, store_address: StoreAddress, es) -> Iterator[DaskExecutor]:
    # a worker killed by an earlier test is back (its nanny restarts it)
    wait_for(lambda: len(worker_addresses(cluster)) >= WORKERS, 120, "2 Dask workers", interval=0.5)
    executor = DaskExecutor(cluster, settings.data_dir, grace=2.0, store=store_address)
    yield executor
    executor.close()


def new_spec(package, inputs: dict, settings: Settings, job_store: JobStore) -> RunSpec:
    return helpers.new_spec(package, inputs, settings.data_dir, SinkConfig.from_settings(settings), job_store)


def folder_on_workers(worker_dirs: list[Path], job_id: str) -> JobFolder | None:
    """The job's folder in whichever worker's data dir ran it."""
    found = [JobFolder(d, job_id) for d in worker_dirs if JobFolder(d, job_id).exists()]
    return found[-1] if found else None


def started(executor: DaskExecutor, job_id: str) -> tuple[str, int] | None:
    found = executor.running().get(job_id)
    return found if found and found[1] else None


def test_a_job_runs_in_its_workers_own_data_dir(executor, cluster, echo, settings, job_store, worker_dirs):
    spec = new_spec(echo, {"message": "in my own dir"}, settings, job_store)
    executor.submit(spec)
    assert executor.wait(spec.job_id, 120) == "succeeded"
    executor.close()  # the scheduler forgets the task: a new submission is a new task
    job_store.refresh()
    doc = job_store.get(spec.job_id)
    assert doc["status"] == "succeeded"
    # the job names its worker's lease as its host, and that lease is held in the store
    assert doc["host"].startswith("dask-worker-"), doc.get("host")
    lease = HostStore(job_store.client, settings).get([doc["host"]])[doc["host"]]
    assert lease is not None and lease.kind == "dask-worker" and lease.fresh(utcnow())
    folder = folder_on_workers(worker_dirs, spec.job_id)
    assert folder is not None, "the job ran in no worker's data dir"
    assert (folder.outputs / "out.txt").read_text() == "in my own dir\n"
    # the worker had no copy of the wrapped workflow: it wrote the one the task carried into its own cache
    assert (DataDir(folder.data_dir).wrapped_cache / spec.workflow_file.name).read_text() == \
        spec.workflow_file.read_text()
    assert not spec.folder.exists()  # nothing in the server's data dir
    assert folder.data_dir.stat().st_mode & 0o777 == 0o700  # the worker's data dir is its user's alone

    # the same job submitted again (a node that restarted): the task finds it ended in the store, does not run it
    again = DaskExecutor(cluster, settings.data_dir, grace=2.0,
                         store=StoreAddress.from_settings(settings))
    try:
        again.submit(spec)
        assert again.wait(spec.job_id, 60) == "succeeded"
    finally:
        again.close()
    assert len(folder.attempts()) == 1
    assert folder.read_log().count(" starts (process") == 1


def test_a_job_dismissed_from_another_node_stops_on_its_worker(executor, cluster, sleep, settings, job_store,
                                                               store_address, worker_dirs):
    spec = new_spec(sleep, {"seconds": 300}, settings, job_store)
    executor.submit(spec)
    _, pgid = wait_for(lambda: started(executor, spec.job_id), 120, "the job to start on a worker", interval=0.2)
    folder = wait_for(lambda: folder_on_workers(worker_dirs, spec.job_id), 10, "the job's folder on its worker")
    wait_for(lambda: processes_in(folder.work), 60, "the tool to run")
    # the scheduler holds a running task (a finished one it may forget at once): a lease sweep leaves the job to Dask
    assert executor.known_tasks([spec.job_id, "no-such-job"]) == {spec.job_id}
    other = DaskExecutor(cluster, None, grace=2.0, store=store_address)  # a node that never saw the job
    try:
        assert other.cancel(spec.job_id)  # reached the worker that holds it
    finally:
        other.close()
    job_store.apply(StatusUpdate(job_id=spec.job_id, status=Status.DISMISSED, message="dismissed on request"))
    assert executor.wait(spec.job_id, 60) == "dismissed"
    wait_for(lambda: groups.gone(pgid), 15, "the job's process group to be gone")
    assert not processes_in(folder.path)


def test_a_dismissal_while_the_submitting_node_is_gone_stops_the_job(cluster, sleep, settings, job_store,
                                                                     store_address, worker_dirs, es):
    """No broadcast reaches the worker: its own watch of the store (ades.jobs.dismissals) sees the dismissal."""
    submitter = DaskExecutor(cluster, settings.data_dir, grace=2.0, store=store_address)
    spec = new_spec(sleep, {"seconds": 300}, settings, job_store)
    submitter.submit(spec)
    _, pgid = wait_for(lambda: started(submitter, spec.job_id), 120, "the job to start on a worker", interval=0.2)
    submitter.close()  # its client goes without cancelling: the job runs on
    assert not groups.gone(pgid)
    job_store.apply(StatusUpdate(job_id=spec.job_id, status=Status.DISMISSED, message="dismissed on request"))
    wait_for(lambda: groups.gone(pgid), 30, "the job's process group to be gone")
    job_store.refresh()
    assert job_store.get(spec.job_id)["status"] == "dismissed"


def test_a_killed_worker_fails_its_job_with_the_reason(executor, sleep, settings, job_store, worker_dirs):
    spec = new_spec(sleep, {"seconds": 300}, settings, job_store)
    executor.submit(spec)
    worker, pgid = wait_for(lambda: started(executor, spec.job_id), 120, "the job to start", interval=0.2)
    os.kill(executor.client.run(os.getpid, workers=[worker])[worker], signal.SIGKILL)
    assert executor.wait(spec.job_id, 120) == "failed"
    wait_for(lambda: groups.gone(pgid), 15, "the job's process group to be gone")
    job_store.refresh()
    doc = job_store.get(spec.job_id)
    assert doc["status"] == "failed"
    assert f"the Dask worker running the job ({worker}) was lost" in doc["message"], doc["message"]
    assert "ADES_DASK_RETRY_LOST is off" in doc["message"]


SUBMITTER = textwrap.dedent("""
    import sys, time
    from ades.jobs.dask_checks import StoreAddress
    from ades.jobs.dask_server import DaskExecutor
    from ades.jobs.spec import RunSpec

    scheduler, store, specs = sys.argv[1], sys.argv[2], sys.argv[3:]
    executor = DaskExecutor(scheduler, None, store=StoreAddress.model_validate_json(store))
    keys = []
    for spec in specs:
        spec = RunSpec.model_validate_json(open(spec).read())
        executor.submit(spec)
        keys.append("ades-job-" + spec.job_id)

    def forgotten_by_none(keys, dask_scheduler=None):
        tasks = dask_scheduler.tasks
        return all(k in tasks and "fire-and-forget" in {c.client_key for c in tasks[k].who_wants} for k in keys)

    deadline = time.monotonic() + 30
    while not executor.client.run_on_scheduler(forgotten_by_none, keys):
        if time.monotonic() > deadline:
            print("the scheduler does not keep the jobs for their own sake", flush=True)
            sys.exit(1)
        time.sleep(0.05)
    print("submitted", flush=True)
    time.sleep(600)
""")


def test_queued_jobs_of_an_api_process_killed_9_run_to_the_end(cluster, echo, settings, job_store, store_address,
                                                               worker_dirs, es, tmp_path):
    """Paused store-wide (no worker shares a pause file with anyone), an API process submits jobs and is killed -9
    while they are queued; once resumed they all run, in the workers' dirs."""
    specs = [new_spec(echo, {"message": f"orphan {i}"}, settings, job_store) for i in range(4)]
    files = []
    for spec in specs:
        files.append(tmp_path / f"{spec.job_id}.json")
        files[-1].write_text(spec.model_dump_json())
    pause_store(es, settings.index_prefix, "test")
    try:
        api = subprocess.Popen([sys.executable, "-c", SUBMITTER, cluster, store_address.model_dump_json(),
                                *map(str, files)], stdout=subprocess.PIPE, text=True)
        assert api.stdout is not None
        said = api.stdout.readline().strip()
        assert said == "submitted", said
        api.send_signal(signal.SIGKILL)
        api.wait(10)
        with Client(cluster, set_as_default=False, timeout=10) as client:
            keys = {f"ades-job-{spec.job_id}" for spec in specs}
            # the scheduler keeps them after their client died; the workers hold two of them, paused
            wait_for(lambda: keys <= client.run_on_scheduler(lambda dask_scheduler: set(dask_scheduler.tasks)), 10,
                     "the scheduler to hold the jobs")
        assert set(job_store.statuses([s.job_id for s in specs]).values()) == {"submitted"}
    finally:
        resume_store(es, settings.index_prefix)

    def all_succeeded() -> bool:
        return set(job_store.statuses([s.job_id for s in specs]).values()) == {"succeeded"}

    wait_for(all_succeeded, 120, "every job to succeed", interval=0.5)
    for i, spec in enumerate(specs):
        folder = folder_on_workers(worker_dirs, spec.job_id)
        assert folder is not None and (folder.outputs / "out.txt").read_text() == f"orphan {i}\n"


def test_with_retry_a_killed_workers_job_runs_once_more_and_succeeds(cluster, gate, settings, job_store,
                                                                    store_address, worker_dirs, es, tmp_path):
    wait_for(lambda: len(worker_addresses(cluster)) >= WORKERS, 120, "2 Dask workers", interval=0.5)
    executor = DaskExecutor(cluster, settings.data_dir, retry_lost=True, grace=2.0, store=store_address)
    opened = helpers.gate_folder(tmp_path) / "gate"
    try:
        spec = helpers.new_spec(gate, {"gate": str(opened)}, settings.data_dir, SinkConfig.from_settings(settings),
                                job_store, readable=[opened.parent])
        executor.submit(spec)
        worker, pgid = wait_for(lambda: started(executor, spec.job_id), 120, "the job to start", interval=0.2)
        os.kill(executor.client.run(os.getpid, workers=[worker])[worker], signal.SIGKILL)
        # the second attempt, on the other worker or on the one its nanny restarted (a new address)
        wait_for(lambda: (found := started(executor, spec.job_id)) and found[0] != worker, 120,
                 "the second attempt to start", interval=0.2)
        wait_for(lambda: groups.gone(pgid), 15, "the first attempt's job to go with its worker")
        opened.touch()
        assert executor.wait(spec.job_id, 120) == "succeeded"
    finally:
        opened.touch()
        executor.close()
    logs = "".join(JobFolder(d, spec.job_id).read_log() for d in worker_dirs if JobFolder(d, spec.job_id).exists())
    assert f"({worker}) was lost; running the job again" in logs
    job_store.refresh()
    assert job_store.get(spec.job_id)["status"] == "succeeded"


def test_the_store_check_reads_the_jobs_status_and_the_pause_in_one_round_trip(echo, settings, job_store,
                                                                               store_address, es):
    spec = new_spec(echo, {"message": "checked"}, settings, job_store)
    assert check_store(store_address, spec.job_id) == StartCheck(status=Status.SUBMITTED)
    assert check_store(store_address, "no-such-job") == StartCheck()
    job_store.apply(StatusUpdate(job_id=spec.job_id, status=Status.DISMISSED, message="dismissed on request"))
    pause_store(es, settings.index_prefix, "upgrade")
    try:
        check = check_store(store_address, spec.job_id)
        assert check.status is Status.DISMISSED and check.paused is not None and check.paused.reason == "upgrade"
    finally:
        assert resume_store(es, settings.index_prefix)
    assert check_store(store_address, spec.job_id).paused is None
