"""Echo job throughput: N echo jobs handed to an executor at once and run to completion, with the local executor
(warm worker processes) and the Dask executor (a scheduler and workers on 127.0.0.1, `ades dask scheduler|worker`),
beside bare `cwltool` CLI runs in sequence, all in the same run. Writes benchmarks/results/throughput.json.

Dask runs once per --threads value (default 1 and 2 jobs at a time per worker): with 1 it runs as many jobs at a
time as the local executor; with 2 a worker's next job starts while the scheduler hears about the last one.

The jobs are indexed in Elasticsearch before the clock starts (in one bulk; the server does it per request, which
is not what is measured here) and report through the direct sink (status straight to Elasticsearch). The clock
stops when the executor knows every job's outcome; by then each job has written its final status, and the store
is checked to hold N succeeded jobs. A few warm-up jobs per executor run first and are not counted.

Bare cwltool runs are fewer (--bare-runs, default 50) and their rate is extrapolated to N jobs: the JSON says so.

`layouts` compares, over HTTP, the single node with two API nodes and two Dask workers that share no disk (outputs
in S3, logs in Elasticsearch): CPU per completed job of each and their ratio (benchmarks/layouts.py).

Usage: python benchmarks/throughput.py [--jobs 1000] [--bare-runs 50] [--workers 2] [--threads 1,2]
       [--layout-jobs 200] [--layouts-only] [--out FILE]
Talks only to 127.0.0.1.
"""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from common import ECHO, bare_echo, write_figures
from common import parser as benchmark_parser

from ades.config import Settings
from ades.cwl import load_package, to_job_order
from ades.events.sinks import SinkConfig
from ades.jobs import groups
from ades.jobs.spec import RunSpec
from ades.models import Job
from ades.store import JobStore, ensure_indexes, make_client
from ades.store.setup import drop_indexes

BASE_URL = "http://127.0.0.1:5000"
WARM_UP_PER_WORKER = 2
GOAL = 20.0


def bare_cwltool(runs: int) -> float:
    """Seconds for `runs` bare cwltool CLI runs of echo.cwl, one after the other."""
    return sum(bare_echo(f"hi {i}") for i in range(runs))


def echo_specs(settings: Settings, count: int, tag: str) -> list[RunSpec]:
    """`count` echo jobs indexed as submitted (one bulk), and their run specs."""
    package = load_package(ECHO.read_text(), "application/cwl")
    sink = SinkConfig.from_settings(settings)
    jobs = [Job(process_id=package.id, process_version=package.version, inputs={"message": f"{tag} {i}"})
            for i in range(count)]
    client = make_client(settings)
    try:
        errors = [e for e in JobStore(client, settings).create(jobs, refresh=True) if e is not None]
        if errors:
            raise RuntimeError(f"{len(errors)} jobs could not be stored: {errors[0]}")
    finally:
        client.close()
    return [RunSpec.for_package(package, job.id, to_job_order(package, job.inputs, []), settings.data_dir, sink,
                                BASE_URL) for job in jobs]


def run_all(executor: Any, specs: list[RunSpec]) -> tuple[float, dict[str, int]]:
    started = time.perf_counter()
    for spec in specs:
        executor.submit(spec)
    outcomes: dict[str, int] = {}
    for spec in specs:
        outcome = executor.wait(spec.job_id, 3600) or "timed out"
        outcomes[outcome] = outcomes.get(outcome, 0) + 1
    return time.perf_counter() - started, outcomes


def succeeded_in_store(settings: Settings) -> int:
    client = make_client(settings)
    try:
        client.indices.refresh(index=settings.jobs_alias)
        return int(client.count(index=settings.jobs_alias, query={"term": {"status": "succeeded"}})["count"])
    finally:
        client.close()


def measure(settings: Settings, jobs: int, warm_up: int, make_executor: Callable[[], Any]) -> dict[str, Any]:
    client = make_client(settings)
    ensure_indexes(client, settings)
    try:
        executor = make_executor()
        try:
            run_all(executor, echo_specs(settings, warm_up, "warm-up"))
            specs = echo_specs(settings, jobs, "hello")
            seconds, outcomes = run_all(executor, specs)
        finally:
            executor.close()
        stored = succeeded_in_store(settings) - warm_up
    finally:
        drop_indexes(client, settings)
        client.close()
    return {
        "jobs": jobs,
        "seconds": round(seconds, 2),
        "jobs_per_s": round(jobs / seconds, 2),
        "outcomes": outcomes,
        "succeeded_in_store": stored,
        "warm_up_jobs_not_counted": warm_up,
    }


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@contextmanager
def dask_cluster(workers: int, threads: int, log_dir: Path, data_dirs: list[Path] | None = None) -> Iterator[str]:
    """`ades dask scheduler` and `ades dask worker --nworkers N` on a free port, stopped afterwards; with
    `data_dirs`, one `ades dask worker --data-dir D` per dir instead (workers with data dirs of their own)."""
    from distributed import Client

    port = _free_port()
    url = f"tcp://127.0.0.1:{port}"
    ades = [sys.executable, "-m", "ades.cli", "dask"]
    procs: list[subprocess.Popen] = []
    try:
        roles = [("workers", ["worker", "--scheduler", url, "--nworkers", str(workers), "--nthreads", str(threads)])]
        if data_dirs:
            workers = len(data_dirs)
            roles = [(f"worker-{i}", ["worker", "--scheduler", url, "--nthreads", str(threads), "--data-dir", str(d)])
                     for i, d in enumerate(data_dirs)]
        for name, args in [("scheduler", ["scheduler", "--port", str(port)]), *roles]:
            with (log_dir / f"{name}.log").open("ab") as out:
                procs.append(subprocess.Popen([*ades, *args], stdout=out, stderr=subprocess.STDOUT,
                                              stdin=subprocess.DEVNULL, start_new_session=True))
            if name == "scheduler":
                deadline = time.monotonic() + 60
                while socket.socket().connect_ex(("127.0.0.1", port)) != 0:
                    if time.monotonic() > deadline:
                        raise RuntimeError(f"the Dask scheduler did not start; see {log_dir}")
                    time.sleep(0.2)
        with Client(url, set_as_default=False, timeout=30) as client:
            client.wait_for_workers(workers, timeout=120)
        yield url
    finally:
        for proc in reversed(procs):
            groups.stop(proc.pid, 20)
            proc.wait(5)


def main(argv: list[str] | None = None) -> int:
    parser = benchmark_parser(__doc__, "throughput")
    parser.add_argument("--jobs", type=int, default=1000, help="echo jobs per executor (default 1000)")
    parser.add_argument("--bare-runs", type=int, default=50,
                        help="bare cwltool runs, extrapolated to --jobs (default 50)")
    parser.add_argument("--workers", type=int, default=2, help="local workers and Dask workers (default 2)")
    parser.add_argument("--threads", default="1,2",
                        help="threads (jobs at a time) per Dask worker; one Dask run per value (default 1,2)")
    parser.add_argument("--layout-jobs", type=int, default=200,
                        help="echo jobs per layout in the single-node / two-nodes-two-workers comparison "
                        "(benchmarks/layouts.py; default 200; 0: skip it)")
    parser.add_argument("--layouts-only", action="store_true",
                        help="run only the layouts comparison and update its part of the figures file")
    args = parser.parse_args(argv)

    base = Settings()
    if not base.uses_external_es:
        from ades.services import elasticsearch

        elasticsearch.ensure_running(base)
    if args.layouts_only:
        kept = json.loads(args.out.read_text()) if args.out.exists() else {}
        write_figures(args.out, kept | {"layouts": layouts_figures(base, args.layout_jobs)})
        return 0
    started = datetime.now(UTC).isoformat()
    load_before = os.getloadavg()
    warm_up = WARM_UP_PER_WORKER * args.workers
    with tempfile.TemporaryDirectory(prefix="ades-throughput-") as tmp:
        def settings_for(name: str) -> Settings:
            return base.model_copy(update={"index_prefix": f"bench-throughput-{name}-", "event_sink": "direct",
                                           "data_dir": Path(tmp) / name})

        local_settings = settings_for("local")

        def local_executor() -> Any:
            from ades.jobs.local import LocalExecutor

            return LocalExecutor(args.workers)

        local = measure(local_settings, args.jobs, warm_up, local_executor)
        local["workers"] = args.workers

        dask: dict[str, dict[str, Any]] = {}
        for threads in (int(t) for t in args.threads.split(",")):
            dask_settings = settings_for(f"dask-{threads}")
            log_dir = Path(tmp) / f"dask-logs-{threads}"
            log_dir.mkdir()
            with dask_cluster(args.workers, threads, log_dir) as url:
                from ades.jobs.dask_server import DaskExecutor

                figures = measure(dask_settings, args.jobs, threads * warm_up,
                                  lambda: DaskExecutor(url, dask_settings.data_dir))  # noqa: B023 (called at once)
            dask[f"{threads}_thread{'s' if threads > 1 else ''}_per_worker"] = figures | {
                "workers": args.workers, "threads_per_worker": threads}

    bare_runs = min(args.bare_runs, args.jobs)
    bare_seconds = bare_cwltool(bare_runs)
    bare_rate = bare_runs / bare_seconds
    figures = {
        "started": started,
        "cpu_count": os.cpu_count(),
        "load_average_before": [round(x, 2) for x in load_before],
        "jobs": args.jobs,
        "local_executor": local,
        "dask_executor": dask,
        "baseline_bare_cwltool_cli": {
            "runs": bare_runs,
            "in_sequence": True,
            "seconds": round(bare_seconds, 2),
            "jobs_per_s": round(bare_rate, 2),
            "extrapolated": bare_runs != args.jobs,
            "extrapolated_seconds_for_jobs": round(args.jobs / bare_rate, 1),
        },
        "ratio_over_bare": {"local": round(local["jobs_per_s"] / bare_rate, 2)}
        | {f"dask_{name}": round(f["jobs_per_s"] / bare_rate, 2) for name, f in dask.items()},
        "goal": f">= {GOAL:g} jobs/s on 2 cores",
        "goal_met": {"local": local["jobs_per_s"] >= GOAL}
        | {f"dask_{name}": f["jobs_per_s"] >= GOAL for name, f in dask.items()},
    }
    if args.layout_jobs:
        figures["layouts"] = layouts_figures(base, args.layout_jobs)
    write_figures(args.out, figures)
    return 0


def layouts_figures(base: Settings, jobs: int) -> dict[str, Any]:
    """The single node against two API nodes and two Dask workers with no shared disk (benchmarks/layouts.py)."""
    from layouts import measure_layouts

    if base.aws_endpoint_url is None:
        raise SystemExit("the layouts comparison needs the local moto server (ades services start) for S3")
    started, load = datetime.now(UTC).isoformat(), os.getloadavg()
    with tempfile.TemporaryDirectory(prefix="ades-layouts-") as tmp:
        figures = measure_layouts(base, Path(tmp), jobs)
    return {"started": started, "load_average_before": [round(x, 2) for x in load]} | figures


if __name__ == "__main__":
    raise SystemExit(main())
