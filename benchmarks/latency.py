"""Echo job latency: submit over HTTP → `successful` visible in GET /jobs/{id}, against bare `cwltool echo.cwl`
run from the shell on the same CWL in the same run. Writes benchmarks/results/latency.json.

The server runs under gunicorn (`ades serve`, 1 worker) with warm job workers and the direct event sink (status
straight to Elasticsearch), so the figure is the server's own overhead; the SNS path adds the consumer's poll. It is
measured with the job sandbox on (ADES_SANDBOX=bwrap, the default) and off (none), on two servers side by side,
one job on each in turn: the difference is what confining a tool costs.

Usage: python benchmarks/latency.py [--runs 20] [--port 5091] [--out FILE]
Talks only to 127.0.0.1.
"""

from __future__ import annotations

import json
import statistics
import tempfile
import time
import urllib.request
from datetime import UTC, datetime

from common import ades_server, bare_echo, ms_summary, write_figures
from common import parser as benchmark_parser

from ades.config import Settings


def _post(url: str, body: dict, headers: dict[str, str]) -> dict:
    request = urllib.request.Request(url, data=json.dumps(body).encode(), method="POST",
                                     headers={"Content-Type": "application/json", **headers})
    with urllib.request.urlopen(request, timeout=60) as response:
        return json.loads(response.read())


def _get(url: str) -> dict:
    with urllib.request.urlopen(url, timeout=60) as response:
        return json.loads(response.read())


def bare_cwltool(runs: int) -> list[float]:
    return [bare_echo(f"hi {i}") for i in range(runs)]


def server_jobs(base: str, runs: int) -> list[float]:
    samples = []
    for i in range(runs):
        t = time.perf_counter()
        job = _post(f"{base}/processes/echo/execution", {"inputs": {"message": f"hi {i}"}},
                    {"Prefer": "respond-async"})
        job_id = job["jobID"]
        while _get(f"{base}/jobs/{job_id}")["status"] not in ("successful", "failed"):
            time.sleep(0.005)
        samples.append(time.perf_counter() - t)
    return samples


def sandbox_on_and_off(port: int, runs: int) -> tuple[list[float], list[float]]:
    """Submit→successful with the sandbox on and off, from two servers running side by side, one job on each in
    turn (which one goes first alternates): both see the same host at the same moments."""
    on: list[float] = []
    off: list[float] = []
    with (tempfile.TemporaryDirectory() as on_dir, tempfile.TemporaryDirectory() as off_dir,
          ades_server(port, on_dir, index_prefix="bench-latency-", sandbox="bwrap") as confined,
          ades_server(port + 1, off_dir, index_prefix="bench-latency-", sandbox="none") as unconfined):
        server_jobs(confined, 3)  # warm-up: workers load cwltool and the echo tool
        server_jobs(unconfined, 3)
        for i in range(runs):
            pairs = [(confined, on), (unconfined, off)]
            for base, samples in pairs if i % 2 == 0 else pairs[::-1]:
                samples += server_jobs(base, 1)
    return on, off


def main(argv: list[str] | None = None) -> int:
    parser = benchmark_parser(__doc__, "latency")
    parser.add_argument("--runs", type=int, default=20, help="jobs per path (default 20)")
    parser.add_argument("--port", type=int, default=5091, help="port of the benchmark server (the next one too)")
    args = parser.parse_args(argv)

    settings = Settings()
    if not settings.uses_external_es:
        from ades.services import elasticsearch

        elasticsearch.ensure_running(settings)
    sandboxed, unconfined = sandbox_on_and_off(args.port, args.runs)
    bare = bare_cwltool(args.runs)
    figures = {
        "started": datetime.now(UTC).isoformat(),
        "runs": args.runs,
        "server_submit_to_successful": ms_summary(sandboxed),
        "server_submit_to_successful_sandbox_none": ms_summary(unconfined),
        "baseline_bare_cwltool_cli": ms_summary(bare),
        "ratio_median_server_over_bare": round(statistics.median(sandboxed) / statistics.median(bare), 3),
        "ratio_median_server_over_bare_sandbox_none": round(statistics.median(unconfined) / statistics.median(bare),
                                                            3),
        "sandbox_cost_ms_median": round((statistics.median(sandboxed) - statistics.median(unconfined)) * 1000, 1),
        "goal": "ratio (sandbox on) <= 0.1",
    }
    write_figures(args.out, figures)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
