"""What every request handler needs: the stores, the executor (made lazily), and loaded packages (cached).

One `AdesContext` per Flask app, kept in `app.extensions["ades"]`. Under gunicorn every worker process builds its
own app, hence its own executor: a job can only be cancelled by the worker process that started it (see jobs.py).
"""

from __future__ import annotations

import functools
import logging
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from flask import current_app

from ades.api.backpressure import Admission
from ades.api.quota import UserQuota
from ades.config import Settings
from ades.cwl import Package, PackageError, load_package
from ades.events.sinks import make_sink
from ades.events.update_job import SinkConfig
from ades.execute.base import Executor
from ades.execute.journal import Journal
from ades.execute.reconcile import Reconciler, Report, claim
from ades.execute.scheduler import JobScheduler, QueuedJob
from ades.storage import S3Storage, StorageConfig
from ades.store import JobStore, ProcessStore
from ades.store.batcher import CreateBatcher
from ades.store.freshness import WriteMarks
from ades.store.processes import DeployedProcess

log = logging.getLogger(__name__)


@dataclass
class AdesContext:
    settings: Settings
    job_store: JobStore
    process_store: ProcessStore
    base_url: str
    file_roots: list[Path] = field(default_factory=list)
    workers: int | None = None
    sync_timeout: float = 600.0
    executor_factory: Any = None
    """Callable () -> Executor; None: by settings.executor, a LocalExecutor publishing through make_sink(settings)
    or a DaskExecutor on settings.dask_scheduler_address."""

    _executor: Executor | None = None
    _lock: threading.Lock = field(default_factory=threading.Lock)
    _packages: dict[str, Package] = field(default_factory=dict)
    _reconcile_lock: Any = None

    @functools.cached_property
    def sink_config(self) -> SinkConfig:
        """Where jobs' update-job steps publish. Resolved once: against a local endpoint without a topic ARN the
        topic is found by name, which is AWS calls that must not be repeated on every submission."""
        return SinkConfig.from_settings(self.settings)

    @functools.cached_property
    def storage_config(self) -> StorageConfig:
        """Where job outputs go (ADES_OUTPUT_STORAGE); an S3 bucket is created if missing (local setups)."""
        config = StorageConfig.from_settings(self.settings, self.base_url)
        storage = config.make()
        if isinstance(storage, S3Storage):
            storage.ensure_bucket(self.settings.aws_region)
        return config

    @functools.cached_property
    def creator(self) -> CreateBatcher[QueuedJob]:
        """Group commit of new jobs (ades.store.batcher): concurrent submissions share one journal write and one
        bulk, then go to the scheduler (and so to the executor)."""
        return CreateBatcher(self.job_store, on_written=self.write_marks.mark, journal=self.journal.append_many,
                             then=self.scheduler.add)

    @functools.cached_property
    def write_marks(self) -> WriteMarks:
        """Listings see this host's new jobs at once, refreshing only when something was written (freshness.py)."""
        return WriteMarks(Path(self.settings.data_dir) / f"{self.settings.index_prefix}jobs.written",
                          self.job_store.refresh)

    @functools.cached_property
    def journal(self) -> Journal:
        """This process's submission journal (ades.execute.journal): what reconciliation re-queues after a crash."""
        return Journal(Path(self.settings.data_dir), self.job_store.statuses)

    @functools.cached_property
    def admission(self) -> Admission:
        return Admission(self.job_store, self.settings.max_queued_jobs)

    @functools.cached_property
    def quota(self) -> UserQuota:
        """Per-user cap on unfinished jobs (ades.api.quota), shared by this host's server processes."""
        return UserQuota(self.job_store, self.settings.max_running_jobs_per_user,
                         Path(self.settings.data_dir) / "quota")

    @functools.cached_property
    def scheduler(self) -> JobScheduler:
        """Jobs waiting on dependencies or a delay (ades.execute.scheduler); others pass straight through."""
        return JobScheduler(self.job_store.statuses, lambda spec: self.executor.submit(spec),
                            functools.partial(make_sink, self.settings))

    def reconcile(self) -> Report | None:
        """Settle jobs a previous run left unfinished (ades.execute.reconcile), if this process wins the data dir's
        lock; None if another process of this server does it."""
        handle = claim(Path(self.settings.data_dir))
        if handle is None:
            return None
        self._reconcile_lock = handle
        reconciler = Reconciler(self.job_store, Path(self.settings.data_dir), self.requeue,
                                functools.partial(make_sink, self.settings))
        return reconciler.run()

    def requeue(self, queued: QueuedJob) -> None:
        """A job reconciliation found waiting: journaled here again (its old journal goes), then scheduled."""
        self.journal.append(queued)
        self.scheduler.add(queued)

    # --- executor ---
    @property
    def executor(self) -> Executor:
        # Lazy: importing cwltool and spawning warm workers costs seconds, and a read-only server never needs them.
        with self._lock:
            if self._executor is None:
                if self.executor_factory is not None:
                    self._executor = self.executor_factory()
                elif self.settings.executor == "dask":
                    from ades.execute.dask_executor import DaskExecutor

                    self._executor = DaskExecutor(self.settings.dask_scheduler_address, self.settings.data_dir,
                                                  retry_lost=self.settings.dask_retry_lost)
                else:
                    from ades.execute.local import LocalExecutor

                    self._executor = LocalExecutor(functools.partial(make_sink, self.settings), self.workers,
                                                   nice=self.settings.job_nice)
            return self._executor

    @property
    def has_executor(self) -> bool:
        return self._executor is not None

    def close(self) -> None:
        with self._lock:
            executor, self._executor = self._executor, None
        if executor is not None:
            executor.close()
        if "creator" in self.__dict__:
            self.creator.close()
        self.job_store.close()
        if "scheduler" in self.__dict__:
            self.scheduler.close()
        if "journal" in self.__dict__:
            self.journal.close()
        if self._reconcile_lock is not None:
            self._reconcile_lock.close()
            self._reconcile_lock = None

    # --- packages ---
    def package_of(self, process: DeployedProcess) -> Package:
        """The loaded Package of a stored process, cached by key and deploy time (a PUT replaces both)."""
        key = f"{process.key}@{process.deployed.isoformat()}"
        cached = self._packages.get(key)
        if cached is not None:
            return cached
        started = time.perf_counter()
        try:
            package = load_package(process.package, "application/cwl+json")
        except PackageError:
            # a $graph with several Workflows: the stored process id says which one was deployed
            package = load_package(process.package, "application/cwl+json", workflow_id=process.id)
        log.info("loaded package %s in %.0f ms", process.key, (time.perf_counter() - started) * 1000)
        if len(self._packages) > 256:
            self._packages.clear()
        self._packages[key] = package
        return package

    def remember(self, process: DeployedProcess, package: Package) -> None:
        self._packages[f"{process.key}@{process.deployed.isoformat()}"] = package

    # --- urls ---
    def url(self, path: str) -> str:
        return f"{self.base_url.rstrip('/')}/{path.lstrip('/')}"


def ctx() -> AdesContext:
    return current_app.extensions["ades"]
