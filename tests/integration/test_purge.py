"""Retention against the real Elasticsearch (and moto for stored outputs): `ades jobs purge` and the server's periodic
purge remove exactly the old finished jobs a filter selects, with their folders and S3 objects; never an unfinished
job, never one written to between the search that found it and its delete; a dry run counts and deletes nothing."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import threading
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from elasticsearch import Elasticsearch

from ades.config import Settings
from ades.jobs.folder import JobFolder
from ades.jobs.retention import Purge
from ades.jobs.service import JobService
from ades.models import Job, StatusUpdate, iso
from ades.status import Status
from ades.storage import S3Storage, s3_client
from ades.store import JobStore, ensure_indexes
from ades.store.logs import LogStore
from ades.store.purge import Found, JobPurger, PurgeFilter
from tests.conftest import free_port
from tests.helpers import wait_for
from tests.integration.conftest import start_serve

NOW = datetime.now(UTC)
OLD = NOW - timedelta(days=40)
RECENT = NOW - timedelta(days=2)
MONTH = 30 * 86_400.0


def put_job(es: Elasticsearch, settings: Settings, status: str, *, ended: datetime | None = None,
            created: datetime = OLD, labels: tuple[str, ...] = (), started: datetime | None = None) -> str:
    """A job document as the merge leaves it in `status`, with a folder holding a log and an output."""
    job = Job(process_id="echo", labels=list(labels), created=created)
    doc = job.to_document()
    doc.update({"status": status, "stop-time": iso(ended) if ended else None,
                "start-time": iso(started) if started else None})
    es.index(index=settings.jobs_alias, id=job.id, document=doc)
    folder = JobFolder(settings.data_dir, job.id)
    folder.make()
    folder.append_log("a line of the log")
    folder.outputs.mkdir()
    (folder.outputs / "out.txt").write_text("an output")
    return job.id


def exists(es: Elasticsearch, settings: Settings, job_id: str) -> bool:
    return bool(es.exists(index=settings.jobs_alias, id=job_id))


def remaining(es: Elasticsearch, settings: Settings, ids: dict[str, str]) -> set[str]:
    """The names of the jobs of `ids` (name -> id) still in the store."""
    return {name for name, job_id in ids.items() if exists(es, settings, job_id)}


def with_folders(settings: Settings, ids: dict[str, str]) -> set[str]:
    return {name for name, job_id in ids.items() if JobFolder(settings.data_dir, job_id).exists()}


@pytest.fixture
def jobs(es: Elasticsearch, settings: Settings) -> dict[str, str]:
    """Jobs of every kind a purge must tell apart, by name."""
    ids = {
        "old-succeeded": put_job(es, settings, "succeeded", ended=OLD, started=OLD, labels=("a",)),
        "old-failed": put_job(es, settings, "failed", ended=OLD, started=OLD, labels=("a", "b")),
        "old-dismissed-never-started": put_job(es, settings, "dismissed", ended=OLD),
        "old-without-end-time": put_job(es, settings, "failed"),
        "recent-succeeded": put_job(es, settings, "succeeded", ended=RECENT, started=RECENT, labels=("a",)),
        "recently-ended-long-ago-created": put_job(es, settings, "failed", ended=RECENT),
        "old-running": put_job(es, settings, "running", started=OLD, labels=("a",)),
        "old-submitted": put_job(es, settings, "submitted", labels=("a",)),
        "old-succeeded-label-c": put_job(es, settings, "succeeded", ended=OLD, started=OLD, labels=("c",)),
        # made by POST /jobs (OGC API Processes Part 4) and never started: purged by its age, as a job never ended
        "old-created": put_job(es, settings, "created"),
        "recent-created": put_job(es, settings, "created", created=RECENT),
    }
    es.indices.refresh(index=settings.jobs_alias)
    return ids


OLD_FINISHED = {"old-succeeded", "old-failed", "old-dismissed-never-started", "old-without-end-time",
                "old-succeeded-label-c", "old-created"}


def test_purge_removes_exactly_the_old_finished_jobs_and_their_folders(es, settings, jobs) -> None:
    report = Purge(settings, es).run(PurgeFilter(older_than=MONTH))
    assert remaining(es, settings, jobs) == set(jobs) - OLD_FINISHED
    assert with_folders(settings, jobs) == set(jobs) - OLD_FINISHED
    assert report.purged == {"succeeded": 2, "failed": 2, "dismissed": 1, "created": 1}
    assert report.folders == 6 and report.ok and not report.kept and report.gone == 0
    # listings see it at once
    assert es.count(index=settings.jobs_alias)["count"] == len(jobs) - len(OLD_FINISHED)


def test_statuses_and_labels_narrow_the_purge(es, settings, jobs) -> None:
    purge = Purge(settings, es)
    report = purge.run(PurgeFilter(older_than=MONTH, labels=["a"], statuses=["succeeded"]))
    assert report.purged == {"succeeded": 1}
    assert remaining(es, settings, jobs) == set(jobs) - {"old-succeeded"}
    report = purge.run(PurgeFilter(older_than=MONTH, labels=["a", "b"]))
    assert report.purged == {"failed": 1}
    assert remaining(es, settings, jobs) == set(jobs) - {"old-succeeded", "old-failed"}
    assert with_folders(settings, jobs) == set(jobs) - {"old-succeeded", "old-failed"}


def test_unfinished_jobs_are_never_removed_however_old(es, settings, jobs) -> None:
    Purge(settings, es).run(PurgeFilter(older_than=0))
    assert remaining(es, settings, jobs) == {"old-running", "old-submitted"}
    assert with_folders(settings, jobs) == {"old-running", "old-submitted"}


def test_a_dry_run_counts_by_status_and_deletes_nothing(es, settings, jobs) -> None:
    report = Purge(settings, es).run(PurgeFilter(older_than=MONTH), dry_run=True)
    assert report.matched == {"succeeded": 2, "failed": 2, "dismissed": 1, "created": 1}
    assert report.purged == {} and report.folders == 0
    assert remaining(es, settings, jobs) == set(jobs)
    assert with_folders(settings, jobs) == set(jobs)


def test_a_job_written_between_its_search_and_its_delete_is_kept(es, settings, jobs, job_store) -> None:
    purge = Purge(settings, es)
    purge_filter = PurgeFilter(older_than=MONTH)
    report = purge.new_report(purge_filter, NOW)
    with purge.scan(purge_filter, NOW) as scan:
        (page,) = list(scan.pages())
        assert {f.job_id for f in page} == {jobs[name] for name in OLD_FINISHED}
        # the races: a writer turns a found job `running` (whoever it is: the store is public), and the consumer
        # applies a late `running` event to a job dismissed before it started (it records when it started)
        turned = jobs["old-succeeded"]
        doc = es.get(index=settings.jobs_alias, id=turned)["_source"]
        es.index(index=settings.jobs_alias, id=turned, document={**doc, "status": "running", "stop-time": None})
        late = jobs["old-dismissed-never-started"]
        applied = job_store.apply(StatusUpdate(job_id=late, status=Status.RUNNING, timestamp=OLD))
        assert applied.outcome == "applied"
        outcome = purge.remove(page, report)
    assert {f.job_id for f in outcome.kept} == {turned, late}
    assert sorted(report.kept) == sorted([turned, late])
    assert exists(es, settings, turned) and exists(es, settings, late)
    assert JobFolder(settings.data_dir, turned).exists() and JobFolder(settings.data_dir, late).exists()
    assert remaining(es, settings, jobs) == set(jobs) - OLD_FINISHED | {"old-succeeded", "old-dismissed-never-started"}
    # the next purge looks again: the running one stays, the dismissed one (still finished) goes
    Purge(settings, es).run(purge_filter)
    assert exists(es, settings, turned) and not exists(es, settings, late)


def test_a_job_another_purge_removed_first_counts_as_gone_and_loses_its_folder(es, settings, jobs) -> None:
    purge = Purge(settings, es)
    purge_filter = PurgeFilter(older_than=MONTH, labels=["c"])
    report = purge.new_report(purge_filter, NOW)
    with purge.scan(purge_filter, NOW) as scan:
        (page,) = list(scan.pages())
        es.delete(index=settings.jobs_alias, id=jobs["old-succeeded-label-c"])  # by another host's purge
        purge.remove(page, report)
    assert report.gone == 1 and report.purged == {} and not report.kept
    assert "old-succeeded-label-c" not in with_folders(settings, jobs)


def test_many_pages(es, settings) -> None:
    ids = [put_job(es, settings, "succeeded", ended=OLD) for _ in range(25)]
    keep = put_job(es, settings, "running")
    es.indices.refresh(index=settings.jobs_alias)
    pages: list[int] = []
    report = Purge(settings, es, page_size=7).run(PurgeFilter(older_than=MONTH), progress=pages.append)
    assert pages == [7, 7, 7, 4] and report.purged == {"succeeded": 25}
    assert not any(exists(es, settings, i) for i in ids) and exists(es, settings, keep)


def test_a_stop_ends_the_purge_between_two_pages(es, settings) -> None:
    ids = [put_job(es, settings, "failed", ended=OLD) for _ in range(25)]
    es.indices.refresh(index=settings.jobs_alias)
    stop = threading.Event()
    stop.set()  # asked before the first page ends: that page is finished, files and all, and no other begins
    report = Purge(settings, es, page_size=7).run(PurgeFilter(older_than=MONTH), stop=stop)
    assert report.stopped and report.purged == {"failed": 7} and report.folders == 7
    gone = [i for i in ids if not exists(es, settings, i)]
    assert len(gone) == 7 and not any(JobFolder(settings.data_dir, i).exists() for i in gone)
    assert all(JobFolder(settings.data_dir, i).exists() for i in ids if i not in gone)


# --- stored outputs in S3 (moto) ----------------------------------------------------------------------------------
@pytest.fixture
def s3_settings(settings: Settings, moto_url: str) -> Iterator[Settings]:
    s3 = settings.model_copy(update={"aws_endpoint_url": moto_url, "output_storage": "s3",
                                     "output_bucket": f"ades-purge-{uuid.uuid4().hex[:12]}", "output_prefix": "runs"})
    client = s3_client(s3)
    client.create_bucket(Bucket=s3.output_bucket)
    yield s3
    keys = [o["Key"] for page in client.get_paginator("list_objects_v2").paginate(Bucket=s3.output_bucket)
            for o in page.get("Contents", [])]
    if keys:
        client.delete_objects(Bucket=s3.output_bucket, Delete={"Objects": [{"Key": k} for k in keys]})
    client.delete_bucket(Bucket=s3.output_bucket)


def store_outputs(storage: S3Storage, job_id: str, tmp_path: Path) -> None:
    out = tmp_path / job_id
    out.mkdir()
    (out / "a.txt").write_text("a")
    (out / "a.txt.idx").write_text("index")
    file = {"class": "File", "path": str(out / "a.txt"), "basename": "a.txt",
            "secondaryFiles": [{"class": "File", "path": str(out / "a.txt.idx"), "basename": "a.txt.idx"}]}
    storage.store(job_id, {"out": file, "n": 3}, out)


def test_stored_outputs_go_with_their_jobs(es, s3_settings, jobs, tmp_path) -> None:
    storage = S3Storage(s3_settings.output_bucket or "", s3_settings.output_prefix, settings=s3_settings)
    for job_id in jobs.values():
        store_outputs(storage, job_id, tmp_path)
    report = Purge(s3_settings, es).run(PurgeFilter(older_than=MONTH))
    assert report.objects == 4 * len(OLD_FINISHED) and report.ok  # a.txt, its index, n's value, the manifest
    for name, job_id in jobs.items():
        keys = storage.job_keys(job_id)
        assert (len(keys) == 0) == (name in OLD_FINISHED), (name, keys)


def test_a_missing_bucket_means_no_stored_outputs(es, settings, jobs, moto_url) -> None:
    nowhere = settings.model_copy(update={"aws_endpoint_url": moto_url,
                                          "output_bucket": f"ades-none-{uuid.uuid4().hex[:12]}"})
    report = Purge(nowhere, es).run(PurgeFilter(older_than=MONTH))
    assert report.ok and report.objects == 0 and report.total_purged == len(OLD_FINISHED)


# --- the command ----------------------------------------------------------------------------------------------
def run_purge(settings: Settings, *arguments: str) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "ADES_ES_URL": settings.elasticsearch_url, "ADES_INDEX_PREFIX": settings.index_prefix,
           "ADES_DATA_DIR": str(settings.data_dir)}
    env.pop("ADES_OUTPUT_BUCKET", None)
    return subprocess.run([sys.executable, "-m", "ades.cli", "jobs", "purge", *arguments], env=env,
                          capture_output=True, text=True, timeout=120, cwd=settings.data_dir.parent)


def test_the_command_counts_then_purges(es, settings, jobs) -> None:
    counted = run_purge(settings, "--older-than", "30d", "--dry-run")
    assert counted.returncode == 0, counted.stderr
    assert "dry run: 6 finished or created jobs ended before" in counted.stdout
    assert "created 1, dismissed 1, failed 2, succeeded 2; nothing was deleted" in counted.stdout
    assert remaining(es, settings, jobs) == set(jobs)

    done = run_purge(settings, "--older-than", "30d", "--status", "failed,dismissed", "--json")
    assert done.returncode == 0, done.stderr
    report: dict[str, Any] = json.loads(done.stdout)
    assert report["purged"] == {"failed": 2, "dismissed": 1} and report["folders"] == 3
    assert report["older_than"] == "30d" and not report["dry_run"]
    assert remaining(es, settings, jobs) == set(jobs) - {"old-failed", "old-dismissed-never-started",
                                                          "old-without-end-time"}


def test_the_command_refuses_a_bad_age_and_touches_nothing(es, settings, jobs) -> None:
    refused = run_purge(settings, "--older-than", "a month")
    assert refused.returncode == 2
    assert "argument --older-than: 'a month' is not a duration" in refused.stderr
    assert remaining(es, settings, jobs) == set(jobs)


# --- the server's periodic purge ------------------------------------------------------------------------------
def test_the_server_purges_periodically_and_stops_when_it_closes(es, settings, jobs) -> None:
    with_retention = settings.model_copy(update={"retention": "30d", "retention_interval": "1h"})
    service = JobService(with_retention, JobStore(es, with_retention), "http://127.0.0.1:5000")
    try:
        service.reconcile()  # the process that wins the data dir's reconcile lock runs retention
        assert service.retention is not None
        assert service.retention.wait_runs(1, 30)
        assert remaining(es, settings, jobs) == set(jobs) - OLD_FINISHED
        assert with_folders(settings, jobs) == set(jobs) - OLD_FINISHED
        other = JobService(with_retention, JobStore(es, with_retention), "http://127.0.0.1:5000")
        other.reconcile()  # another process of the same data dir: not its job
        assert other.retention is None
        other.close()
    finally:
        service.close()
    # closing stopped it while it waited for its next run (an hour away)
    assert not service.retention.running


def test_no_retention_by_default(es, settings) -> None:
    service = JobService(settings, JobStore(es, settings), "http://127.0.0.1:5000")
    service.reconcile()
    assert service.retention is None
    service.close()


def test_ades_serve_purges_with_retention_set_and_stops_on_sigterm(es, settings, jobs, tmp_path) -> None:
    port = free_port()
    env = {**os.environ, "ADES_ES_URL": settings.elasticsearch_url, "ADES_INDEX_PREFIX": settings.index_prefix,
           "ADES_DATA_DIR": str(settings.data_dir), "ADES_EVENT_SINK": "direct", "ADES_RETENTION": "30d",
           "ADES_PUBLIC_URL": f"http://127.0.0.1:{port}"}
    log = tmp_path / "server.log"
    server = start_serve(env, port, log, "--workers", "2", "--job-workers", "1")
    try:
        wait_for(lambda: not remaining(es, settings, jobs) & OLD_FINISHED, 60, "the old finished jobs to go")
        assert remaining(es, settings, jobs) == set(jobs) - OLD_FINISHED
        # a job's folder goes once its document has left the store: a moment after the search above saw that
        wait_for(lambda: not with_folders(settings, jobs) & OLD_FINISHED, 30, "their folders to go")
        assert with_folders(settings, jobs) == set(jobs) - OLD_FINISHED
    finally:
        server.terminate()
        assert server.wait(timeout=60) == 0, log.read_text()[-3000:]
    assert "Traceback" not in log.read_text()


def test_shipped_logs_go_with_their_jobs(es, settings, jobs) -> None:
    shipping = settings.model_copy(update={"log_store": "elasticsearch"})
    ensure_indexes(es, shipping)
    logs = LogStore(es, shipping)
    for name in ("old-succeeded", "recent-succeeded"):
        logs.append(jobs[name], 0, "first\n")
        logs.append(jobs[name], 6, "last\n", final=True, refresh=True)
    report = Purge(shipping, es).run(PurgeFilter(older_than=MONTH))
    assert report.log_chunks == 2
    es.indices.refresh(index=shipping.logs_alias)
    assert logs.read(jobs["old-succeeded"]).text == "" and logs.read(jobs["recent-succeeded"]).text == "first\nlast\n"


def test_a_delete_goes_to_the_index_the_job_was_found_in(es, settings) -> None:
    """After a migration moves the alias, a delete conditional on the old copy's _seq_no must not reach the new
    copy, whose sequence numbers count apart and can match by chance."""
    old, new = f"{settings.jobs_alias}-old", f"{settings.jobs_alias}-new"
    for index in (old, new):
        es.index(index=index, id="job-1", document={"id": "job-1", "status": "running"})
        es.index(index=index, id="job-1", document={"id": "job-1", "status": "succeeded"}, refresh=True)
    found = es.search(index=old, query={"ids": {"values": ["job-1"]}}, seq_no_primary_term=True)["hits"]["hits"][0]
    alias = f"{settings.index_prefix}moved"
    es.indices.put_alias(index=new, name=alias)
    purger = JobPurger(es, settings.model_copy(update={"index_prefix": settings.index_prefix}))
    purger.index = alias  # the alias now points at the new copy, as after a migration
    outcome = purger.delete([Found("job-1", "succeeded", found["_seq_no"], found["_primary_term"], found["_index"])])
    purger.close()
    assert [f.job_id for f in outcome.deleted] == ["job-1"]
    assert not es.exists(index=old, id="job-1") and es.exists(index=new, id="job-1")
    es.indices.delete(index=f"{old},{new}")
