"""A batch of N echo items accepted in one request, against the same N as single submissions, in the same run.

One `ades serve` (1 server process, direct sink), execution paused (`ades execution pause`) so that the figures are
the API node's and the store's, not the jobs': (1) one POST of a batch of `--items` items: seconds to its 201 (every
item checked against the package, the parent and every child indexed in bulk), seconds until every child is
searchable by `parent-id`, and ES documents per second; (2) the parent's status (`GET /jobs/{id}`: one aggregation
over its children, and the settle that follows it) read `--reads` times: latency (a batch that did not change
is answered from ES's request cache), and the aggregation's own `took` uncached,
at `--items` children and at 1,000 (a second, small batch); (3) `DELETE` of each batch (every child dismissed
in bulk): seconds; (4) `--items` single submissions of the same echo job
(benchmarks/loadgen.py, `--connections` keep-alive connections): jobs/s. Writes benchmarks/results/batch.json.

Usage: python benchmarks/batch.py [--items 100000] [--reads 20] [--connections 16] [--port 5093]
Talks only to 127.0.0.1.
"""

from __future__ import annotations

import json
import sys
import tempfile
import time
import uuid
from pathlib import Path
from typing import Any

import requests
from common import ades_server, ms_summary, require_free, store_settings, write_figures
from common import parser as benchmark_parser
from loadgen import client_kind, post_load, summary

from ades.jobs.pause import pause
from ades.store import make_client
from ades.store.batches import counts_body
from ades.store.setup import drop_indexes


def _batch_body(items: int, tag: str) -> bytes:
    return json.dumps({"inputs": {}, "labels": [tag],
                       "batch": {"items": [{"inputs": {"message": f"item {i}"}} for i in range(items)]}}).encode()


def accept_batch(http: requests.Session, base: str, items: int, tag: str, es: Any, alias: str) -> dict[str, Any]:
    body = _batch_body(items, tag)
    started = time.perf_counter()
    answer = http.post(f"{base}/processes/echo/execution", data=body, timeout=3600,
                       headers={"Content-Type": "application/json", "Prefer": "respond-async"})
    accepted = time.perf_counter() - started
    if answer.status_code != 201:
        raise SystemExit(f"the batch was refused: {answer.status_code} {answer.text[:500]}")
    parent = answer.json()["jobID"]
    while True:
        es.indices.refresh(index=alias)
        found = es.count(index=alias, query={"term": {"parent-id": parent}})["count"]
        if found >= items:
            break
        time.sleep(0.2)
    searchable = time.perf_counter() - started
    return {"items": items, "body_bytes": len(body), "parent": parent, "seconds_to_201": round(accepted, 3),
            "seconds_until_every_child_is_searchable": round(searchable, 3),
            "es_documents_per_s": round((items + 1) / accepted, 1)}


def read_cost(http: requests.Session, base: str, parent: str, reads: int, es: Any, alias: str) -> dict[str, Any]:
    samples, took = [], []
    for _ in range(reads):
        started = time.perf_counter()
        info = http.get(f"{base}/jobs/{parent}", timeout=60).json()
        samples.append(time.perf_counter() - started)
        # uncached: a size-0 search is served from the shard request cache until the next refresh, and a live
        # batch's children change between any two refreshes
        answer = es.search(index=alias, request_cache=False, **counts_body(parent))
        took.append(answer["took"] / 1000)  # ms_summary takes seconds
    return {"children": info["batch"]["total"], "get_status_ms": ms_summary(samples),
            "aggregation_took_ms": ms_summary(took), "counts": info["batch"]["counts"]}


def dismiss_cost(http: requests.Session, base: str, parent: str) -> dict[str, Any]:
    started = time.perf_counter()
    info = http.delete(f"{base}/jobs/{parent}", timeout=3600).json()
    return {"seconds": round(time.perf_counter() - started, 3), "dismissed": info["batch"]["counts"]["dismissed"]}


def main(argv: list[str] | None = None) -> int:
    p = benchmark_parser(__doc__, "batch")
    p.add_argument("--items", type=int, default=100_000)
    p.add_argument("--reads", type=int, default=20)
    p.add_argument("--connections", type=int, default=16)
    p.add_argument("--port", type=int, default=5093)
    args = p.parse_args(argv)
    require_free(args.port)
    prefix = f"bench-batch-{uuid.uuid4().hex[:8]}-"
    settings = store_settings(index_prefix=prefix)
    es = make_client(settings)
    alias = settings.jobs_alias
    figures: dict[str, Any] = {"items": args.items, "client": client_kind()}
    body_limit = str(max(10 * 1024 * 1024, 80 * args.items))
    with tempfile.TemporaryDirectory(prefix="ades-bench-batch-") as work:
        data_dir = Path(work) / "data"
        data_dir.mkdir()
        pause(data_dir, "benchmarks/batch.py")  # the API node's and the store's cost, not the jobs'
        try:
            with ades_server(args.port, str(data_dir), index_prefix=prefix, max_queued_jobs="0",
                             max_body_bytes=body_limit) as base:
                http = requests.Session()
                http.trust_env = False
                print(f"a batch of {args.items} ...", file=sys.stderr)
                big = accept_batch(http, base, args.items, "big", es, alias)
                small = accept_batch(http, base, 1000, "small", es, alias)
                figures["batch"] = big
                figures["batch_of_1000"] = small
                figures["progress_read"] = {
                    "at_items": read_cost(http, base, big["parent"], args.reads, es, alias),
                    "at_1000": read_cost(http, base, small["parent"], args.reads, es, alias)}
                figures["dismiss"] = {"at_1000": dismiss_cost(http, base, small["parent"]),
                                      "at_items": dismiss_cost(http, base, big["parent"])}
                print(f"{args.items} single submissions ...", file=sys.stderr)
                port = int(base.rsplit(":", 1)[1])
                body = json.dumps({"inputs": {"message": "single"}}).encode()
                outcome = post_load(port, "/processes/echo/execution", body, args.items, args.connections,
                                    headers={"Prefer": "respond-async"})
                figures["singles"] = summary(outcome, args.items) | {"connections": args.connections}
        finally:
            drop_indexes(es, settings)
    singles = figures["singles"]["seconds"]
    figures["ratio_single_submissions_seconds_to_batch_201"] = round(singles / big["seconds_to_201"], 1)
    write_figures(args.out, figures)
    return 0


if __name__ == "__main__":
    sys.exit(main())
