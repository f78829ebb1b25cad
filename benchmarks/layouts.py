"""Two layouts of ades on this host, the same echo jobs submitted over HTTP to each, in the same run:

- `single_node`: today's single node: one `ades serve` (its own warm job workers), outputs and logs on its disk;
- `two_nodes_two_workers`: two `ades serve` (own data dirs, ADES_EXECUTOR=dask) and a Dask scheduler with two
  `ades dask worker --data-dir` (own data dirs); outputs in S3 (the local moto server) with their results manifest,
  logs shipped to Elasticsearch, host leases beaten: nothing on a shared disk.

Both send status straight to Elasticsearch (the event path is not what differs). The clock runs from the first
submission until Elasticsearch holds every job `succeeded`; CPU is counted from /proc for every process of the layout
(servers, workers, scheduler, their children) and for the shared Elasticsearch node and moto server, as deltas over
the run, so it is comparable on a shared host where wall rates are not. The figure that matters is the CPU per
completed job of each layout and their ratio: what leaving the shared disk costs.

Used by benchmarks/throughput.py (`--layouts-only`, `--layout-jobs`).
"""

from __future__ import annotations

import os
import subprocess
import sys
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import ExitStack, contextmanager
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import requests
from common import cpu_seconds, listening_pid, process_tree, wait_until_up
from throughput import dask_cluster, succeeded_in_store

from ades.config import Settings
from ades.jobs import groups
from ades.store import make_client

WARM_UP = 6
SUBMITTERS = 8


def _free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@contextmanager
def _serve(env: dict[str, str], log: Path) -> Iterator[tuple[str, int]]:
    """`ades serve` (1 server process) with `env`; (its URL, its pid)."""
    port = _free_port()
    url = f"http://127.0.0.1:{port}"
    env = env | {"ADES_PUBLIC_URL": url}
    log.parent.mkdir(parents=True, exist_ok=True)
    with log.open("ab") as out:
        proc = subprocess.Popen([sys.executable, "-m", "ades.cli", "-q", "serve", "--port", str(port), "--workers",
                                 "1", "--job-workers", "2", "--no-access-log"], env=env, stdout=out,
                                stderr=subprocess.STDOUT, start_new_session=True)
    try:
        wait_until_up(f"{url}/processes", proc, 90)
        yield url, proc.pid
    finally:
        groups.stop(proc.pid, 20)
        proc.wait(10)


def _submit_all(urls: list[str], jobs: int, tag: str) -> None:
    session = requests.Session()
    session.trust_env = False

    def one(i: int) -> None:
        answer = session.post(f"{urls[i % len(urls)]}/processes/echo/execution", timeout=60,
                              json={"inputs": {"message": f"{tag} {i}"}}, headers={"Prefer": "respond-async"})
        answer.raise_for_status()

    with ThreadPoolExecutor(SUBMITTERS) as pool:
        list(pool.map(one, range(jobs)))


def _run(settings: Settings, urls: list[str], pids: list[int], jobs: int) -> dict[str, Any]:
    """Warm up, then submit `jobs` echo jobs round robin and wait for all to succeed; wall time and CPU."""
    _submit_all(urls, WARM_UP, "warm-up")
    deadline = time.monotonic() + 300
    while succeeded_in_store(settings) < WARM_UP:
        if time.monotonic() > deadline:
            raise RuntimeError("the warm-up jobs did not finish")
        time.sleep(0.5)
    shared = [p for p in (listening_pid(urlsplit(settings.elasticsearch_url).port or 9200),
                          listening_pid(urlsplit(settings.aws_endpoint_url or "").port or 0)) if p]

    def layout_cpu() -> float:
        return cpu_seconds(sorted({p for pid in pids for p in process_tree(pid)}))

    before, shared_before = layout_cpu(), cpu_seconds(shared)
    started = time.perf_counter()
    _submit_all(urls, jobs, "hello")
    deadline = time.monotonic() + 60 + jobs * 2
    while succeeded_in_store(settings) < WARM_UP + jobs:
        if time.monotonic() > deadline:
            raise RuntimeError(f"only {succeeded_in_store(settings) - WARM_UP} of {jobs} jobs succeeded in time")
        time.sleep(0.2)
    seconds = time.perf_counter() - started
    ades_cpu, shared_cpu = layout_cpu() - before, cpu_seconds(shared) - shared_before
    return {"jobs": jobs, "seconds": round(seconds, 2), "jobs_per_s": round(jobs / seconds, 2),
            "cpu_ms_per_job": {"ades": round(ades_cpu * 1000 / jobs, 1),
                               "elasticsearch_and_moto": round(shared_cpu * 1000 / jobs, 1),
                               "total": round((ades_cpu + shared_cpu) * 1000 / jobs, 1)}}


def _env(settings: Settings, data_dir: Path, **extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("ADES_")}
    return env | {"ADES_ES_URL": settings.elasticsearch_url, "ADES_INDEX_PREFIX": settings.index_prefix,
                  "ADES_EVENT_SINK": "direct", "ADES_DATA_DIR": str(data_dir)} | extra


def single_node(settings: Settings, root: Path, jobs: int) -> dict[str, Any]:
    with _serve(_env(settings, root / "node"), root / "single.log") as (url, pid):
        return _run(settings, [url], [pid], jobs)


def two_nodes_two_workers(settings: Settings, root: Path, jobs: int) -> dict[str, Any]:
    worker_dirs = [root / f"worker{i}" for i in range(2)]
    extra = {"ADES_EXECUTOR": "dask", "ADES_OUTPUT_STORAGE": "s3", "ADES_OUTPUT_BUCKET": "ades-bench-layouts",
             "ADES_AWS_ENDPOINT_URL": str(settings.aws_endpoint_url), "ADES_LOG_STORE": "elasticsearch"}
    logs = root / "dask-logs"
    logs.mkdir(parents=True)
    with dask_cluster(2, 1, logs, data_dirs=worker_dirs) as scheduler, ExitStack() as stack:
        nodes = [stack.enter_context(_serve(_env(settings, root / f"node{i}", ADES_DASK_SCHEDULER=scheduler,
                                                 **extra), root / f"node{i}.log")) for i in range(2)]
        # the cluster's processes: every process whose command line names the scheduler's address or its port
        cluster = [int(p) for p in os.listdir("/proc") if p.isdigit() and _names(int(p), scheduler)]
        return _run(settings, [url for url, _ in nodes], [pid for _, pid in nodes] + cluster, jobs)


def _names(pid: int, scheduler: str) -> bool:
    try:
        command = Path(f"/proc/{pid}/cmdline").read_bytes().decode(errors="replace")
    except OSError:
        return False
    port = scheduler.rsplit(":", 1)[1]
    scheduler_itself = ("dask_scheduler" in command or "scheduler\0" in command) and f"\0{port}" in command
    return scheduler in command or scheduler_itself


def measure_layouts(base: Settings, root: Path, jobs: int) -> dict[str, Any]:
    """Both layouts, one after the other, each on indexes of its own; the ratio of their CPU per job."""
    from ades.store.setup import drop_indexes

    figures: dict[str, Any] = {}
    for name, run in (("single_node", single_node), ("two_nodes_two_workers", two_nodes_two_workers)):
        settings = base.model_copy(update={"index_prefix": f"bench-layouts-{name}-", "event_sink": "direct"})
        client = make_client(settings)
        drop_indexes(client, settings)
        client.close()
        figures[name] = run(settings, root / name, jobs)
    single, spread = figures["single_node"], figures["two_nodes_two_workers"]
    figures["cpu_per_job_ratio"] = {
        key: round(spread["cpu_ms_per_job"][key] / single["cpu_ms_per_job"][key], 2)
        for key in ("ades", "total") if single["cpu_ms_per_job"][key]}
    figures["jobs_per_s_ratio"] = round(spread["jobs_per_s"] / single["jobs_per_s"], 2)
    return figures
