"""What it takes to run a job, as plain JSON: it crosses process boundaries (job children, Dask workers) and is the
line a job leaves in the submission journal."""

from __future__ import annotations

import hashlib
import os
import threading
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, model_validator

from ades import floats
from ades.cwl.package import Package
from ades.events.sinks import SinkConfig
from ades.execute.sandbox import Sandbox
from ades.execute.wrapper import wrap
from ades.fetch import FetchPolicy
from ades.jobs.folder import DataDir, JobFolder
from ades.models import ID_PATTERN
from ades.storage import StorageConfig
from ades.store.logs import LogShipConfig


class RunSpec(BaseModel):
    """Everything a worker needs to run one job."""

    model_config = ConfigDict(extra="forbid")

    job_id: str = Field(pattern=ID_PATTERN)
    data_dir: Path = Field(description="the data dir the job's folder is in (the same path on every worker)")
    workflow_file: Path = Field(description="the wrapped CWL document (ades.execute.wrapper.wrap), named by its "
                                "content in the data dir's cache and shared by every job of the process version")
    job_order: dict[str, Any] = Field(description="cwltool job order without the ades_* inputs")
    job_order_floats: dict[str, str] = Field(default_factory=dict, description="JSON pointer -> spelling of the "
                                             "job order's floats whose spelling a float does not keep "
                                             "(ades.floats)")
    sink: SinkConfig
    cache_key: str | None = Field(default=None, description="`id:version`; loaded tools are reused per key")
    max_seconds: float | None = Field(default=None, gt=0, description="run-time limit; past it the job is killed "
                                      "and fails with the reason (ADES_JOB_TIMEOUT)")
    max_output_bytes: int | None = Field(default=None, gt=0, description="the most the job may write into its "
                                         "folder (outputs, working and temporary files, log); past it the job is "
                                         "stopped and fails with the reason (ADES_MAX_OUTPUT_BYTES)")
    storage: StorageConfig | None = Field(
        default=None, description="where outputs go once the workflow succeeded; None: they stay in the job folder, "
        "with the wrapper's results URLs")
    sandbox: Sandbox = Field(default_factory=Sandbox, description="how the job's tools are confined")
    fetch: FetchPolicy = Field(default_factory=FetchPolicy, description="what the job's http(s) files may be "
                               "fetched from, and how much (ADES_FETCH_*)")
    input_roots: list[Path] = Field(default_factory=list, description="directories the job's local files may come "
                                    "from, beside its own folder (ADES_INPUT_ROOTS)")
    user_id: str | None = Field(default=None, description="who submitted the job: queued jobs start in turns "
                                "across users (ades.jobs.fairshare); None: the one user of an open server")
    logs: LogShipConfig | None = Field(default=None, description="where the host running the job ships its log "
                                       "(ADES_LOG_STORE=elasticsearch); None: it stays in the job's folder only")

    @model_validator(mode="after")
    def _respelled(self) -> RunSpec:
        if self.job_order_floats:
            floats.respell(self.job_order, self.job_order_floats)
        return self

    @property
    def folder(self) -> JobFolder:
        return JobFolder(self.data_dir, self.job_id)

    @classmethod
    def for_package(cls, package: Package, job_id: str, job_order: dict[str, Any], data_dir: Path,
                    sink: SinkConfig, results_base_url: str, storage: StorageConfig | None = None,
                    max_seconds: float | None = None, sandbox: Sandbox | None = None,
                    *, fetch: FetchPolicy | None = None, input_roots: list[Path] | None = None,
                    user_id: str | None = None, max_output_bytes: int | None = None,
                    logs: LogShipConfig | None = None) -> RunSpec:
        return cls(job_id=job_id, data_dir=data_dir, workflow_file=wrapped_file(package, results_base_url, data_dir),
                   job_order=job_order, job_order_floats=floats.spellings(job_order), sink=sink,
                   cache_key=package.key, max_seconds=max_seconds, storage=storage,
                   sandbox=sandbox or Sandbox(), fetch=fetch or FetchPolicy(), input_roots=input_roots or [],
                   user_id=user_id, max_output_bytes=max_output_bytes or None, logs=logs)


class QueuedJob(BaseModel):
    """A job as it was accepted, enough to (re)start it: a line of the journal (ades.jobs.journal)."""

    model_config = ConfigDict(extra="forbid")

    spec: RunSpec
    depends_on: list[str] = Field(default_factory=list)
    delay: float = 0.0

    @property
    def job_id(self) -> str:
        return self.spec.job_id


def waiting_message(depends_on: Sequence[str], delay: float) -> str | None:
    """What a job that waits says it waits for (its `message` while it is accepted)."""
    parts = []
    if depends_on:
        parts.append(f"waiting for job{'s' if len(depends_on) > 1 else ''} {', '.join(depends_on)} to succeed")
    if delay > 0:
        parts.append(f"then {delay:g} s of delay" if depends_on else f"waiting {delay:g} s before it starts")
    return "; ".join(parts) or None


_WRAPPED: dict[tuple[int, str, str], tuple[Package, Path]] = {}
_WRAPPED_MAX = 256


def wrapped_file(package: Package, results_base_url: str, data_dir: Path) -> Path:
    """The wrapped document of `package` as a file in the data dir's cache, written once per package object (a
    deploy or a replace loads a new one), which every worker and Dask host sees. A spec carries the path, not the
    document; the file is named by its content, so it never changes once written and outlives every job folder
    (the tools a worker loaded from it refer to it)."""
    key = (id(package), results_base_url, str(data_dir))
    hit = _WRAPPED.get(key)
    if hit is not None and hit[0] is package:  # the package is held, so its id cannot have been reused
        return hit[1]
    # not ASCII-escaped: cwltool reads it as YAML, which takes a \u-escaped surrogate pair (an emoji) as two
    # surrogates that no tool's command line can carry
    text = floats.dumps(wrap(package, results_base_url), indent=1, sort_keys=True, ensure_ascii=False)
    digest = hashlib.sha256(text.encode()).hexdigest()[:32]
    directory = DataDir(data_dir).wrapped_cache
    path = directory / f"{digest}.cwl"
    if not path.exists():
        directory.mkdir(parents=True, exist_ok=True)
        partial = directory / f".{digest}.{os.getpid()}.{threading.get_ident()}.tmp"
        partial.write_text(text, encoding="utf-8")
        os.replace(partial, path)
    if len(_WRAPPED) >= _WRAPPED_MAX:
        _WRAPPED.clear()
    _WRAPPED[key] = (package, path)
    return path
