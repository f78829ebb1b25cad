"""The capacity model of docs/capacity.md, computed from the per-job costs in benchmarks/results/capacity.json (the
large size of its run): how many API cores, consumer cores, ES cores, disk and shards, and job-worker slots and cores
a load needs. Prints the worked examples as a markdown table; `--jobs-per-day`, `--kept` and the rest give others.

Usage: python benchmarks/capacity_model.py [--results FILE] [--jobs-per-day N --kept N --updates-per-job U
--duration-s D --job-cpu-s C --log-chunks-per-job L]
"""

from __future__ import annotations

import argparse
import json
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any

RESULTS = Path(__file__).parent / "results"

PEAK = 3.0
"""Peak-hour rate over the day's mean rate (an assumption: jobs submitted in bursts, not evenly)."""
UTILISATION = 0.6
"""CPU a tier is planned to use at peak, of what it has: room for reads (polling, listings) this model does not
measure, for GC and merges, and for one node of a tier to fail."""
REPLICAS = 1
DISK_FILL = 0.65
"""Share of an ES data node's disk planned for data: under the 85 % low watermark with room for a force-merge or a
shard relocation."""
SHARD_GB = 40.0
NODE_CORES = 8
NODE_DISK_GB = 1000.0


@dataclass(frozen=True)
class Costs:
    server_ms: float
    es_submit_ms: float
    consumer_ms: float
    es_update_ms: float
    worker_ms: float
    bytes_per_doc: float
    log_es_ms: float
    log_bytes: float


@dataclass(frozen=True)
class Load:
    name: str
    jobs_per_day: float
    kept: float
    updates_per_job: float = 2
    duration_s: float = 60
    job_cpu_s: float = 0.0
    """CPU of the job's own tools (0: an echo; the model adds it to the workers' cores)."""
    log_chunks_per_job: float = 0


def costs(results: dict[str, Any], log_results: dict[str, Any] | None) -> Costs:
    """The large size's per-job costs (the small one's are its prediction; capacity.json keeps both), its bytes per
    document from `store_recheck` when there is one."""
    large = results["by_size"][str(results["sizes"][-1])]
    submit = large["submit"]["cpu_ms_each"]
    updates = large["updates"]["consumer_batch_of_10"]["cpu_ms_each"]
    run = results["run"][-1]["cpu_ms_each"]
    logs = (log_results or {}).get("elasticsearch", {})
    store = results.get("store_recheck", {}).get(str(results["sizes"][-1]), large["updates"])["store"]
    # ES CPU raw, not net of the shared node's background: an upper bound, where the net figure is a noisy estimate
    return Costs(server_ms=submit["server"], es_submit_ms=submit["elasticsearch"],
                 consumer_ms=updates["consumer"], es_update_ms=updates["elasticsearch"],
                 worker_ms=run["workers"] + run["executor_parent"], bytes_per_doc=store["bytes_per_doc"],
                 log_es_ms=logs.get("es_cpu_ms_per_chunk", 0.0), log_bytes=logs.get("disk_bytes_per_chunk", 0.0))


def plan(c: Costs, load: Load) -> dict[str, Any]:
    mean = load.jobs_per_day / 86_400
    peak = mean * PEAK
    cores = lambda ms_per_s: ms_per_s / 1000 / UTILISATION  # noqa: E731 (one formula, used five times)
    api = cores(peak * c.server_ms)
    consumer = cores(peak * load.updates_per_job * c.consumer_ms)
    # a replica indexes every write again: ES write CPU counts (1 + replicas) times
    es_write = peak * (c.es_submit_ms + load.updates_per_job * c.es_update_ms + load.log_chunks_per_job * c.log_es_ms)
    es = cores(es_write * (1 + REPLICAS))
    primary_gb = load.kept * (c.bytes_per_doc + load.log_chunks_per_job * c.log_bytes) / 1e9
    disk_gb = primary_gb * (1 + REPLICAS) / DISK_FILL
    es_nodes = max(2, math.ceil(es / NODE_CORES), math.ceil(disk_gb / NODE_DISK_GB))
    slots = peak * load.duration_s  # Little's law: jobs running at once
    workers = cores(peak * (c.worker_ms + load.job_cpu_s * 1000))
    days_kept = load.kept / load.jobs_per_day
    gb_per_day = load.jobs_per_day * c.bytes_per_doc / 1e9
    return {"load": load.name, "jobs_per_s_mean": round(mean, 1), "jobs_per_s_peak": round(peak, 1),
            "api_cores": round(api, 2), "consumer_cores": round(consumer, 2), "es_cores": round(es, 2),
            "es_primary_gb": round(primary_gb, 1), "es_disk_gb": round(disk_gb), "es_data_nodes": es_nodes,
            "primary_shards": max(1, math.ceil(primary_gb / SHARD_GB)), "days_kept": round(days_kept, 1),
            "primary_gb_per_day": round(gb_per_day, 2), "worker_slots": math.ceil(slots),
            "worker_cores": round(workers, 1)}


EXAMPLES = [Load("100k/day, 10 M kept", 100_000, 10_000_000), Load("10 M/day, 1 B kept", 10_000_000, 1_000_000_000),
            Load("10 M/day, 1 B kept, 1 log chunk/job", 10_000_000, 1_000_000_000, log_chunks_per_job=1),
            Load("10 M/day, 1 B kept, jobs using 10 s of CPU", 10_000_000, 1_000_000_000, job_cpu_s=10)]


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--results", type=Path, default=RESULTS / "capacity.json")
    p.add_argument("--log-results", type=Path, default=RESULTS / "logs.json",
                   help="benchmarks/logs.py's figures: ES CPU and bytes per shipped log chunk")
    p.add_argument("--jobs-per-day", type=float)
    p.add_argument("--kept", type=float)
    p.add_argument("--updates-per-job", type=float, default=2)
    p.add_argument("--duration-s", type=float, default=60)
    p.add_argument("--job-cpu-s", type=float, default=0.0)
    p.add_argument("--log-chunks-per-job", type=float, default=0)
    args = p.parse_args()
    c = costs(json.loads(args.results.read_text()),
              json.loads(args.log_results.read_text()) if args.log_results.exists() else None)
    loads = EXAMPLES
    if args.jobs_per_day:
        loads = [Load("given", args.jobs_per_day, args.kept or args.jobs_per_day * 30, args.updates_per_job,
                      args.duration_s, args.job_cpu_s, args.log_chunks_per_job)]
    print("costs:", c)
    rows = [plan(c, load) for load in loads]
    print("| " + " | ".join(rows[0]) + " |")
    print("|" + "---|" * len(rows[0]))
    for row in rows:
        print("| " + " | ".join(str(v) for v in row.values()) + " |")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
