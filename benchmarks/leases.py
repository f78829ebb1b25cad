"""Benchmark of host leases: what a node's lease and its sweep for lost jobs cost Elasticsearch.

Writes a JSON of figures (default benchmarks/results/leases.json):
- `beat`: a Lease renewed for `--beat-seconds` with the default ADES_HOST_LEASE (30 s, a beat every 5 s) and with a
  short one (3 s, every 0.5 s): beats counted, ES writes per second per node, and the latency of one beat (p50, p99);
- `sweep`: the sweep's round over an index of `--jobs` job documents (`--unfinished` of them submitted or running,
  spread over 22 nodes' leases, the rest finished), `--rounds` rounds, p50/p99 milliseconds: `every_host_alive`
  (the steady state, every 5 s on every node: one search of `hosts`, one of `jobs` that finds nothing) and
  `two_hosts_dead` (2 of the 22 leases expired: the round also reads their ~900 jobs, mgets their leases and
  settles each; run with adoption off and a publisher that counts instead of publishing, so the corpus stays);
- `index`: seconds to index the corpus (for scale).

Usage: python benchmarks/leases.py [--jobs 100000] [--unfinished 10000] [--rounds 50] [--beat-seconds 20] [--out FILE]
Talks only to the Elasticsearch given by ADES_ES_URL or the local node `ades services start` runs (index prefix
`bench-leases-`, dropped at the end).
"""

from __future__ import annotations

import os
import sys
import tempfile
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from common import ms_summary, write_figures
from common import parser as benchmark_parser

from ades.config import Settings
from ades.jobs.adoption import LostJobSweep
from ades.jobs.leases import Lease
from ades.jobs.publisher import Publisher
from ades.models import Job, StatusUpdate, iso
from ades.store import JobStore, ensure_indexes, make_client
from ades.store.bulk import BulkConnection
from ades.store.hosts import HostStore, LeaseDoc
from ades.store.setup import drop_indexes

NOW = datetime.now(UTC)
CHUNK = 1000
LIVE_NODES = [f"node-live-{i}" for i in range(20)]
DEAD_NODES = ["node-dead-0", "node-dead-1"]


class Counting(Publisher):
    """Counts the failures the sweep would publish, and publishes nothing (the corpus must stay as it is)."""

    def __init__(self) -> None:
        super().__init__(None)
        self.count = 0

    def publish(self, update: StatusUpdate, config: Any = None) -> bool:
        self.count += 1
        return True


def document(i: int, unfinished: int) -> dict[str, Any]:
    nodes = LIVE_NODES + DEAD_NODES
    job = Job(process_id=f"proc-{i % 7}", inputs={"message": f"hello {i}"}, labels=["bench"], user_id=f"user-{i % 5}",
              created=NOW - timedelta(seconds=i), host=nodes[i % len(nodes)])
    doc = job.to_document()
    if i < unfinished:
        doc["status"] = "running" if i % 2 else "submitted"
    else:
        doc.update({"status": "succeeded", "stop-time": iso(NOW - timedelta(seconds=i - 1)), "progress": 100})
    doc["updated"] = iso(NOW - timedelta(minutes=10))
    return doc


def index_corpus(settings: Settings, jobs: int, unfinished: int) -> float:
    bulk = BulkConnection.from_settings(settings)
    started = time.perf_counter()
    try:
        for start in range(0, jobs, CHUNK):
            lines: list[dict[str, Any]] = []
            for i in range(start, min(jobs, start + CHUNK)):
                doc = document(i, unfinished)
                lines += [{"index": {"_index": settings.jobs_alias, "_id": doc["id"]}}, doc]
            if bulk.bulk(lines, filter_path="errors").body.get("errors"):
                raise RuntimeError("the corpus could not be indexed")
    finally:
        bulk.close()
    return time.perf_counter() - started


def bench_beat(hosts: HostStore, length: float, seconds: float) -> dict[str, Any]:
    lease = Lease(hosts, f"node-bench-{length:g}", length=length)
    samples: list[float] = []
    started = time.perf_counter()
    deadline = started + seconds
    while time.perf_counter() < deadline:  # the lease's own loop, timed beat by beat
        before = time.perf_counter()
        lease.beat()
        samples.append(time.perf_counter() - before)
        time.sleep(max(0.0, lease.every - (time.perf_counter() - before)))
    elapsed = time.perf_counter() - started
    return {"lease_seconds": length, "beat_every_seconds": lease.every, "beats": lease.beats,
            "es_writes_per_second_per_node": round(lease.beats / elapsed, 3), "beat_latency": ms_summary(samples)}


def _timed_rounds(settings: Settings, hosts: HostStore, store: JobStore, rounds: int) -> tuple[list[float], int, int]:
    """(seconds of each sweep round, lost jobs the last round found, failures it would have published)."""
    publisher = Counting()
    samples: list[float] = []
    found = 0
    for _ in range(rounds):
        # a new sweep each round: one remembers the jobs it failed, and none of these was really failed
        sweep = LostJobSweep(hosts, store, "node-bench", 30.0, False, lambda doc, delay: None,  # type: ignore[arg-type]
                             lambda queued: None, lambda queued: None, publisher)
        started = time.perf_counter()
        report = sweep.round()
        samples.append(time.perf_counter() - started)
        found = len(report.failed)
    return samples, found, publisher.count


def _put_leases(hosts: HostStore, settings: Settings, dead: list[str]) -> None:
    now = datetime.now(UTC)
    for node in LIVE_NODES + DEAD_NODES:
        gone = node in dead
        hosts.put(LeaseDoc(id=node, kind="api", hostname="bench", started=now - timedelta(hours=1),
                           beat=now - timedelta(minutes=5) if gone else now,
                           expires=now - timedelta(minutes=4) if gone else now + timedelta(hours=1)))
    hosts.client.indices.refresh(index=f"{settings.hosts_alias},{settings.jobs_alias}")


def bench_sweep(settings: Settings, hosts: HostStore, rounds: int) -> dict[str, Any]:
    """The steady state (every host alive: the search finds nothing), then 2 of the 22 hosts dead."""
    client = make_client(settings)
    store = JobStore(client, settings)
    figures: dict[str, Any] = {}
    for name, dead in (("every_host_alive", []), ("two_hosts_dead", DEAD_NODES)):
        _put_leases(hosts, settings, dead)
        samples, found, published = _timed_rounds(settings, hosts, store, rounds)
        figures[name] = {"round": ms_summary(samples), "lost_jobs_found_per_round": found,
                         "failures_counted_not_published": published}
    client.close()
    return figures


def main(argv: list[str] | None = None) -> int:
    parser = benchmark_parser(__doc__, "leases")
    parser.add_argument("--jobs", type=int, default=100_000, help="job documents in the index (default 100000)")
    parser.add_argument("--unfinished", type=int, default=10_000, help="of them submitted or running (default 10000)")
    parser.add_argument("--rounds", type=int, default=50, help="sweep rounds timed (default 50)")
    parser.add_argument("--beat-seconds", type=float, default=20.0, help="seconds each lease is renewed (default 20)")
    args = parser.parse_args(argv)

    base = Settings()
    if not base.uses_external_es:
        from ades.services.elasticsearch import ensure_running

        ensure_running(base)
    settings = base.model_copy(update={"index_prefix": "bench-leases-",
                                       "data_dir": Path(tempfile.mkdtemp(prefix="ades-bench-leases-")) / "data"})
    client = make_client(settings)
    drop_indexes(client, settings)
    ensure_indexes(client, settings)
    version = next(iter(client.nodes.info(node_id="_local")["nodes"].values()))["version"]
    hosts = HostStore(client, settings)
    started = time.perf_counter()
    figures: dict[str, Any] = {"elasticsearch": version, "started": NOW.isoformat(), "machine_cores": os.cpu_count(),
                               "load_average_at_start": [round(x, 2) for x in os.getloadavg()]}
    try:
        figures["beat"] = [bench_beat(hosts, 30.0, args.beat_seconds), bench_beat(hosts, 3.0, args.beat_seconds)]
        print(f"indexing {args.jobs:,} jobs ...", file=sys.stderr)
        figures["index"] = {"jobs": args.jobs, "unfinished": args.unfinished,
                            "seconds": round(index_corpus(settings, args.jobs, args.unfinished), 1)}
        figures["sweep"] = bench_sweep(settings, hosts, args.rounds)
    finally:
        drop_indexes(client, settings)
        client.close()
    figures["run_seconds"] = round(time.perf_counter() - started, 1)
    write_figures(args.out, figures)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
