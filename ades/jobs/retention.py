"""Retention: old finished jobs leave the store, with their folders and their stored outputs.

    purge = Purge(settings, client)          # `ades jobs purge`, and the server's periodic run (Retention)
    report = purge.run(PurgeFilter(older_than=30 * 86_400), progress=bar.update)

A page of jobs at a time (ades.store.purge): conditional deletes in the store first, then, for each job no longer
there, its folder in this host's data dir and its objects in the output bucket (when ADES_OUTPUT_BUCKET is set). In
that order, so a job kept because it was written to after it was found keeps its files too. Only succeeded, failed
and dismissed jobs are ever searched for, and a delete removes only the version found.

Retention runs the purge every interval in the server process that holds the data dir's reconcile lock: one process
per data dir, however many gunicorn workers and servers share it. Purges that share the store but not the data dir
(another host's, or `ades jobs purge` by hand) may run at the same time: a job another purge removed first counts as
gone, and each removes the folders of its own data dir.
"""

from __future__ import annotations

import atexit
import contextlib
import logging
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime
from pathlib import Path

from elasticsearch import Elasticsearch
from pydantic import BaseModel, Field

from ades.config import Settings
from ades.durations import format_duration
from ades.jobs.folder import DataDir
from ades.models import iso
from ades.storage import S3Storage, StorageError
from ades.store.client import StoreUnavailable
from ades.store.logs import LogStore
from ades.store.purge import PAGE_SIZE, Deleted, Found, JobPurger, PurgeFilter, Scan, build_purge_query

S3_THREADS = 8
"""Output listings in flight at once: S3 lists one job's objects a request."""
FOLDER_THREADS = 4
"""Folders removed at once: the unlinks and rmdirs are the kernel's work, which threads overlap
(benchmarks/README.md, Retention)."""
log = logging.getLogger(__name__)


class PurgeReport(BaseModel):
    """What one purge did (or, in a dry run, would do)."""

    older_than: str = Field(description="the age asked, e.g. 30d")
    cutoff: str = Field(description="jobs that ended (or, never ended, were created) before this time")
    statuses: list[str]
    labels: list[str]
    dry_run: bool
    matched: dict[str, int] = Field(default_factory=dict, description="jobs matching when the purge began, by status")
    purged: dict[str, int] = Field(default_factory=dict, description="jobs this purge removed, by status")
    gone: int = Field(default=0, description="jobs another purge removed meanwhile (their files go here too)")
    kept: list[str] = Field(default_factory=list, description="jobs written to after they were found: not removed")
    failed: dict[str, str] = Field(default_factory=dict, description="job id -> why the store refused its delete")
    folders: int = Field(default=0, description="job folders removed from this host's data dir")
    objects: int = Field(default=0, description="stored output objects removed from the output bucket")
    log_chunks: int = Field(default=0, description="chunks of shipped logs removed (ADES_LOG_STORE=elasticsearch)")
    file_errors: list[str] = Field(default_factory=list, description="files or objects that could not be removed")
    stopped: bool = Field(default=False, description="the purge was stopped before its end (the server closes)")
    seconds: float = 0.0

    @property
    def total_matched(self) -> int:
        return sum(self.matched.values())

    @property
    def total_purged(self) -> int:
        return sum(self.purged.values())

    @property
    def ok(self) -> bool:
        return not self.failed and not self.file_errors


class Purge:
    """Removes old finished jobs of the settings' store, their folders in `data_dir` (default the settings') and,
    with ADES_OUTPUT_BUCKET set, their objects in that bucket."""

    def __init__(self, settings: Settings, client: Elasticsearch, *, data_dir: Path | None = None,
                 page_size: int = PAGE_SIZE) -> None:
        self.purger = JobPurger(client, settings, page_size=page_size)
        self.data = DataDir(data_dir or settings.data_dir)
        self.outputs = (S3Storage(settings.output_bucket, settings.output_prefix, settings=settings)
                        if settings.output_bucket else None)
        self.logs = LogStore(client, settings) if settings.log_store == "elasticsearch" else None

    def new_report(self, purge: PurgeFilter, now: datetime, dry_run: bool = False) -> PurgeReport:
        return PurgeReport(older_than=format_duration(purge.older_than), cutoff=iso(purge.cutoff(now)),
                           statuses=[s.value for s in purge.statuses], labels=list(purge.labels), dry_run=dry_run)

    @contextlib.contextmanager
    def scan(self, purge: PurgeFilter, now: datetime) -> Iterator[Scan]:
        """The jobs `purge` removes at `now`, as of now."""
        with self.purger.scan(build_purge_query(purge, now)) as scan:
            yield scan

    def run(self, purge: PurgeFilter, *, dry_run: bool = False, on_total: Callable[[int], None] | None = None,
            progress: Callable[[int], None] | None = None, stop: threading.Event | None = None,
            now: datetime | None = None) -> PurgeReport:
        """Remove (or with `dry_run` only count) the jobs `purge` selects. `on_total` hears how many match,
        `progress` how many more were dealt with after each page; `stop` ends the purge between two pages."""
        started = time.monotonic()
        now = now or datetime.now(UTC)
        report = self.new_report(purge, now, dry_run)
        try:
            self.purger.refresh()  # the scan sees every write made before it (a job found stale would be kept)
            with self.scan(purge, now) as scan:
                report.matched = scan.counts()
                if on_total is not None:
                    on_total(report.total_matched)
                if not dry_run:
                    for page in scan.pages():
                        self.remove(page, report)
                        if progress is not None:
                            progress(len(page))
                        if stop is not None and stop.is_set():
                            report.stopped = True
                            break
            if not dry_run:
                self.purger.refresh()  # listings stop showing the jobs now, not within the refresh interval
        finally:
            self.purger.close()
            report.seconds = round(time.monotonic() - started, 3)
        return report

    def remove(self, page: list[Found], report: PurgeReport) -> Deleted:
        """Delete the page's jobs that are still as found, then the files of those no longer in the store."""
        outcome = self.purger.delete(page)
        purged = Counter(report.purged)
        purged.update(found.status for found in outcome.deleted)
        report.purged = dict(purged)
        report.gone += len(outcome.gone)
        report.kept.extend(found.job_id for found in outcome.kept)
        report.failed.update(outcome.failed)
        removed = [found.job_id for found in outcome.removed]
        with ThreadPoolExecutor(max_workers=FOLDER_THREADS, thread_name_prefix="ades-purge-rm") as pool:
            for path, gone in pool.map(self._remove_folder, removed):
                if gone is None:
                    continue
                if gone:
                    report.folders += 1
                else:
                    report.file_errors.append(f"{path}: could not be removed entirely")
        if self.outputs is not None and removed:
            self._remove_outputs(removed, report)
        if self.logs is not None and removed:
            try:
                report.log_chunks += self.logs.delete(removed)
            except StoreUnavailable as err:
                report.file_errors.append(f"shipped logs of {len(removed)} jobs: {err}")
        return outcome

    def _remove_folder(self, job_id: str) -> tuple[Path, bool | None]:
        """The job's folder and whether it is gone now (None: there was none on this host)."""
        folder = self.data.job(job_id)
        if not folder.exists():
            return folder.path, None
        folder.remove()
        return folder.path, not folder.exists()

    def _remove_outputs(self, job_ids: list[str], report: PurgeReport) -> None:
        assert self.outputs is not None
        outputs = self.outputs
        keys: list[str] = []
        with ThreadPoolExecutor(max_workers=S3_THREADS, thread_name_prefix="ades-purge-s3") as pool:
            for job_id, listed in zip(job_ids, pool.map(self._keys_of, job_ids), strict=True):
                if isinstance(listed, StorageError):
                    report.file_errors.append(f"job {job_id}: {listed}")
                else:
                    keys.extend(listed)
        try:
            outputs.delete_keys(keys)
        except StorageError as err:
            report.file_errors.append(str(err))
        else:
            report.objects += len(keys)

    def _keys_of(self, job_id: str) -> list[str] | StorageError:
        assert self.outputs is not None
        try:
            return self.outputs.job_keys(job_id)
        except StorageError as err:
            return err


class Retention:
    """The periodic purge of a server: every `interval` seconds, finished jobs older than `older_than` go. The first
    purge runs at once; `close` (or the process's exit) stops it between two pages and waits for its thread."""

    def __init__(self, settings: Settings, client: Elasticsearch, older_than: float, interval: float,
                 data_dir: Path | None = None) -> None:
        self.purge = Purge(settings, client, data_dir=data_dir)
        self.filter = PurgeFilter(older_than=older_than)
        self.interval = interval
        self.runs = 0
        self.last: PurgeReport | None = None
        self._closed = threading.Event()
        self._ran = threading.Condition()
        self._thread = threading.Thread(target=self._loop, name="ades-retention", daemon=True)

    def start(self) -> None:
        self._thread.start()
        # a gunicorn worker leaves by sys.exit without closing its app: stop between two pages then too, rather than
        # be cut off between a page's deletes and the removal of its files
        atexit.register(self.close)

    def close(self, timeout: float = 30.0) -> None:
        self._closed.set()
        atexit.unregister(self.close)
        if self._thread.is_alive() and self._thread is not threading.current_thread():
            self._thread.join(timeout)

    @property
    def running(self) -> bool:
        return self._thread.is_alive()

    def wait_runs(self, count: int, timeout: float) -> bool:
        """Whether `count` purges have ended within `timeout` seconds."""
        with self._ran:
            return self._ran.wait_for(lambda: self.runs >= count, timeout)

    def _loop(self) -> None:
        while not self._closed.is_set():
            report = None
            try:
                report = self.purge.run(self.filter, stop=self._closed)
            except Exception as err:  # the store away for a while: the next interval tries again
                log.warning("retention: the purge of jobs older than %s failed: %s",
                            format_duration(self.filter.older_than), err)
            if report is not None:
                _log_report(report)
            with self._ran:
                self.runs += 1
                self.last = report
                self._ran.notify_all()
            if self._closed.wait(self.interval):
                return


def _log_report(report: PurgeReport) -> None:
    if report.total_purged or report.folders or report.objects:
        log.info("retention: removed %d finished jobs older than %s (ended before %s), %d folders, %d stored "
                 "outputs, in %.1f s", report.total_purged, report.older_than, report.cutoff, report.folders,
                 report.objects, report.seconds)
    if not report.ok:
        log.warning("retention: %d deletes refused, %d files left: %s", len(report.failed), len(report.file_errors),
                    "; ".join([*report.failed.values(), *report.file_errors][:3]))
