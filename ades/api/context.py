"""What every request handler needs: the stores, the job service, and loaded packages (cached).

One `AdesContext` per Flask app, kept in `app.extensions["ades"]`. Under gunicorn every worker process builds its
own app, hence its own JobService (ades.jobs.service).
"""

from __future__ import annotations

import functools
import logging
import time
from dataclasses import dataclass, field
from pathlib import Path

from flask import current_app

from ades.api.job_outputs import ManifestCache
from ades.config import Settings
from ades.cwl import Package, PackageError, load_package
from ades.fetch import Fetcher
from ades.jobs.service import JobService
from ades.storage import S3Storage
from ades.store import JobStore, ProcessStore
from ades.store.logs import LogStore
from ades.store.processes import DeployedProcess

log = logging.getLogger(__name__)
MAX_PACKAGES = 256


@dataclass
class AdesContext:
    settings: Settings
    job_store: JobStore
    process_store: ProcessStore
    jobs: JobService
    base_url: str
    file_roots: list[Path] = field(default_factory=list)
    sync_timeout: float = 600.0
    fetcher: Fetcher = field(default_factory=Fetcher)
    _packages: dict[str, Package] = field(default_factory=dict)

    def close(self) -> None:
        self.jobs.close()
        self.job_store.close()

    @functools.cached_property
    def log_store(self) -> LogStore | None:
        """Where jobs that ran on other hosts have their logs (ADES_LOG_STORE=elasticsearch), else None."""
        if self.settings.log_store != "elasticsearch":
            return None
        return LogStore(self.job_store.client, self.settings)

    @functools.cached_property
    def output_storage(self) -> S3Storage | None:
        """Where every host keeps job outputs (ADES_OUTPUT_STORAGE=s3), read for jobs that ran elsewhere; else
        None. One client per server process."""
        return self.jobs.output_storage

    @functools.cached_property
    def manifests(self) -> ManifestCache:
        return ManifestCache()

    # --- packages ---
    def package_of(self, process: DeployedProcess) -> Package:
        """The loaded Package of a stored process, cached by key and deploy time (a PUT replaces both)."""
        key = f"{process.key}@{process.deployed.isoformat()}"
        cached = self._packages.get(key)
        if cached is not None:
            return cached
        started = time.perf_counter()
        try:
            package = load_package(process.package, "application/cwl+json", allowed_roots=self.file_roots)
        except PackageError:
            # a $graph with several Workflows: the stored process id says which one was deployed
            package = load_package(process.package, "application/cwl+json", workflow_id=process.id,
                                   allowed_roots=self.file_roots)
        log.info("loaded package %s in %.0f ms", process.key, (time.perf_counter() - started) * 1000)
        if len(self._packages) > MAX_PACKAGES:
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
