"""Many hosts, no shared disk (issue 23's acceptance): two API nodes (`ades serve`, own ports and data dirs) and two
Dask workers (`ades dask worker --data-dir`, own data dirs) share only Elasticsearch, moto (S3 for outputs, SNS ->
SQS -> `ades consumer` for status) and the Dask scheduler.

- a job submitted on node 1 is followed, its live log read and its results downloaded on node 2;
- a job dismissed through node 2 stops on its worker;
- node 1 killed (-9) while its jobs run: node 2 keeps serving, the jobs finish and are visible there;
- a worker killed (-9) under its job: the job fails with the reason, nothing of it stays running;
- node 1 restarted: it touches no job that lives elsewhere (a job node 2 sent to a worker runs on undisturbed).
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
import requests
from distributed import Client

from ades.config import Settings
from ades.jobs import groups
from ades.jobs.dask_worker import running_here
from ades.jobs.folder import DataDir, JobFolder
from ades.jobs.journal import read_entries
from tests.conftest import free_port
from tests.helpers import gate_folder, wait_for
from tests.integration.conftest import start_serve

pytestmark = pytest.mark.integration

GATED = """
cwlVersion: v1.2
class: CommandLineTool
id: gated
baseCommand: [sh, -c]
arguments:
  - echo "before the gate" >&2; while [ ! -e "$0" ]; do sleep 0.05; done; echo "after the gate" >&2;
    echo "made behind the gate" > out.txt
  - $(inputs.gate)
inputs:
  gate: string
outputs:
  out: {type: File, outputBinding: {glob: out.txt}}
"""
ASYNC = {"Prefer": "respond-async"}


@dataclass
class Node:
    url: str
    data_dir: Path
    port: int
    env: dict[str, str]
    log: Path
    proc: subprocess.Popen | None = None

    def start(self) -> None:
        self.proc = start_serve(self.env, self.port, self.log)

    def kill(self) -> None:
        assert self.proc is not None
        os.killpg(self.proc.pid, signal.SIGKILL)
        self.proc.wait(10)

    def get(self, path: str, **kw) -> requests.Response:
        return requests.get(self.url + path, timeout=30, **kw)

    def status(self, job_id: str) -> str:
        return self.get(f"/jobs/{job_id}").json()["status"]

    def submit(self, gate: Path) -> str:
        created = requests.post(f"{self.url}/processes/gated/execution", json={"inputs": {"gate": str(gate)}},
                                headers=ASYNC, timeout=30)
        assert created.status_code == 201, created.text
        return created.json()["jobID"]

    def journaled(self) -> set[str]:
        return {i for p in DataDir(self.data_dir).journals.glob("*.jsonl") for i in read_entries(p)}


@dataclass
class Layout:
    nodes: tuple[Node, Node]
    scheduler: str
    worker_dirs: list[Path]
    gates: Path

    def folder(self, job_id: str) -> JobFolder | None:
        found = [JobFolder(d, job_id) for d in self.worker_dirs if JobFolder(d, job_id).exists()]
        return found[-1] if found else None

    def running_anywhere(self, job_id: str) -> bool:
        return any(groups.working_in(JobFolder(d, job_id).path) for d in self.worker_dirs)

    def gate(self) -> Path:
        return self.gates / f"gate-{uuid.uuid4().hex[:8]}"


def _spawn(command: list[str], env: dict[str, str], log: Path, procs: list[subprocess.Popen]) -> None:
    with log.open("ab") as out:
        procs.append(subprocess.Popen(command, env=env, stdout=out, stderr=subprocess.STDOUT,
                                      stdin=subprocess.DEVNULL, start_new_session=True, cwd=log.parent))


def _workers(url: str) -> list[str]:
    with Client(url, set_as_default=False, timeout=10) as client:
        return sorted(client.scheduler_info(n_workers=-1)["workers"])


@pytest.fixture
def layout(aws_settings: Settings, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Layout]:
    root = tmp_path_factory.mktemp("many-hosts")
    gates = gate_folder(root)
    worker_dirs = [root / f"worker{i}" / "data" for i in range(2)]
    port = free_port()
    scheduler = f"tcp://127.0.0.1:{port}"
    bucket = f"ades-many-{uuid.uuid4().hex[:10]}"
    common = {k: v for k, v in os.environ.items() if not k.startswith("ADES_")}
    common.update({
        "ADES_ES_URL": aws_settings.elasticsearch_url, "ADES_INDEX_PREFIX": aws_settings.index_prefix,
        "ADES_AWS_ENDPOINT_URL": str(aws_settings.aws_endpoint_url),
        "ADES_SNS_TOPIC_ARN": str(aws_settings.sns_topic_arn), "ADES_SQS_QUEUE_URL": str(aws_settings.sqs_queue_url),
        "ADES_EVENT_SINK": "sns", "ADES_OUTPUT_STORAGE": "s3", "ADES_OUTPUT_BUCKET": bucket,
        "ADES_LOG_STORE": "elasticsearch", "ADES_EXECUTOR": "dask", "ADES_DASK_SCHEDULER": scheduler,
        "ADES_HOST_LEASE": "3", "ADES_SANDBOX_READ_ONLY": json.dumps([str(gates)]),
        "ADES_ANONYMOUS_ROLES": '["deployer"]',  # the package is deployed without auth
    })
    ades = [sys.executable, "-m", "ades.cli"]
    procs: list[subprocess.Popen] = []
    nodes: list[Node] = []
    try:
        _spawn([*ades, "dask", "scheduler", "--port", str(port)], common, root / "scheduler.log", procs)
        for data in worker_dirs:
            data.parent.mkdir(parents=True)
            _spawn([*ades, "dask", "worker", "--scheduler", scheduler, "--nworkers", "1", "--data-dir", str(data)],
                   common, data.parent / "worker.log", procs)
        _spawn([*ades, "consumer", "--wait", "1"], {**common, "ADES_DATA_DIR": str(root / "consumer")},
               root / "consumer.log", procs)
        wait_for(lambda: len(_workers(scheduler)) == 2, 120, "two Dask workers", interval=0.5)
        for i in (1, 2):
            node_port = free_port()
            data = root / f"node{i}" / "data"
            data.parent.mkdir()
            node = Node(f"http://127.0.0.1:{node_port}", data, node_port, {**common, "ADES_DATA_DIR": str(data)},
                        data.parent / "serve.log")
            node.start()
            nodes.append(node)
        deployed = requests.post(f"{nodes[0].url}/processes", data=GATED, timeout=30,
                                 headers={"Content-Type": "application/cwl+yaml"})
        assert deployed.status_code == 201, deployed.text
        yield Layout((nodes[0], nodes[1]), scheduler, worker_dirs, gates)
    finally:
        for node in nodes:
            if node.proc is not None and node.proc.poll() is None:
                groups.stop(node.proc.pid, 10)
        for proc in reversed(procs):
            groups.stop(proc.pid, 20)
            proc.wait(5)


def test_two_api_nodes_and_two_workers_share_no_disk(layout: Layout) -> None:
    one, two = layout.nodes

    # submitted on node 1; followed, its live log read and its results downloaded on node 2
    gate = layout.gate()
    followed = one.submit(gate)
    wait_for(lambda: "before the gate" in two.get(f"/jobs/{followed}/logs").text, 60, "node 2 to read the live log")
    assert two.status(followed) == "running"
    folder = layout.folder(followed)
    assert folder is not None and not (one.data_dir / "jobs" / followed).exists()
    assert not (two.data_dir / "jobs" / followed).exists()
    gate.touch()
    wait_for(lambda: two.status(followed) == "successful", 60, "node 2 to see the job succeed")
    assert two.get(f"/jobs/{followed}/results/out").text == "made behind the gate\n"
    assert "after the gate" in two.get(f"/jobs/{followed}/logs").text

    # dismissed through node 2: stops on its worker
    never = layout.gate()
    dismissed = one.submit(never)
    wait_for(lambda: layout.running_anywhere(dismissed), 60, "the job to run on a worker")
    assert requests.delete(f"{two.url}/jobs/{dismissed}", timeout=30).json()["status"] == "dismissed"
    wait_for(lambda: not layout.running_anywhere(dismissed), 30, "its worker to stop the dismissed job")

    # node 1 killed while its jobs run: node 2 serves, the jobs finish and are visible there
    gates = [layout.gate(), layout.gate()]
    orphans = [one.submit(g) for g in gates]
    wait_for(lambda: all(layout.running_anywhere(j) for j in orphans), 60, "node 1's jobs to run")
    one.kill()
    for g in gates:
        g.touch()
    for job_id in orphans:
        wait_for(lambda job_id=job_id: two.status(job_id) == "successful", 60, "node 1's jobs to finish")
        assert two.get(f"/jobs/{job_id}/results/out").text == "made behind the gate\n"

    # a worker killed under its job: the job fails with the reason, nothing of it stays running
    lost = two.submit(layout.gate())
    wait_for(lambda: layout.running_anywhere(lost), 60, "the job to run on a worker")
    with Client(layout.scheduler, set_as_default=False, timeout=10) as client:
        (worker,) = [w for w, jobs in client.run(running_here).items() if lost in jobs]
        os.kill(client.run(os.getpid, workers=[worker])[worker], signal.SIGKILL)
    wait_for(lambda: two.status(lost) == "failed", 90, "the lost worker's job to fail")
    assert "was lost" in two.get(f"/jobs/{lost}").json()["message"]
    wait_for(lambda: not layout.running_anywhere(lost), 30, "nothing of the lost job to run")

    # node 1 restarted: it leaves a job node 2 sent to a worker, and drops what ended meanwhile from its journal
    elsewhere_gate = layout.gate()
    elsewhere = two.submit(elsewhere_gate)
    wait_for(lambda: layout.running_anywhere(elsewhere), 60, "node 2's job to run on a worker")
    one.start()
    wait_for(lambda: not one.journaled() & {followed, dismissed, *orphans}, 60, "node 1 to settle its journal")
    assert one.status(elsewhere) == "running" and layout.running_anywhere(elsewhere)
    assert not (one.data_dir / "jobs" / elsewhere).exists()
    elsewhere_gate.touch()
    wait_for(lambda: one.status(elsewhere) == "successful", 60, "node 2's job to finish")
    for job_id, status in ((followed, "successful"), (dismissed, "dismissed"), (lost, "failed"),
                           *((j, "successful") for j in orphans)):
        assert one.status(job_id) == status, job_id
