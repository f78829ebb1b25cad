"""Async submission throughput: N echo jobs POSTed to `/processes/echo/execution` (Prefer: respond-async) against
`ades serve` under gunicorn, beside pygeoapi's own Flask app with its TinyDB manager running `hello-world`, under the
same gunicorn settings, with the same client, in the same run. Writes benchmarks/results/submit.json.

A submission is done when its answer (201 + job id) arrives: the job is stored, searchable and queued. The ades server
uses the direct sink and its real local executor. It is measured twice: with its job workers (at `ADES_JOB_NICE`)
executing the echo jobs while submissions go on, and with execution paused (`ades execution pause`) during the
measurement, as on an API node whose jobs run elsewhere; that run lets the warm-up's jobs end before it pauses
(`warm_up_jobs_ended_before_pause`), then records how many jobs ES holds (`stored_jobs`: the warm-up's and the measured
ones) and how many have succeeded once execution resumed (the warm-up's included). The client (benchmarks/loadgen.py)
keeps C keep-alive connections, from Go when a Go toolchain is there (it takes less of the cores it shares with the
servers), on asyncio otherwise (`--client`); it runs on the same machine. Each run also reports the CPU (ms per
submission) spent by the server, its job workers, the ES node and the client, and the same load against a plain Flask
route under the same gunicorn (the floor: what any Flask app pays per request here), and against that route storing each
job in ES through ades' group commit and nothing else (the floor of any Flask service that stores its jobs in ES here).

Figures on a small VM move with the ES node's JIT and with the host: right after an ES start, the first tens of
thousands of requests run slower while the JVM compiles its hot paths (measured: 600-900 jobs/s instead of about
1,000), and the same work can take 30 % more CPU from one minute to the next on a shared host. So ES is first
warmed by a throwaway ades server (`--es-warm-up-jobs` submissions, execution paused, its index dropped after),
each ades mode is measured in `--rounds` rounds of `--jobs` submissions on one server (the headline is the median
round, every round is listed), and each round records how long a fixed pure-Python loop took just before it
(`cpu_calibration_ms`: larger means less CPU for one thread at that time, from the host's load, and in the
executing mode from the job workers' too).

Usage: python benchmarks/submit.py [--jobs 10000] [--rounds 3] [--baseline-jobs 10000] [--connections 16]
[--workers 2] [--es-warm-up-jobs 20000] [--client auto|go|asyncio]
Talks only to 127.0.0.1.
"""

from __future__ import annotations

import json
import os
import resource
import shutil
import subprocess
import sys
import tempfile
import time
import urllib.parse
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import yaml
from common import cmdline, cpu_seconds, listening_pid, process_tree, require_free, wait_until_up, write_figures
from common import parser as benchmark_parser
from loadgen import CLIENTS, client_kind, post_load, summary

from ades.config import Settings
from ades.status import Status

WARM_UP = 200
INDEX_PREFIX = "bench-submit-"
CLIENT = {"kind": "auto"}
"""The load client of every measurement in the run (`--client`, resolved once in main)."""


def load(port: int, path: str, body: dict[str, Any], jobs: int, connections: int, processes: int,
         watch: dict[str, list[int]] | None = None) -> dict[str, Any]:
    """Send the submissions; figures, with the CPU each watched process tree spent per submission."""
    before = {name: cpu_seconds(pids) for name, pids in (watch or {}).items()}
    client_before = _client_cpu()
    outcome = post_load(port, path, json.dumps(body).encode(), jobs, connections, processes=processes,
                        headers={"Prefer": "respond-async"}, client=CLIENT["kind"])
    figures = summary(outcome, jobs) | {"connections": connections}
    cpu = {name: round((cpu_seconds(pids) - before[name]) * 1000 / jobs, 3) for name, pids in (watch or {}).items()}
    client_after = _client_cpu()
    cpu["client"] = round((client_after - client_before) * 1000 / jobs, 3)
    figures["cpu_ms_per_job"] = cpu
    return figures


def _client_cpu() -> float:
    """CPU seconds of this process and of its children that have ended: the client runs in one or the other (asyncio
    here; the Go client, or asyncio client processes, as children). The servers, children too, are still running
    when it is read, so they do not count."""
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return time.process_time() + usage.ru_utime + usage.ru_stime


def _gunicorn(app: str, args: Any, env: dict[str, str], log: Path, port: int) -> subprocess.Popen:
    gunicorn = str(Path(sys.executable).parent / "gunicorn")
    return subprocess.Popen([gunicorn, "-b", f"127.0.0.1:{port}", "-w", str(args.workers),
                             "-k", "gthread", "--threads", str(args.threads), app], env=env,
                            stdout=open(log, "w"), stderr=subprocess.STDOUT)


def _watch(server: subprocess.Popen, es_pid: int | None) -> dict[str, list[int]]:
    """Process trees to account CPU to: the server (gunicorn master and workers), its job workers, the ES node."""
    pids = process_tree(server.pid)
    jobs = [p for p in pids if "multiprocessing" in cmdline(p)]
    watch = {"server": [p for p in pids if p not in jobs]}
    if jobs:
        watch["job_workers"] = jobs
    if es_pid:
        watch["elasticsearch"] = [es_pid]
    return watch


def bench_ades(args: Any, work: Path, es_pid: int | None, paused: bool, rounds: int,
               label: str = "") -> dict[str, Any]:
    """`paused`: execution is paused (`ades execution pause`) during the measurement and resumed after it, as on an
    API node whose jobs run elsewhere; otherwise the job workers run the echo jobs while submissions go on.
    `rounds` measured loads of `args.jobs` on one server; 0: none (the ES warm-up)."""
    from ades.jobs.pause import pause, resume

    base = f"http://127.0.0.1:{args.port}"
    data_dir = work / f"ades{label}"
    total = rounds * args.jobs if rounds else args.es_warm_up_jobs
    # the queue cap (ADES_MAX_QUEUED_JOBS) stays on, above what this run queues: admission is part of the path
    env = os.environ | {"ADES_EVENT_SINK": "direct", "ADES_INDEX_PREFIX": INDEX_PREFIX,
                        "ADES_PUBLIC_URL": base, "ADES_DATA_DIR": str(data_dir),
                        "ADES_MAX_QUEUED_JOBS": str(2 * total + 1000)}
    server = subprocess.Popen([sys.executable, "-m", "ades.cli", "-q", "serve", "--port", str(args.port),
                               "--workers", str(args.workers), "--threads", str(args.threads),
                               "--job-workers", "1", "--no-access-log"], env=env,
                              stdout=open(work / f"ades{label}.log", "w"), stderr=subprocess.STDOUT)  # noqa: SIM115
    figures: dict[str, Any] = {}
    try:
        wait_until_up(f"{base}/processes", server)
        body = {"inputs": {"message": "hello"}}
        load(args.port, "/processes/echo/execution", body, WARM_UP, 4, 1)  # executors, packages, connections
        if paused and rounds:
            # the warm-up's jobs run first: left to run, they took CPU from the first measured round (672 jobs/s
            # against 824 and 841 in the run of 8963261), which execution paused is meant to measure without
            figures["warm_up_jobs_ended_before_pause"] = _succeeded_within(120.0, at_least=WARM_UP)
        if paused:
            pause(data_dir, "benchmarks/submit.py")
        if not rounds:
            load(args.port, "/processes/echo/execution", body, args.es_warm_up_jobs, args.connections,
                 args.client_processes)
        measured = []
        for _ in range(rounds):
            calibration = cpu_calibration_ms()
            one = load(args.port, "/processes/echo/execution", body, args.jobs, args.connections,
                       args.client_processes, _watch(server, es_pid))
            measured.append(one | {"cpu_calibration_ms": calibration})
        if measured:
            figures |= median_round(measured) | {"rounds": measured}
        if paused and rounds:
            figures["stored_jobs"] = _stored_jobs()
            resume(data_dir)
            # the warm-up's jobs ended before the pause: 50 more show that execution did resume
            figures["succeeded_within_60_s_of_resume"] = _succeeded_within(60.0, at_least=WARM_UP + 50)
    finally:
        server.terminate()
        server.wait(timeout=60)
    _drop_indexes()
    return figures


def cpu_calibration_ms() -> float:
    """Milliseconds a fixed pure-Python loop takes now, best of three: how fast this CPU is at the moment (a shared
    host's load shows as a larger figure)."""
    best = float("inf")
    for _ in range(3):
        started = time.perf_counter()
        total = 0
        for i in range(1_000_000):
            total += i
        best = min(best, time.perf_counter() - started)
    return round(best * 1000, 1)


def median_round(rounds: list[dict[str, Any]]) -> dict[str, Any]:
    """The round with the median jobs/s (the lower middle one for an even count), without its own calibration."""
    ordered = sorted(rounds, key=lambda r: r["jobs_per_s"] or 0)
    middle = dict(ordered[(len(ordered) - 1) // 2])
    middle.pop("cpu_calibration_ms", None)
    return middle


def _job_store() -> Any:
    from ades.store import make_client
    from ades.store.jobs import JobStore

    settings = Settings(index_prefix=INDEX_PREFIX)
    return JobStore(make_client(settings), settings)


def _stored_jobs() -> int:
    """Jobs the ES index holds (warm-up included): every 201 must be one."""
    store = _job_store()
    store.refresh()
    return int(store.client.count(index=store.index)["count"])


def _succeeded_within(seconds: float, at_least: int) -> int:
    """Jobs that have succeeded (those of the warm-up too), counted until `at_least` or `seconds` passed: execution
    did resume."""
    store = _job_store()
    deadline = time.monotonic() + seconds
    while True:
        store.refresh()
        done = store.count([Status.SUCCEEDED])
        if done >= at_least or time.monotonic() > deadline:
            return done
        time.sleep(1)


def _drop_indexes() -> None:
    from ades.store import make_client
    from ades.store.setup import drop_indexes

    settings = Settings(index_prefix=INDEX_PREFIX)
    client = make_client(settings)
    drop_indexes(client, settings)
    client.close()


def bench_pygeoapi_tinydb(args: Any, work: Path) -> dict[str, Any]:
    """pygeoapi's Flask app as shipped, TinyDB manager, its hello-world process, run async."""
    from ades.app import pygeoapi_config

    base = f"http://127.0.0.1:{args.baseline_port}"
    config = pygeoapi_config(base, title="pygeoapi TinyDB baseline")
    config["server"]["manager"] = {"name": "TinyDB", "connection": str(work / "tinydb.json"),
                                   "output_dir": str(work / "tinydb-out")}
    config["logging"] = {"level": "ERROR"}
    config["resources"] = {"hello-world": {"type": "process", "processor": {"name": "HelloWorld"}}}
    (work / "tinydb-out").mkdir()
    config_path, openapi_path = work / "pygeoapi.yml", work / "pygeoapi-openapi.yml"
    config_path.write_text(yaml.safe_dump(config))
    pygeoapi = str(Path(sys.executable).parent / "pygeoapi")
    subprocess.run([pygeoapi, "openapi", "generate", str(config_path), "--output-file", str(openapi_path)],
                   check=True, capture_output=True)
    env = os.environ | {"PYGEOAPI_CONFIG": str(config_path), "PYGEOAPI_OPENAPI": str(openapi_path)}
    server = _gunicorn("pygeoapi.flask_app:APP", args, env, work / "pygeoapi.log", args.baseline_port)
    try:
        wait_until_up(f"{base}/processes", server)
        body = {"inputs": {"name": "hello"}}
        load(args.baseline_port, "/processes/hello-world/execution", body, 20, 4, 1)  # warm-up, as for ades
        figures = load(args.baseline_port, "/processes/hello-world/execution", body, args.baseline_jobs,
                       args.connections, args.client_processes, _watch(server, None))
    finally:
        server.terminate()
        server.wait(timeout=60)
    return figures


# A Flask route that parses the body and answers 201 with JSON, nothing else: what any Flask app pays per request
# here, so the ades figures can be read against it.
FLOOR_APP = """
from flask import Flask, jsonify, request

app = Flask(__name__)


@app.post("/processes/echo/execution")
def execute():
    answer = jsonify({"jobID": "0", "status": "accepted", "inputs": request.get_json()["inputs"]})
    answer.status_code = 201
    return answer
"""


# The same route storing each job in ES through ades' own group commit (CreateBatcher), nothing else: no process
# lookup, input validation, journal, queue or statusInfo. What storing a job at all costs here.
FLOOR_STORE_APP = """
from flask import Flask, jsonify, request

from ades.config import Settings
from ades.models import Job
from ades.store import JobStore, ensure_indexes, make_client
from ades.jobs.acceptance import CreateBatcher

settings = Settings()
client = make_client(settings)
ensure_indexes(client, settings)
batcher = CreateBatcher(JobStore(client, settings))
app = Flask(__name__)


@app.post("/processes/echo/execution")
def execute():
    job = Job(process_id="echo", process_version="1.0.0", inputs=request.get_json()["inputs"], user_id="anonymous",
              mode="async")
    batcher.create(job)
    answer = jsonify({"jobID": job.id, "status": "accepted"})
    answer.status_code = 201
    return answer
"""


def bench_floor(args: Any, work: Path, module: str, source: str, es_pid: int | None = None) -> dict[str, Any]:
    """One of the floors (FLOOR_APP, FLOOR_STORE_APP) under the same gunicorn and load as ades; `es_pid`: account
    the ES node's CPU too."""
    (work / f"{module}.py").write_text(source)
    env = os.environ | {"PYTHONPATH": str(work), "ADES_INDEX_PREFIX": INDEX_PREFIX}
    server = _gunicorn(f"{module}:app", args, env, work / f"{module}.log", args.floor_port)
    try:
        wait_until_up(f"http://127.0.0.1:{args.floor_port}/", server)
        body = {"inputs": {"message": "hello"}}
        load(args.floor_port, "/processes/echo/execution", body, WARM_UP, 4, 1)
        figures = load(args.floor_port, "/processes/echo/execution", body, args.jobs, args.connections,
                       args.client_processes, _watch(server, es_pid))
    finally:
        server.terminate()
        server.wait(timeout=60)
    _drop_indexes()  # those of FLOOR_STORE_APP (absent otherwise: nothing to do)
    return figures


def main(argv: list[str] | None = None) -> int:
    parser = benchmark_parser(__doc__, "submit")
    parser.add_argument("--jobs", type=int, default=10_000, help="ades submissions per round (default 10,000)")
    parser.add_argument("--rounds", type=int, default=3, help="measured rounds per ades mode (default 3)")
    parser.add_argument("--es-warm-up-jobs", type=int, default=20_000,
                        help="submissions that warm the ES node's JIT before anything is measured (0: none)")
    parser.add_argument("--baseline-jobs", type=int, default=10_000,
                        help="pygeoapi TinyDB submissions (0: skip the baseline)")
    parser.add_argument("--connections", type=int, default=16, help="keep-alive client connections (default 16)")
    parser.add_argument("--client", choices=CLIENTS, default="auto",
                        help="load client: the Go one (benchmarks/loadgen_go, built when Go is on the PATH), the "
                             "asyncio one, or auto: Go if it builds (default)")
    parser.add_argument("--client-processes", type=int, default=1,
                        help="asyncio client processes (default 1; the Go client is one process)")
    parser.add_argument("--workers", type=int, default=2, help="gunicorn workers of both servers (default 2)")
    parser.add_argument("--threads", type=int, default=16, help="gunicorn threads per worker (default 16)")
    parser.add_argument("--port", type=int, default=5093, help="port of the ades server")
    parser.add_argument("--baseline-port", type=int, default=5094, help="port of the pygeoapi server")
    parser.add_argument("--floor-port", type=int, default=5095, help="port of the plain Flask server")
    args = parser.parse_args(argv)
    CLIENT["kind"] = client_kind(args.client)
    require_free(args.port, args.floor_port, *([args.baseline_port] if args.baseline_jobs else []))

    settings = Settings()
    if not settings.uses_external_es:
        from ades.services import elasticsearch

        elasticsearch.ensure_running(settings)
    es_port = urllib.parse.urlsplit(settings.elasticsearch_url).port
    es_pid = listening_pid(es_port) if es_port else None
    work = Path(tempfile.mkdtemp(prefix="ades-bench-submit-"))
    try:
        if args.es_warm_up_jobs:
            print(f"ES warm-up: {args.es_warm_up_jobs} submissions, not measured ...", file=sys.stderr)
            bench_ades(args, work, es_pid, paused=True, rounds=0, label="-warm-up")
        print(f"ades: {args.rounds} x {args.jobs} submissions, jobs executing meanwhile ...", file=sys.stderr)
        ours = bench_ades(args, work, es_pid, paused=False, rounds=args.rounds)
        print(f"ades: {args.rounds} x {args.jobs} submissions, execution paused ...", file=sys.stderr)
        api_node = bench_ades(args, work, es_pid, paused=True, rounds=args.rounds, label="-paused")
        print(f"plain Flask route: {args.jobs} requests ...", file=sys.stderr)
        floor = bench_floor(args, work, "floor_app", FLOOR_APP)
        print(f"plain Flask route storing the job in ES: {args.jobs} requests ...", file=sys.stderr)
        store_floor = bench_floor(args, work, "floor_store_app", FLOOR_STORE_APP, es_pid)
        tiny = None
        if args.baseline_jobs:
            print(f"pygeoapi TinyDB: {args.baseline_jobs} submissions ...", file=sys.stderr)
            tiny = bench_pygeoapi_tinydb(args, work)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    figures = {
        "started": datetime.now(UTC).isoformat(),
        "cpus": os.cpu_count(),
        "gunicorn": {"workers": args.workers, "threads": args.threads, "worker_class": "gthread",
                     "ades_worker_class": "ades.serve.BalancingWorker (gthread, keeping busy connections)"},
        "es_warm_up_jobs": args.es_warm_up_jobs,
        "cpu_calibration_ms_after": cpu_calibration_ms(),
        "client": {"kind": f"{CLIENT['kind']} keep-alive (benchmarks/loadgen.py)", "connections": args.connections,
                   "processes": 1 if CLIENT["kind"] == "go" else args.client_processes},
        "ades_async_echo": ours,
        "ades_async_echo_execution_paused": api_node,
        "baseline_pygeoapi_tinydb_hello_world": tiny,
        "floor_plain_flask_route": floor,
        "floor_flask_route_storing_the_job": store_floor,
        "ades_share_of_floor_jobs_per_s": round(ours["jobs_per_s"] / floor["jobs_per_s"], 3),
        "ades_share_of_store_floor_jobs_per_s": {
            "jobs_executing": round(ours["jobs_per_s"] / store_floor["jobs_per_s"], 3),
            "execution_paused": round(api_node["jobs_per_s"] / store_floor["jobs_per_s"], 3)},
        "ratio_jobs_per_s": round(ours["jobs_per_s"] / tiny["jobs_per_s"], 2) if tiny else None,
        "ratio_jobs_per_s_execution_paused": round(api_node["jobs_per_s"] / tiny["jobs_per_s"], 2) if tiny else None,
        "headline": "ades figures are the median of their rounds (each round listed under `rounds`)",
        "goal": ">= 1,000 jobs/s, p99 <= 50 ms, >= 10x the TinyDB baseline at 10,000 jobs",
    }
    write_figures(args.out, figures)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
