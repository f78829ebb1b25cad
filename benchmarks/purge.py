"""Benchmark of retention: `ades jobs purge` throughput (jobs/s), beside the rate the same documents were indexed at.

Writes a JSON of figures (default benchmarks/results/purge.json):
- `index`: the corpus indexed with `_bulk` (20,000 documents a request chunked like the group commit's, 1,000 a
  request): `--jobs` old finished jobs (succeeded, failed, dismissed in turn) and `--keep` jobs a purge must leave
  (running, or finished recently), jobs/s;
- `folders`: each old job gets a folder like a finished echo job's (log, process record, outputs.json, one output in
  outputs/, an empty work/ and tmp/), seconds to make them;
- `dry_run`: seconds to count the matches by status;
- `purge`: Purge.run as `ades jobs purge --older-than 30d` runs it (conditional bulk deletes, folders removed),
  jobs/s and seconds; `purge_over_index`: purge jobs/s over index jobs/s, both measured in this run;
- all of that twice: `with_folders` (the headline) and `store_only` (the same corpus, no folders: what the store's
  side costs alone);
- `s3` (with `--s3-jobs`): a smaller purge whose jobs each have 2 objects in a moto bucket, jobs/s.

Usage: python benchmarks/purge.py [--jobs 100000] [--keep 10000] [--s3-jobs 2000] [--out FILE]
Talks only to the Elasticsearch given by ADES_ES_URL or the local node `ades services start` runs (index prefix
`bench-purge-`, dropped at the end), and to the local moto server for `--s3-jobs`.
"""

from __future__ import annotations

import os
import shutil
import sys
import tempfile
import time
import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from common import es_version, store_settings, write_figures
from common import parser as benchmark_parser

from ades.config import Settings
from ades.jobs.folder import DataDir, JobFolder, ProcessRecord
from ades.jobs.retention import Purge
from ades.models import Job, iso
from ades.store import ensure_indexes, make_client
from ades.store.bulk import BulkConnection
from ades.store.purge import PurgeFilter
from ades.store.setup import drop_indexes

NOW = datetime.now(UTC)
OLD = NOW - timedelta(days=45)
FINISHED = ("succeeded", "failed", "dismissed")
CHUNK = 1000


def document(i: int, status: str, ended: datetime | None) -> dict[str, Any]:
    job = Job(process_id=f"proc-{i % 7}", inputs={"message": f"hello {i}"}, labels=[f"campaign-{i % 100}", "bench"],
              user_id=f"user-{i % 5}", created=(ended or NOW) - timedelta(seconds=30))
    doc = job.to_document()
    doc.update({"status": status, "start-time": iso(job.created), "stop-time": iso(ended) if ended else None,
                "progress": 100 if status == "succeeded" else 40})
    return doc


def index_corpus(bulk: BulkConnection, index: str, jobs: int, keep: int) -> tuple[list[str], float]:
    """Index the corpus; the ids of the old finished jobs and the seconds the indexing took."""
    old_ids: list[str] = []
    seconds = 0.0
    total = jobs + keep
    for start in range(0, total, CHUNK):
        lines: list[dict[str, Any]] = []
        for i in range(start, min(total, start + CHUNK)):
            if i < jobs:
                doc = document(i, FINISHED[i % 3], OLD - timedelta(seconds=i))
                old_ids.append(doc["id"])
            else:
                doc = document(i, "running", None) if i % 2 else document(i, "succeeded", NOW - timedelta(days=1))
            lines += [{"index": {"_index": index, "_id": doc["id"]}}, doc]
        started = time.perf_counter()
        answer = bulk.bulk(lines, filter_path="errors")
        seconds += time.perf_counter() - started
        if answer.body.get("errors"):
            raise RuntimeError("the corpus could not be indexed")
    return old_ids, seconds


def make_folders(data_dir: Path, job_ids: list[str]) -> float:
    started = time.perf_counter()
    record = ProcessRecord.here()
    for job_id in job_ids:
        folder = JobFolder(data_dir, job_id)
        folder.prepare(Path("/nonexistent/wrapped.cwl"))  # run folders, the log, the process record
        folder.record_process(record)
        (folder.outputs / "out.txt").write_text("hello\n")
        folder.save_outputs({"out": {"class": "File", "path": str(folder.outputs / "out.txt")}})
    return time.perf_counter() - started


def bench_local(settings: Settings, jobs: int, keep: int, folders: bool) -> dict[str, Any]:
    client = make_client(settings)
    drop_indexes(client, settings)
    ensure_indexes(client, settings)
    bulk = BulkConnection.from_settings(settings)
    try:
        print(f"indexing {jobs:,} + {keep:,} jobs ...", file=sys.stderr)
        old_ids, index_s = index_corpus(bulk, settings.jobs_alias, jobs, keep)
        client.indices.refresh(index=settings.jobs_alias)
        folders_s, entries = 0.0, 0
        if folders:
            print(f"making {jobs:,} folders ...", file=sys.stderr)
            folders_s = make_folders(settings.data_dir, old_ids)
            entries = sum(len(dirs) + len(files) for _, dirs, files in os.walk(JobFolder(settings.data_dir,
                                                                                         old_ids[0]).path))
        purge = Purge(settings, client)
        purge_filter = PurgeFilter(older_than=30 * 86_400)
        dry = purge.run(purge_filter, dry_run=True)
        print(f"purging {dry.total_matched:,} jobs ...", file=sys.stderr)
        report = purge.run(purge_filter)
        left = client.count(index=settings.jobs_alias)["count"]
        folders_left = len(DataDir(settings.data_dir).folders())
        assert report.total_purged == jobs and left == keep and folders_left == 0, (report, left, folders_left)
        assert report.folders == (jobs if folders else 0), report
        index_rate = (jobs + keep) / index_s
        purge_rate = report.total_purged / report.seconds
        return {
            "jobs": jobs, "kept_jobs": keep,
            "index": {"jobs_per_s": round(index_rate), "seconds": round(index_s, 1), "per_request": CHUNK},
            "folders": {"jobs_with_folders": jobs if folders else 0, "seconds_to_make": round(folders_s, 1),
                        "entries_per_folder": entries},
            "dry_run": {"seconds": dry.seconds, "matched": dry.matched},
            "purge": {"jobs_per_s": round(purge_rate), "seconds": report.seconds, "purged": report.purged,
                      "folders_removed": report.folders, "kept": len(report.kept), "page_size": 1000},
            "purge_over_index": round(purge_rate / index_rate, 2),
        }
    finally:
        bulk.close()
        drop_indexes(client, settings)
        client.close()


def bench_s3(settings: Settings, jobs: int, moto_url: str) -> dict[str, Any]:
    from ades.storage import S3Storage

    bucket = f"bench-purge-{uuid.uuid4().hex[:8]}"
    s3 = settings.model_copy(update={"aws_endpoint_url": moto_url, "output_bucket": bucket})
    client = make_client(s3)
    drop_indexes(client, s3)
    ensure_indexes(client, s3)
    storage = S3Storage(bucket, s3.output_prefix, settings=s3)
    storage.ensure_bucket()
    bulk = BulkConnection.from_settings(s3)
    try:
        print(f"S3: {jobs:,} jobs with 2 objects each ...", file=sys.stderr)
        old_ids, _ = index_corpus(bulk, s3.jobs_alias, jobs, 0)
        client.indices.refresh(index=s3.jobs_alias)
        for job_id in old_ids:
            for name in ("out/out.txt", "n/value.json"):
                storage.s3.put_object(Bucket=bucket, Key=storage.key(job_id, *name.split("/")), Body=b"x")
        report = Purge(s3, client).run(PurgeFilter(older_than=30 * 86_400))
        assert report.total_purged == jobs and report.objects == 2 * jobs and report.ok, report
        return {"jobs": jobs, "objects": report.objects, "seconds": report.seconds,
                "jobs_per_s": round(jobs / report.seconds)}
    finally:
        bulk.close()
        drop_indexes(client, s3)
        client.close()
        storage.s3.delete_bucket(Bucket=bucket)


def main(argv: list[str] | None = None) -> int:
    parser = benchmark_parser(__doc__, "purge")
    parser.add_argument("--jobs", type=int, default=100_000, help="old finished jobs to purge (default 100000)")
    parser.add_argument("--keep", type=int, default=10_000, help="jobs the purge must leave (default 10000)")
    parser.add_argument("--s3-jobs", type=int, default=2000, help="jobs of the S3 run; 0: none (default 2000)")
    args = parser.parse_args(argv)

    data = Path(tempfile.mkdtemp(prefix="ades-bench-purge-"))
    base = store_settings()
    settings = base.model_copy(update={"index_prefix": "bench-purge-", "data_dir": data / "data",
                                       "output_bucket": None, "aws_endpoint_url": None})
    client = make_client(settings)
    version = es_version(client)
    client.close()
    started = time.perf_counter()
    figures: dict[str, Any] = {"elasticsearch": version, "started": NOW.isoformat(), "machine_cores": os.cpu_count(),
                               "load_average_at_start": [round(x, 2) for x in os.getloadavg()]}
    try:
        figures["with_folders"] = bench_local(settings, args.jobs, args.keep, folders=True)
        figures["purge_over_index"] = figures["with_folders"]["purge_over_index"]
        figures["store_only"] = bench_local(settings, args.jobs, args.keep, folders=False)
        if args.s3_jobs:
            from ades.services import moto

            moto_url = base.aws_endpoint_url or moto.ensure_running(base)
            figures["s3"] = bench_s3(settings, args.s3_jobs, moto_url)
    finally:
        shutil.rmtree(data, ignore_errors=True)
    figures["run_seconds"] = round(time.perf_counter() - started, 1)
    write_figures(args.out, figures)
    return 0


if __name__ == "__main__":
    sys.exit(main())
