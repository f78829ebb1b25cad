"""Async submission throughput: N echo jobs POSTed to `/processes/echo/execution` (Prefer: respond-async) against
`ades serve` under gunicorn, beside pygeoapi's own Flask app with its TinyDB manager running `hello-world`, under the
same gunicorn settings, with the same client, in the same run. Writes benchmarks/results/submit.json.

A submission is done when its answer (201 + job id) arrives: the job is stored, searchable and queued. The ades
server uses the direct sink and its real local executor, whose workers run at `ADES_JOB_NICE` and start executing
the echo jobs while submissions go on (the figures include that competition for the 2 cores). The client is
P processes x T threads with keep-alive connections; it runs on the same machine.

Usage: python benchmarks/submit.py [--jobs 10000] [--baseline-jobs 10000] [--clients 4] [--threads 8]
Talks only to 127.0.0.1.
"""

from __future__ import annotations

import http.client
import json
import multiprocessing
import os
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import yaml
from common import ms_summary, wait_until_up, write_figures
from common import parser as benchmark_parser

from ades.config import Settings

GUNICORN_WORKERS = 2
GUNICORN_THREADS = 16


def _client(args: tuple[int, int, str, int, str]) -> tuple[list[float], int, float]:
    """One client process: `threads` keep-alive connections sending `count` submissions in all."""
    port, count, path, threads, body = args
    samples: list[float] = []
    errors = 0
    lock = threading.Lock()
    share = [count // threads + (1 if i < count % threads else 0) for i in range(threads)]

    def run(n: int) -> None:
        nonlocal errors
        conn = http.client.HTTPConnection("127.0.0.1", port, timeout=120)
        mine: list[float] = []
        bad = 0
        for _ in range(n):
            t = time.perf_counter()
            try:
                conn.request("POST", path, body=body, headers={"Content-Type": "application/json",
                                                               "Prefer": "respond-async"})
                response = conn.getresponse()
                response.read()
                ok = response.status in (200, 201)
            except (OSError, http.client.HTTPException):
                ok = False
                conn.close()
                conn = http.client.HTTPConnection("127.0.0.1", port, timeout=120)
            mine.append(time.perf_counter() - t)
            bad += not ok
        conn.close()
        with lock:
            samples.extend(mine)
            errors += bad

    started = time.perf_counter()
    workers = [threading.Thread(target=run, args=(n,)) for n in share]
    for w in workers:
        w.start()
    for w in workers:
        w.join()
    return samples, errors, time.perf_counter() - started


def load(port: int, path: str, body: dict[str, Any], jobs: int, clients: int, threads: int) -> dict[str, Any]:
    text = json.dumps(body)
    share = [jobs // clients + (1 if i < jobs % clients else 0) for i in range(clients)]
    started = time.perf_counter()
    with multiprocessing.get_context("spawn").Pool(clients) as pool:
        parts = pool.map(_client, [(port, n, path, threads, text) for n in share])
    elapsed = time.perf_counter() - started
    samples = [s for part, _, _ in parts for s in part]
    errors = sum(e for _, e, _ in parts)
    return {"jobs": jobs, "errors": errors, "seconds": round(elapsed, 2),
            "jobs_per_s": round(jobs / elapsed, 1), "latency": ms_summary(samples),
            "concurrency": clients * threads}


def _gunicorn(app: str, port: int, env: dict[str, str], log: Path) -> subprocess.Popen:
    gunicorn = str(Path(sys.executable).parent / "gunicorn")
    return subprocess.Popen([gunicorn, "-b", f"127.0.0.1:{port}", "-w", str(GUNICORN_WORKERS), "-k", "gthread",
                             "--threads", str(GUNICORN_THREADS), app], env=env,
                            stdout=open(log, "w"), stderr=subprocess.STDOUT)


def bench_ades(args: Any, work: Path) -> dict[str, Any]:
    base = f"http://127.0.0.1:{args.port}"
    env = os.environ | {"ADES_EVENT_SINK": "direct", "ADES_INDEX_PREFIX": "bench-submit-",
                        "ADES_PUBLIC_URL": base, "ADES_DATA_DIR": str(work / "ades")}
    server = subprocess.Popen([sys.executable, "-m", "ades.cli", "-q", "serve", "--port", str(args.port),
                               "--workers", str(GUNICORN_WORKERS), "--threads", str(GUNICORN_THREADS),
                               "--job-workers", "1", "--no-access-log"], env=env,
                              stdout=open(work / "ades.log", "w"), stderr=subprocess.STDOUT)  # noqa: SIM115
    try:
        wait_until_up(f"{base}/processes", server)
        body = {"inputs": {"message": "hello"}}
        load(args.port, "/processes/echo/execution", body, 100, 1, 4)  # warm-up: executors, packages, connections
        figures = load(args.port, "/processes/echo/execution", body, args.jobs, args.clients, args.threads)
    finally:
        server.terminate()
        server.wait(timeout=60)
    _drop_indexes()
    return figures


def _drop_indexes() -> None:
    from ades.store import make_client
    from ades.store.setup import drop_indexes

    settings = Settings(index_prefix="bench-submit-")
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
    server = _gunicorn("pygeoapi.flask_app:APP", args.baseline_port, env, work / "pygeoapi.log")
    try:
        wait_until_up(f"{base}/processes", server)
        body = {"inputs": {"name": "hello"}}
        figures = load(args.baseline_port, "/processes/hello-world/execution", body, args.baseline_jobs,
                       args.clients, args.threads)
    finally:
        server.terminate()
        server.wait(timeout=60)
    return figures


def main(argv: list[str] | None = None) -> int:
    parser = benchmark_parser(__doc__, "submit")
    parser.add_argument("--jobs", type=int, default=10_000, help="ades submissions (default 10,000)")
    parser.add_argument("--baseline-jobs", type=int, default=10_000, help="pygeoapi TinyDB submissions")
    parser.add_argument("--clients", type=int, default=2, help="client processes (default 2)")
    parser.add_argument("--threads", type=int, default=16, help="connections per client process (default 16)")
    parser.add_argument("--port", type=int, default=5093, help="port of the ades server")
    parser.add_argument("--baseline-port", type=int, default=5094, help="port of the pygeoapi server")
    args = parser.parse_args(argv)

    settings = Settings()
    if not settings.uses_external_es:
        from ades.services import elasticsearch

        elasticsearch.ensure_running(settings)
    work = Path(tempfile.mkdtemp(prefix="ades-bench-submit-"))
    try:
        print(f"ades: {args.jobs} submissions ...", file=sys.stderr)
        ours = bench_ades(args, work)
        print(f"pygeoapi TinyDB: {args.baseline_jobs} submissions ...", file=sys.stderr)
        tiny = bench_pygeoapi_tinydb(args, work)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    figures = {
        "started": datetime.now(UTC).isoformat(),
        "cpus": os.cpu_count(),
        "gunicorn": {"workers": GUNICORN_WORKERS, "threads": GUNICORN_THREADS, "worker_class": "gthread"},
        "ades_async_echo": ours,
        "baseline_pygeoapi_tinydb_hello_world": tiny,
        "ratio_jobs_per_s": round(ours["jobs_per_s"] / tiny["jobs_per_s"], 2),
        "goal": ">= 1,000 jobs/s, p99 <= 50 ms, >= 10x the TinyDB baseline at 10,000 jobs",
    }
    write_figures(args.out, figures)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
