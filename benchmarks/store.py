"""Benchmark of the Elasticsearch job store, beside pygeoapi's TinyDB manager run in the same process.

Writes a JSON of figures (default benchmarks/results/store.json):
- `create`: jobs/s for one-at-a-time creates (what the server does per request) and for bulk creates;
- `apply_many`: status updates/s through the monotonic merge for batches of 10 and 100, one stream and several
  concurrent streams (as concurrent Lambda invocations would be);
- `search`: label-filtered search latency p50/p99 at each corpus size (a 1% label), and for a 10% label page 1
  and page 1,000 via `search_after` (totals exact up to 10,000), plus page 1 with an exact total, and page 1,000
  of a 1% label (or its last page, on a corpus under 1,000,000); on the index a fresh install makes (jobs v2,
  sorted on `created`);
- `index_sorting`: the same searches at the largest size on the layout before it (jobs v1, unsorted, as existing
  installs have it), then `ades index migrate`'s copy to the sorted layout (no writers meanwhile: its own speed,
  and how long writes were held), then the searches again, and the ratios after/before;
- `baseline_tinydb`: the same operations with pygeoapi's TinyDBManager, and the ratios.

Usage: python benchmarks/store.py [--sizes 100000 1000000] [--sorting-jobs N] [--out FILE]
Talks only to the Elasticsearch given by ADES_ES_URL or the local node `ades services start` runs.
"""

from __future__ import annotations

import copy
import os
import sys
import tempfile
import time
from datetime import UTC, datetime, timedelta
from typing import Any

from common import es_version, ms_summary, pct, run_streams, store_all, store_settings, write_figures
from common import parser as benchmark_parser

from ades.config import Settings
from ades.models import Job, JobQuery, StatusUpdate
from ades.status import Status
from ades.store import JobStore, ensure_indexes, make_client
from ades.store.migrate import migrate
from ades.store.setup import drop_indexes, mapping

T0 = datetime(2026, 1, 1, tzinfo=UTC)
N_LABELS = 100  # each job carries campaign-(i % 100): a label matches 1% of the corpus


def make_job(i: int) -> Job:
    return Job(
        process_id=f"proc-{i % 7}",
        inputs={"collection": f"L0_SNPP_{i % 13}", "start_datetime": "2016-01-14T08:00:00Z"},
        labels=[f"campaign-{i % N_LABELS}", f"release-{i % 10}", "bench"],
        user_id=f"user-{i % 5}",
        created=T0 + timedelta(milliseconds=i),
    )


def bench_create(store: JobStore, n_single: int, n_bulk: int) -> dict[str, Any]:
    t = time.perf_counter()
    for i in range(n_single):
        store_all(store, [make_job(10_000_000 + i)])
    single = n_single / (time.perf_counter() - t)
    jobs = [make_job(20_000_000 + i) for i in range(n_bulk)]
    t = time.perf_counter()
    store_all(store, jobs)
    bulk = n_bulk / (time.perf_counter() - t)
    return {"single_jobs_per_s": round(single), "bulk_jobs_per_s": round(bulk), "n_single": n_single, "n_bulk": n_bulk}


def bench_apply(store: JobStore, n_jobs: int, batch: int, streams: int) -> dict[str, Any]:
    """Each job gets running, three progress events and a terminal event; updates are sent in batches."""
    jobs = [make_job(30_000_000 + i) for i in range(n_jobs)]
    store_all(store, jobs)
    updates: list[StatusUpdate] = []
    for step in range(5):
        for j in jobs:
            status = Status.SUCCEEDED if step == 4 else Status.RUNNING
            updates.append(
                StatusUpdate(job_id=j.id, status=status, progress=None if step == 4 else step * 25,
                             timestamp=T0 + timedelta(seconds=step), message=f"step {step}")
            )
    batches = [updates[i:i + batch] for i in range(0, len(updates), batch)]
    elapsed, failed = run_streams(batches, streams, lambda b: sum(not r.ok for r in store.apply_many(b)))
    return {
        "batch": batch,
        "streams": streams,
        "updates": len(updates),
        "updates_per_s": round(len(updates) / elapsed),
        "failed": failed,
    }


def load_corpus(store: JobStore, target: int, have: int) -> float:
    t = time.perf_counter()
    chunk = 20_000
    for start in range(have, target, chunk):
        store_all(store, [make_job(i) for i in range(start, min(target, start + chunk))])
    store.refresh()
    return time.perf_counter() - t


def unsorted_index(client: Any, settings: Settings) -> None:
    """`jobs-v1` as ades made it before the sorted layout (same mapping, no index sorting), behind the alias."""
    drop_indexes(client, settings)
    body = mapping("jobs")
    mappings = copy.deepcopy(body["mappings"])
    mappings["_meta"]["schema"] = "ades jobs v1"
    client.indices.create(index=f"{settings.jobs_alias}-v1", mappings=mappings,
                          settings={k: v for k, v in body["settings"].items() if not k.startswith("index.sort")},
                          aliases={settings.jobs_alias: {"is_write_index": True}})
    ensure_indexes(client, settings)


def walk(store: JobStore, label: str, pages: int) -> list[Any]:
    """The search_after cursors of a label's pages of 10 after page 1, up to page `pages` or the last one."""
    after = None
    cursors: list[Any] = []
    for _ in range(pages - 1):
        page = store.search(JobQuery(labels_all=[label], size=10, search_after=after))
        after = page.next_after
        if after is None:
            break
        cursors.append(after)
    return cursors


def timed(store: JobStore, query: JobQuery) -> float:
    t = time.perf_counter()
    store.search(query)
    return time.perf_counter() - t


def bench_search(store: JobStore, queries: int) -> dict[str, Any]:
    lat: list[float] = []
    for k in range(queries):
        label = f"campaign-{k % N_LABELS}"
        t = time.perf_counter()
        page = store.search(JobQuery(labels_all=[label], size=10))
        lat.append(time.perf_counter() - t)
        assert page.jobs, label
    # Walk to page 1,000 of one label with search_after, timing page 1 and pages near 1,000 repeatedly.
    label = "release-3"  # 10% of the corpus: at 100,000 jobs that is exactly 1,000 pages of 10
    cursors = walk(store, label, 1000)
    deep_cursor = cursors[-1] if cursors else None
    rare = "campaign-7"  # 1%: 1,000 pages of 10 at 1,000,000 jobs
    rare_cursors = walk(store, rare, 1000)
    first, deep, first_exact, rare_deep = [], [], [], []
    for _ in range(50):
        first.append(timed(store, JobQuery(labels_all=[label], size=10)))
        deep.append(timed(store, JobQuery(labels_all=[label], size=10, search_after=deep_cursor)))
        first_exact.append(timed(store, JobQuery(labels_all=[label], size=10, exact_total=True)))
        rare_deep.append(timed(store, JobQuery(labels_all=[rare], size=10, search_after=rare_cursors[-1])))
    return {
        "by_label_1pct": ms_summary(lat),
        "page_1": ms_summary(first),
        "page_1_exact_total": ms_summary(first_exact),
        "page_deep": ms_summary(deep),
        "deep_page_number": len(cursors) + 1,
        "deep_over_first_p50": round(pct(deep, 50) / pct(first, 50), 2),
        "page_deep_1pct": ms_summary(rare_deep),
        "deep_page_number_1pct": len(rare_cursors) + 1,
    }


def bench_sorting(client: Any, settings: Settings, store: JobStore, size: int) -> dict[str, Any]:
    """Searches at `size` jobs on the unsorted layout, the migration to the sorted one, the searches again."""
    unsorted_index(client, settings)
    print(f"loading {size} jobs into the unsorted layout ...", file=sys.stderr)
    load_s = load_corpus(store, size, 0)
    print("search before ...", file=sys.stderr)
    before = bench_search(store, queries=500)
    print("ades index migrate ...", file=sys.stderr)
    done = migrate(client, settings, settings.jobs_alias)
    print("search after ...", file=sys.stderr)
    after = bench_search(store, queries=500)
    keys = ("by_label_1pct", "page_1", "page_1_exact_total", "page_deep", "page_deep_1pct")
    return {
        "jobs": size,
        "load_unsorted_s": round(load_s, 1),
        "before": before,
        "migrate": {"source": done.source, "target": done.target, "documents": done.documents,
                    "seconds": round(done.seconds, 1), "documents_per_s": round(done.documents / done.seconds),
                    "writes_held_ms": round(done.held_s * 1000), "passes": done.passes, "writers": 0},
        "after": after,
        "after_over_before": {k: {q: round(after[k][q] / before[k][q], 3) for q in ("p50_ms", "p99_ms")}
                              for k in keys},
    }


def bench_tinydb(n: int) -> dict[str, Any]:
    """pygeoapi's own TinyDB job manager: add, update, list-and-filter by a label (it has no label query)."""
    from pygeoapi.process.manager.tinydb_ import TinyDBManager

    with tempfile.TemporaryDirectory() as tmp:
        manager = TinyDBManager({"name": "TinyDB", "connection": f"{tmp}/jobs.db", "output_dir": tmp})
        t = time.perf_counter()
        for i in range(n):
            manager.add_job({"identifier": f"job-{i}", "status": "accepted", "labels": [f"campaign-{i % N_LABELS}"]})
        add = n / (time.perf_counter() - t)
        t = time.perf_counter()
        for i in range(n):
            manager.update_job(f"job-{i}", {"status": "running", "progress": 50})
        update = n / (time.perf_counter() - t)
        lat = []
        for k in range(50):
            t = time.perf_counter()
            jobs = manager.get_jobs()["jobs"]
            hits = [j for j in jobs if f"campaign-{k}" in j.get("labels", [])][:10]
            lat.append(time.perf_counter() - t)
            assert hits
    return {"jobs": n, "add_jobs_per_s": round(add), "update_per_s": round(update), "search_by_label": ms_summary(lat)}


def main(argv: list[str] | None = None) -> int:
    parser = benchmark_parser(__doc__, "store")
    parser.add_argument("--sizes", type=int, nargs="+", default=[100_000, 1_000_000],
                        help="corpus sizes for the search figures (default: 100000 1000000)")
    parser.add_argument("--apply-jobs", type=int, default=4000, help="jobs in the apply_many runs (5 updates each)")
    parser.add_argument("--tinydb-jobs", type=int, default=2000, help="jobs in the TinyDB baseline")
    parser.add_argument("--sorting-jobs", type=int, default=None,
                        help="corpus of the before/after index-sorting figures (default: the largest size; 0: skip)")
    args = parser.parse_args(argv)

    settings = store_settings(index_prefix=f"bench-{os.getpid()}-")  # two runs must not drop each other's
    client = make_client(settings)
    drop_indexes(client, settings)
    ensure_indexes(client, settings)
    store = JobStore(client, settings)
    version = es_version(client)
    figures: dict[str, Any] = {"elasticsearch": version, "started": datetime.now(UTC).isoformat(), "machine_cores": 2}
    try:
        print("create ...", file=sys.stderr)
        figures["create"] = bench_create(store, n_single=2000, n_bulk=20_000)
        figures["apply_many"] = []
        for batch, streams in ((10, 1), (100, 1), (10, 4), (100, 4)):
            print(f"apply_many batch={batch} streams={streams} ...", file=sys.stderr)
            figures["apply_many"].append(bench_apply(store, args.apply_jobs, batch, streams))
        # Start the search corpus from an empty index so sizes are exact.
        drop_indexes(client, settings)
        ensure_indexes(client, settings)
        figures["search"] = []
        have = 0
        for size in sorted(args.sizes):
            print(f"loading {size} jobs ...", file=sys.stderr)
            load_s = load_corpus(store, size, have)
            have = size
            print(f"search at {size} ...", file=sys.stderr)
            result = bench_search(store, queries=500)
            result.update({"jobs": size, "load_s": round(load_s, 1)})
            figures["search"].append(result)
        sorting_jobs = max(args.sizes) if args.sorting_jobs is None else args.sorting_jobs
        if sorting_jobs:
            figures["index_sorting"] = bench_sorting(client, settings, store, sorting_jobs)
        print("TinyDB baseline ...", file=sys.stderr)
        tiny = bench_tinydb(args.tinydb_jobs)
        figures["baseline_tinydb"] = tiny
        best_apply = max(a["updates_per_s"] for a in figures["apply_many"])
        figures["ratios"] = {
            "create_single_vs_tinydb_add": round(figures["create"]["single_jobs_per_s"] / tiny["add_jobs_per_s"], 1),
            "apply_many_best_vs_tinydb_update": round(best_apply / tiny["update_per_s"], 1),
            "search_p50_tinydb_over_es_smallest_corpus": round(
                tiny["search_by_label"]["p50_ms"] / figures["search"][0]["by_label_1pct"]["p50_ms"], 1
            ),
            "note": f"TinyDB measured at {tiny['jobs']} jobs (it rewrites its whole file per write); "
            f"ES at {figures['search'][0]['jobs']}+ jobs",
        }
    finally:
        drop_indexes(client, settings)
    write_figures(args.out, figures)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
