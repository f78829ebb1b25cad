"""What a Dask task's checks before it starts a job cost (ades.jobs.dask_checks), beside an echo job end to end on
Dask in the same run. Writes benchmarks/results/dask_start.json.

- `store_check`: the one realtime mget a task makes before it starts (the job's status and the store-wide pause
  switch), timed in a loop against the real Elasticsearch.
- `scheduler_claim`: the run_on_scheduler round trip that records the attempt on the task (from a client on
  127.0.0.1, as a worker makes it).
- `echo_end_to_end`: echo jobs on a real cluster (`ades dask scheduler` and two `ades dask worker --data-dir`, each
  with its own data dir), submitted one at a time, submit -> outcome known, alternating between an executor whose
  tasks check the store and one whose tasks do not; `check_cost_ratio` is (with - without) / without, of medians.

Usage: python benchmarks/dask_start.py [--checks 500] [--jobs 40] [--out FILE]. Talks only to 127.0.0.1.
"""

from __future__ import annotations

import os
import sys
import tempfile
import time
import uuid
from datetime import UTC, datetime
from pathlib import Path

from common import ms_summary, pct, write_figures
from common import parser as benchmark_parser
from throughput import dask_cluster, echo_specs

from ades.config import Settings
from ades.jobs.dask_checks import StoreAddress, check_store, claim_on_scheduler
from ades.store import ensure_indexes, make_client
from ades.store.setup import drop_indexes


def time_store_check(address: StoreAddress, job_ids: list[str], rounds: int) -> list[float]:
    check_store(address, job_ids[0])  # the connection is made once per worker process
    samples = []
    for i in range(rounds):
        started = time.perf_counter()
        check_store(address, job_ids[i % len(job_ids)])
        samples.append(time.perf_counter() - started)
    return samples


def time_scheduler_claim(url: str, rounds: int) -> list[float]:
    from distributed import Client

    with Client(url, set_as_default=False, timeout=30) as client:
        samples = []
        for i in range(rounds):
            started = time.perf_counter()
            client.run_on_scheduler(claim_on_scheduler, f"bench-{i}", {"worker": "bench"})
            samples.append(time.perf_counter() - started)
        client.run_on_scheduler(_forget_bench_keys)
    return samples


def _forget_bench_keys(dask_scheduler=None) -> None:
    for key in [k for k in dask_scheduler.task_metadata if str(k).startswith("bench-")]:
        del dask_scheduler.task_metadata[key]


def main(argv: list[str] | None = None) -> int:
    parser = benchmark_parser(__doc__, "dask_start")
    parser.add_argument("--checks", type=int, default=500, help="store checks and scheduler claims timed")
    parser.add_argument("--jobs", type=int, default=40, help="echo jobs end to end (half with the check)")
    args = parser.parse_args(argv)
    base = Settings()
    settings = base.model_copy(update={"index_prefix": f"bench-dask-start-{uuid.uuid4().hex[:8]}-",
                                       "event_sink": "direct"})
    started_at = datetime.now(UTC).isoformat()
    load_before = os.getloadavg()
    client = make_client(settings)
    ensure_indexes(client, settings)
    address = StoreAddress.from_settings(settings)
    try:
        with tempfile.TemporaryDirectory(prefix="ades-dask-start-") as tmp:
            settings = settings.model_copy(update={"data_dir": Path(tmp) / "server"})
            specs = echo_specs(settings, args.jobs + 4, "hello")
            store_samples = time_store_check(address, [s.job_id for s in specs], args.checks)
            logs = Path(tmp) / "logs"
            logs.mkdir()
            with dask_cluster(2, 1, logs, data_dirs=[Path(tmp) / "w0", Path(tmp) / "w1"]) as url:
                claim_samples = time_scheduler_claim(url, args.checks)
                end_to_end = run_echo_jobs(url, settings, address, specs)
    finally:
        drop_indexes(client, settings)
        client.close()
    with_check, without = (pct(end_to_end[name], 50) for name in ("with_check", "without_check"))
    check_ms = pct(store_samples, 50) * 1000
    claim_ms = pct(claim_samples, 50) * 1000
    figures = {
        "started": started_at,
        "cpu_count": os.cpu_count(),
        "load_average_before": [round(x, 2) for x in load_before],
        "store_check": ms_summary(store_samples),
        "scheduler_claim": ms_summary(claim_samples),
        "echo_end_to_end": {
            "with_check": ms_summary(end_to_end["with_check"]),
            "without_check": ms_summary(end_to_end["without_check"]),
        },
        "store_check_over_echo_job": round(check_ms / (without * 1000), 4),
        "scheduler_claim_over_echo_job": round(claim_ms / (without * 1000), 4),
        "check_cost_ratio": round((with_check - without) / without, 3),
        "note": "*_over_echo_job: the step's median ms over an echo job's median end to end on Dask (without the "
                "store check; both arms record their start on the scheduler); check_cost_ratio: the store check "
                "measured end to end, (with - without) / without of the medians (noisier: scheduling jitter).",
    }
    write_figures(args.out, figures)
    return 0


def run_echo_jobs(url: str, settings: Settings, address: StoreAddress, specs: list) -> dict[str, list[float]]:
    from ades.jobs.dask_server import DaskExecutor

    executors = {"with_check": DaskExecutor(url, settings.data_dir, store=address),
                 "without_check": DaskExecutor(url, settings.data_dir)}
    samples: dict[str, list[float]] = {name: [] for name in executors}
    try:
        for i, spec in enumerate(specs):
            name = "with_check" if i % 2 else "without_check"
            started = time.perf_counter()
            executors[name].submit(spec)
            outcome = executors[name].wait(spec.job_id, 120)
            if outcome != "succeeded":
                raise RuntimeError(f"job {spec.job_id} ended {outcome}")
            if i >= 4:  # the first ones warm the launchers up
                samples[name].append(time.perf_counter() - started)
    finally:
        for executor in executors.values():
            executor.close()
    return samples


if __name__ == "__main__":
    sys.path.insert(0, str(Path(__file__).parent))
    raise SystemExit(main())
