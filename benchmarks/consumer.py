"""Benchmark of the status consumer. Writes benchmarks/results/consumer.json:

- `handler`: updates/s through the consumer handler (`process_event`, what the Lambda runs) into Elasticsearch,
  for SQS batches of 10 (the Lambda default) and 100, one stream and 4 concurrent streams (concurrent Lambdas);
- `pipeline`: publish → visible in Elasticsearch latency p50/p99 through the real moto SNS → SQS and a running
  `ades consumer`, one update at a time, and the same for the direct sink (a straight store write) as a baseline.

Usage: python benchmarks/consumer.py [--jobs 4000] [--samples 200] [--out FILE]
Talks only to 127.0.0.1: the Elasticsearch and moto that `ades services start` runs (or ADES_ES_URL).
"""

from __future__ import annotations

import os
import subprocess
import sys
import time
import uuid
from datetime import UTC, datetime, timedelta
from typing import Any

from common import ms_summary, run_streams, store_all, write_figures
from common import parser as benchmark_parser

from ades.config import Settings
from ades.events.consumer import process_event
from ades.events.pipeline import with_pipeline
from ades.events.sinks import DirectSink, SnsSink
from ades.models import Job, StatusUpdate
from ades.status import Status
from ades.store import JobStore, ensure_indexes, make_client
from ades.store.setup import drop_indexes

T0 = datetime(2026, 1, 1, tzinfo=UTC)


def bench_handler(store: JobStore, n_jobs: int, batch: int, streams: int) -> dict[str, Any]:
    jobs = [Job(process_id="bench") for _ in range(n_jobs)]
    store_all(store, jobs)
    bodies = []
    for step in range(5):
        for j in jobs:
            status = Status.SUCCEEDED if step == 4 else Status.RUNNING
            bodies.append(StatusUpdate(job_id=j.id, status=status, progress=None if step == 4 else step * 25,
                                       timestamp=T0 + timedelta(seconds=step)).model_dump_json())
    events = [
        {"Records": [{"messageId": str(k), "body": b} for k, b in enumerate(bodies[i:i + batch])]}
        for i in range(0, len(bodies), batch)
    ]
    elapsed, failures = run_streams(events, streams, lambda e: len(process_event(e, store)["batchItemFailures"]))
    return {"batch": batch, "streams": streams, "updates": len(bodies),
            "updates_per_s": round(len(bodies) / elapsed), "failed": failures}


def bench_latency(store: JobStore, sink: Any, samples: int) -> dict[str, float]:
    jobs = [Job(process_id="latency") for _ in range(samples)]
    store_all(store, jobs)
    lat = []
    for i, job in enumerate(jobs):
        t = time.perf_counter()
        sink.publish(StatusUpdate(job_id=job.id, status=Status.RUNNING, progress=i % 100))
        while store.get(job.id)["status"] != "running":  # a realtime GET, as GET /jobs/{id} does
            time.sleep(0.002)
        lat.append(time.perf_counter() - t)
    return ms_summary(lat)


def main(argv: list[str] | None = None) -> int:
    parser = benchmark_parser(__doc__, "consumer")
    parser.add_argument("--jobs", type=int, default=4000, help="jobs per handler run (5 updates each)")
    parser.add_argument("--samples", type=int, default=200, help="latency samples per path")
    args = parser.parse_args(argv)

    base = Settings()
    if not base.uses_external_es:
        from ades.services import elasticsearch, moto

        elasticsearch.ensure_running(base)
        moto_url = moto.ensure_running(base)
    else:
        moto_url = base.aws_endpoint_url or f"http://{base.moto_host}:{base.moto_port}"
    name = f"bench-{uuid.uuid4().hex[:6]}"
    settings = with_pipeline(
        base.model_copy(update={"index_prefix": "bench-consumer-", "aws_endpoint_url": moto_url,
                                "status_topic_name": name, "status_queue_name": name, "sns_topic_arn": None,
                                "sqs_queue_url": None, "event_sink": "sns"}),
        need_queue=True,
    )
    client = make_client(settings)
    drop_indexes(client, settings)
    ensure_indexes(client, settings)
    store = JobStore(client, settings)
    figures: dict[str, Any] = {"started": datetime.now(UTC).isoformat(), "machine_cores": os.cpu_count()}
    consumer = None
    try:
        figures["handler"] = []
        for batch, streams in ((10, 1), (100, 1), (10, 4), (100, 4)):
            print(f"handler batch={batch} streams={streams} ...", file=sys.stderr)
            figures["handler"].append(bench_handler(store, args.jobs, batch, streams))
        env = os.environ | {
            "ADES_ES_URL": settings.elasticsearch_url, "ADES_INDEX_PREFIX": settings.index_prefix,
            "ADES_AWS_ENDPOINT_URL": moto_url, "ADES_SQS_QUEUE_URL": settings.sqs_queue_url or "",
            "ADES_SNS_TOPIC_ARN": settings.sns_topic_arn or "",
        }
        consumer = subprocess.Popen([sys.executable, "-m", "ades.cli", "consumer", "--wait", "1"], env=env,
                                    stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        time.sleep(2)
        print("latency through SNS -> SQS -> consumer ...", file=sys.stderr)
        via_queue = bench_latency(store, SnsSink(settings), args.samples)
        print("latency of the direct sink ...", file=sys.stderr)
        direct = bench_latency(store, DirectSink(settings.model_copy(update={"event_sink": "direct"})), args.samples)
        figures["pipeline"] = {
            "publish_to_visible_via_moto": via_queue,
            "baseline_direct_store_write": direct,
            "ratio_p50_queue_over_direct": round(via_queue["p50_ms"] / max(direct["p50_ms"], 0.1), 1),
        }
    finally:
        if consumer is not None:
            consumer.terminate()
            consumer.wait(timeout=30)
        drop_indexes(client, settings)
    write_figures(args.out, figures)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
