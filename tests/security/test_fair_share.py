"""One user starving everyone, tried against a real server with auth on (a tokens file), real ES and cwltool.

- A backlog of one user held every other user's job `accepted` until it drained (first in, first out): now jobs
  start in a fair order across users (ades.jobs.fairshare).
- Synchronous executes held a request thread each, as many as a user sent: now past a per-user cap (on by default
  with auth) a request that may be answered asynchronously gets a job (201 + Location), and one that may not gets
  429.
- Submissions near the body limit that came together were one bulk request too large for Elasticsearch, and all
  failed: now a group commit is sent in bulks capped by bytes.
- A job could write as much as the disk takes: now past a per-job cap (ADES_MAX_OUTPUT_BYTES) it fails with the
  reason, stopped while it runs.
- Jobs filled the data dir's disk, which the local Elasticsearch shares with its disk watermarks off: now new jobs
  get 503 while the disk is short of free space, and the local node keeps its watermarks on.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from datetime import datetime
from pathlib import Path
from typing import Any

import pytest
import requests
import yaml

from ades.config import DEFAULT_RUNNING_JOBS_PER_USER, Settings
from ades.jobs.admission import free_bytes
from ades.jobs.folder import JobFolder
from ades.jobs.lifecycle import HostState
from ades.jobs.pause import pause, resume
from ades.models import Job
from ades.services import elasticsearch
from tests.e2e.conftest import LiveServer, serve_app
from tests.helpers import GATE_CWL, assert_problem, journaled_jobs, store_jobs, wait_for

pytestmark = pytest.mark.integration

TOKENS = {"alice-token": {"user": "alice"}, "bob-token": {"user": "bob"}, "carol-token": {"user": "carol"},
          "dave-token": {"user": "dave", "roles": ["deployer"]}}
ALICE, BOB, CAROL, DAVE = ({"Authorization": f"Bearer {name}-token"} for name in ("alice", "bob", "carol", "dave"))
ASYNC = {"Prefer": "respond-async"}
BACKLOG = 10
WRITER = """\
cwlVersion: v1.2
class: CommandLineTool
id: writer
doc: Writes `size` bytes into an output file, then, if `forever` is "yes", goes on writing a megabyte every 50 ms.
baseCommand: [sh, -c]
arguments:
  - 'head -c "$0" /dev/zero > big.bin; while [ "$1" = yes ]; do head -c 1000000 /dev/zero >> big.bin; sleep 0.05;
     done'
  - $(inputs.size)
  - $(inputs.forever)
inputs:
  size: int
  forever: string
outputs:
  big: {type: File, outputBinding: {glob: big.bin}}
"""
LARGE = 12


@pytest.fixture(scope="module")
def server(es_url: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[LiveServer]:
    root = tmp_path_factory.mktemp("fair")
    tokens = root / "tokens.yaml"
    tokens.write_text(yaml.safe_dump(TOKENS), encoding="utf-8")
    # no sandbox: the gate job waits for a file of this test, which a sandboxed tool could not see
    settings = Settings(es_url=es_url, index_prefix=f"sec-fair-{uuid.uuid4().hex[:8]}-", data_dir=root / "data",
                        event_sink="direct", auth_tokens_file=tokens, sandbox="none")
    for live in serve_app(settings, workers=1):
        deployed = live.post("/processes", data=GATE_CWL, headers={"Content-Type": "application/cwl+yaml", **DAVE})
        assert deployed.status_code == 201, deployed.text
        yield live


def _echo(server: LiveServer, user: dict[str, str], message: str) -> str:
    answer = server.post("/processes/echo/execution", json={"inputs": {"message": message}}, headers={**user, **ASYNC})
    assert answer.status_code == 201, answer.text
    return answer.json()["jobID"]


def _started(server: LiveServer, job_id: str, user: dict[str, str]) -> datetime | None:
    info = server.get(f"/jobs/{job_id}", headers=user).json()
    return datetime.fromisoformat(info["started"]) if info.get("started") else None


def test_a_backlog_of_one_user_does_not_hold_back_another_users_job(server: LiveServer) -> None:
    data_dir = Path(server.settings.data_dir)
    table = server.context.jobs.table
    pause(data_dir, "a backlog gathers")
    try:
        backlog = [_echo(server, ALICE, f"alice {i}") for i in range(BACKLOG)]
        # the one job worker took alice's first job and holds it; the rest of her jobs wait in the queue
        assert table.wait_for(backlog[0], 30, HostState.HELD)
        bobs = _echo(server, BOB, "bob")
    finally:
        resume(data_dir)
    assert server.wait_status(bobs, headers=BOB, timeout=120)["status"] == "successful"
    bob_started = _started(server, bobs, BOB)
    assert bob_started is not None
    ahead = [job for job in backlog if (at := _started(server, job, ALICE)) is not None and at < bob_started]
    # first in, first out started all ten of alice's jobs before bob's; fair turns start bob's right after the one
    # alice's worker held
    assert ahead == backlog[:1], f"{len(ahead)} of alice's {BACKLOG} jobs started before bob's"
    for job in backlog:
        assert server.wait_status(job, headers=ALICE, timeout=120)["status"] == "successful"


def _sync(server: LiveServer, body: dict[str, Any], user: dict[str, str]) -> requests.Response:
    return server.post("/processes/gate/execution", json=body, headers=user)


def test_sync_executes_past_the_per_user_cap_become_jobs_or_429(server: LiveServer, tmp_path: Path) -> None:
    cap = server.settings.sync_executes_cap
    assert cap > 0, "with auth on, the cap is on without being set"
    gate = tmp_path / "gate"
    body = {"inputs": {"gate": str(gate)}}
    pool = ThreadPoolExecutor(cap + 2)
    try:
        held: list[Future[requests.Response]] = [pool.submit(_sync, server, body, ALICE) for _ in range(cap + 2)]

        def answered() -> list[requests.Response]:
            done = [future.result() for future in held if future.done()]
            return done if len(done) >= 2 else []

        # while the gate is shut no job can end: whatever is answered now was answered without holding a thread
        early = wait_for(answered, 30, "the sync executes past the cap to be answered at once")
        for answer in early:
            assert answer.status_code == 201, answer.text
            assert answer.headers["Location"].endswith(f"/jobs/{answer.json()['jobID']}")
            assert answer.json()["status"] in ("accepted", "running")
        before = journaled_jobs(server.settings.data_dir)
        # a request that must be answered synchronously cannot become a job: 429, nothing written
        for must_wait in ({**body, "mode": "sync"}, {**body, "response": "raw"}):
            refused = _sync(server, must_wait, ALICE)
            detail = assert_problem(refused, 429, "too-many-sync-executes")["detail"]
            assert "ADES_MAX_SYNC_EXECUTES_PER_USER" in detail and "respond-async" in detail, detail
            assert refused.headers["Retry-After"]
        assert journaled_jobs(server.settings.data_dir) == before
        # the cap is alice's: bob's synchronous execute is taken and held as usual
        bobs = pool.submit(_sync, server, body, BOB)
        wait_for(lambda: len(server.context.jobs.table.in_state(HostState.QUEUED, HostState.STARTED)) >= cap + 3,
                 30, "bob's job to be queued")
        assert not bobs.done()
    finally:
        gate.touch()
        pool.shutdown(wait=True)
    answers = sorted((future.result() for future in held), key=lambda answer: answer.status_code)
    assert [answer.status_code for answer in answers] == [200] * cap + [201] * 2, [a.text for a in answers]
    assert bobs.result().status_code == 200


@pytest.fixture(scope="module")
def short_of_disk(es_url: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[LiveServer]:
    root = tmp_path_factory.mktemp("disk")
    # more free space asked than the disk has: the server is as if its disk were full
    settings = Settings(es_url=es_url, index_prefix=f"sec-disk-{uuid.uuid4().hex[:8]}-", data_dir=root / "data",
                        event_sink="direct", min_free_disk_bytes=free_bytes(root) + 2**40)
    yield from serve_app(settings, workers=1)


def test_no_new_job_while_the_data_disk_is_short_of_space(short_of_disk: LiveServer) -> None:
    server = short_of_disk
    for path, body in (("/processes/echo/execution", {"inputs": {"message": "x"}}),
                       ("/processes/echo/jobs", {"inputs": [{"id": "message", "data": "x"}]})):
        for headers in (ASYNC, {}):
            refused = server.post(path, json=body, headers=headers)
            detail = assert_problem(refused, 503, "insufficient-storage")["detail"]
            assert "ADES_MIN_FREE_DISK_BYTES" in detail and "bytes free" in detail, detail
            assert int(refused.headers["Retry-After"]) > 0
    assert journaled_jobs(server.settings.data_dir) == 0
    assert server.get("/jobs").json()["jobs"] == []
    assert server.get("/processes").status_code == 200  # reading goes on


def test_with_auth_a_user_has_a_cap_on_unfinished_jobs_without_setting_one(server: LiveServer) -> None:
    cap = server.settings.running_jobs_cap
    assert server.settings.max_running_jobs_per_user is None and cap == DEFAULT_RUNNING_JOBS_PER_USER
    # carol's earlier jobs, unfinished (as submissions store them, without a thousand requests; before her first
    # request, which counts them)
    earlier = [Job(process_id="echo", process_version="1.0.0", inputs={"message": f"{i}"}, user_id="carol")
               for i in range(cap - 1)]
    store_jobs(server.context.job_store, earlier)
    assert _later(server, CAROL).status_code == 201
    before = journaled_jobs(server.settings.data_dir)
    detail = assert_problem(_later(server, CAROL), 429, "too-many-jobs")["detail"]
    assert f"limit is {cap}" in detail and "ADES_MAX_RUNNING_JOBS_PER_USER" in detail, detail
    assert journaled_jobs(server.settings.data_dir) == before
    assert _later(server, ALICE).status_code == 201  # another user is not held back by carol's jobs


def _later(server: LiveServer, user: dict[str, str]) -> requests.Response:
    # a delayed job stays `submitted` (unfinished) without running anything
    return server.post("/processes/echo/execution", json={"inputs": {"message": "later"}, "delay": 600},
                       headers={**user, **ASYNC})


def test_concurrent_large_submissions_are_all_stored(server: LiveServer) -> None:
    """A group commit holds every submission that came meanwhile: 12 of nearly 10 MiB each (the body limit) in one
    bulk request were over Elasticsearch's 100 MB request limit (413), or its heap's (429), and the whole batch
    failed."""
    message = "x" * (server.settings.max_body_bytes - 4096)

    def submit(i: int) -> requests.Response:
        return server.post("/processes/echo/execution", json={"inputs": {"message": message}, "labels": [f"big {i}"],
                                                               "delay": 600}, headers={**ALICE, **ASYNC})

    with ThreadPoolExecutor(LARGE) as pool:
        answers = list(pool.map(submit, range(LARGE)))
    assert [answer.status_code for answer in answers] == [201] * LARGE, [a.text[:300] for a in answers]
    for answer in answers:
        assert server.get(f"/jobs/{answer.json()['jobID']}", headers=ALICE).json()["labels"]


@pytest.fixture(scope="module")
def capped(es_url: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[LiveServer]:
    root = tmp_path_factory.mktemp("capped")
    settings = Settings(es_url=es_url, index_prefix=f"sec-out-{uuid.uuid4().hex[:8]}-", data_dir=root / "data",
                        event_sink="direct", max_output_bytes=2_000_000, job_timeout=120)
    for live in serve_app(settings, workers=1):
        deployed = live.post("/processes", data=WRITER, headers={"Content-Type": "application/cwl+yaml"})
        assert deployed.status_code == 201, deployed.text
        yield live


@pytest.mark.parametrize(("megabytes", "forever", "what"), [(1, False, None), (5, False, "it failed"),
                                                             (1, True, "it was stopped")])
def test_a_job_writing_more_than_its_cap_fails_with_the_reason(capped: LiveServer, megabytes: int, forever: bool,
                                                               what: str | None) -> None:
    inputs = {"size": megabytes * 1_000_000, "forever": "yes" if forever else "no"}
    answer = capped.post("/processes/writer/execution", json={"inputs": inputs}, headers=ASYNC)
    assert answer.status_code == 201, answer.text
    job_id = answer.json()["jobID"]
    info = capped.wait_status(job_id, timeout=60)
    folder = JobFolder(capped.settings.data_dir, job_id)
    if what is None:  # under the cap
        assert info["status"] == "successful", info
        assert (folder.outputs / "big.bin").stat().st_size == 1_000_000
        return
    assert info["status"] == "failed", info
    assert f"over the limit of 2,000,000 bytes per job (ADES_MAX_OUTPUT_BYTES); {what}" in info["message"], info
    assert folder.written_bytes() < 2_000_000  # its files are gone, its log stays
    assert f"(ADES_MAX_OUTPUT_BYTES); {what}" in capped.get(f"/jobs/{job_id}/logs").text


def test_the_local_elasticsearch_runs_with_its_disk_watermarks_on(spare_node: Settings) -> None:
    """The node `ades services start` runs shares its disk with the jobs: with its watermarks off, a full disk
    corrupts its indices instead of turning them read-only first."""
    url = elasticsearch.ensure_running(spare_node)
    config = (elasticsearch.node_paths(spare_node).config / "elasticsearch.yml").read_text()
    assert "cluster.routing.allocation.disk.threshold_enabled: true" in config
    nodes = requests.get(f"{url}/_nodes/settings?flat_settings=true", timeout=30).json()["nodes"]
    [node] = nodes.values()
    assert node["settings"]["cluster.routing.allocation.disk.threshold_enabled"] == "true"
    defaults = requests.get(f"{url}/_cluster/settings?include_defaults=true&flat_settings=true",
                            timeout=30).json()["defaults"]
    assert defaults["cluster.routing.allocation.disk.watermark.flood_stage"] == "95%"
