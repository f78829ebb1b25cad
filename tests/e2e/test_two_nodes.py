"""Two API nodes with their own data dirs and one Elasticsearch (ADES_LOG_STORE=elasticsearch), each running jobs on
its own workers: node B, which never sees A's disk, reads the log of a job running on A while it runs, follows it
to its end and reads it whole after (what A has on disk); a job on A dismissed through B stops on A."""

from __future__ import annotations

import threading
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from ades.config import Settings
from ades.jobs import groups
from tests.e2e.conftest import LiveServer, serve_app
from tests.helpers import assert_problem, gate_folder, wait_for

pytestmark = pytest.mark.integration

CHATTY = """
cwlVersion: v1.2
class: CommandLineTool
id: chatty-gate
baseCommand: [sh, -c]
arguments: ['echo "before the gate" >&2; while [ ! -e "$0" ]; do sleep 0.05; done; echo "after the gate 🛰" >&2',
            $(inputs.gate)]
inputs:
  gate: string
outputs: {}
"""


@pytest.fixture(scope="module")
def gates(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return gate_folder(tmp_path_factory.mktemp("log-gates"))


@pytest.fixture(scope="module")
def nodes(es_url: str, gates: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[LiveServer,
                                                                                                     LiveServer]]:
    prefix = f"e2e-{uuid.uuid4().hex[:10]}-"

    def settings(name: str) -> Settings:
        return Settings(es_url=es_url, index_prefix=prefix, data_dir=tmp_path_factory.mktemp(name) / "data",
                        event_sink="direct", log_store="elasticsearch", sandbox_read_only=[gates])

    a_nodes, b_nodes = serve_app(settings("node-a")), serve_app(settings("node-b"))
    a, b = next(a_nodes), next(b_nodes)
    try:
        yield a, b
    finally:
        for node in (b_nodes, a_nodes):
            next(node, None)


def test_a_job_on_one_node_has_its_log_read_and_followed_on_another(nodes, gates: Path) -> None:
    a, b = nodes
    deployed = a.post("/processes", data=CHATTY, headers={"Content-Type": "application/cwl+yaml"})
    assert deployed.status_code == 201, deployed.text
    gate = gates / f"gate-{uuid.uuid4().hex[:8]}"
    created = a.post("/processes/chatty-gate/execution", json={"inputs": {"gate": str(gate)}},
                     headers={"Prefer": "respond-async"})
    assert created.status_code == 201, created.text
    job_id = created.json()["jobID"]
    assert not (b.settings.data_dir / "jobs" / job_id).exists()

    # live, on the other node: the first line while the job waits at its gate
    wait_for(lambda: "before the gate" in b.get(f"/jobs/{job_id}/logs").text, 30, "node B to see the live log")
    assert b.get(f"/jobs/{job_id}").json()["status"] == "running"
    seen = b.get(f"/jobs/{job_id}/logs")
    offset = int(seen.headers["Ades-Log-Offset"])
    assert offset == len(seen.text.encode())

    followed: list[str] = []
    follower = threading.Thread(target=lambda: followed.append(
        b.get(f"/jobs/{job_id}/logs", params={"follow": "true", "offset": offset, "timeout": 60}).text))
    follower.start()
    gate.touch()
    follower.join(90)
    assert not follower.is_alive() and b.get(f"/jobs/{job_id}").json()["status"] == "successful"

    on_disk = (a.settings.data_dir / "jobs" / job_id / "job.log").read_text()
    assert "after the gate 🛰" in followed[0]
    assert seen.text + followed[0] == on_disk  # the follower ends once the last lines are in, nothing lost
    assert b.get(f"/jobs/{job_id}/logs").text == on_disk == a.get(f"/jobs/{job_id}/logs").text
    assert b.get(f"/jobs/{job_id}/logs", params={"tail": 1}).text == on_disk.splitlines(keepends=True)[-1]
    assert_problem(b.get(f"/jobs/{job_id}/logs", params={"tail": 0}), 400, "invalid-parameter")
    assert_problem(b.get(f"/jobs/{job_id}/logs", params={"follow": "maybe"}), 400, "invalid-parameter")


def test_a_job_dismissed_through_another_node_stops_where_it_runs(nodes, gates: Path) -> None:
    a, b = nodes
    assert a.post("/processes", data=CHATTY, headers={"Content-Type": "application/cwl+yaml"}).status_code in (201,
                                                                                                                409)
    gate = gates / f"never-{uuid.uuid4().hex[:8]}"  # never opened: only a dismissal ends this job
    job_id = a.post("/processes/chatty-gate/execution", json={"inputs": {"gate": str(gate)}},
                    headers={"Prefer": "respond-async"}).json()["jobID"]
    folder = a.settings.data_dir / "jobs" / job_id
    wait_for(lambda: groups.working_in(folder), 30, "the job's processes to run on node A")
    dismissed = b.delete(f"/jobs/{job_id}")
    assert dismissed.status_code == 200 and dismissed.json()["status"] == "dismissed", dismissed.text
    wait_for(lambda: not groups.working_in(folder), 30, "node A to stop the job dismissed through node B")
    assert a.get(f"/jobs/{job_id}").json()["status"] == "dismissed"
