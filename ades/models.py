"""Pydantic models at the boundaries: the job document, status update messages and store queries."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime
from typing import Annotated, Any

from pydantic import AfterValidator, BaseModel, ConfigDict, Field, field_validator

from ades.status import Status

ID_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,127}$"
"""Job and event ids: safe in URLs, ES ids and file names (no `/`, no `..` at the start)."""


def utcnow() -> datetime:
    return datetime.now(UTC)


def _to_utc(value: datetime) -> datetime:
    if value.tzinfo is None:
        raise ValueError("timestamp must carry a time zone (e.g. end in Z)")
    return value.astimezone(UTC)


UtcDatetime = Annotated[datetime, AfterValidator(_to_utc)]


def iso(value: datetime) -> str:
    """Fixed-width UTC ISO-8601 with microseconds, so that stored times also compare correctly as strings."""
    return _to_utc(value).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def new_id() -> str:
    return str(uuid.uuid4())


class StatusUpdate(BaseModel):
    """One status event for one job, as published by update-job steps and workers (and read from SQS)."""

    model_config = ConfigDict(extra="ignore", frozen=True)

    job_id: str = Field(pattern=ID_PATTERN)
    status: Status
    event_id: str = Field(default_factory=new_id, pattern=ID_PATTERN)
    timestamp: UtcDatetime = Field(default_factory=utcnow)
    progress: int | None = Field(default=None, ge=0, le=100)
    message: str | None = Field(default=None, max_length=10_000)
    outputs: dict[str, Any] | None = None
    host: str | None = Field(default=None, max_length=256, description="the lease id (ades.jobs.leases) of the host "
                             "that runs the job, set on the running event; merged only with running or later")

    @field_validator("status", mode="before")
    @classmethod
    def _either_vocabulary(cls, value: Any) -> Any:
        return Status.parse(value) if isinstance(value, str) else value


class BatchPlace(BaseModel):
    """A job's place in a batch: `size` (its direct children; None while a listing is still read) and `leaves` for a
    batch parent, `parent_id`, `index` and `ancestors` (every batch above it, nearest last) for a child."""

    model_config = ConfigDict(extra="forbid")

    parent_id: str | None = None
    index: int | None = None
    ancestors: list[str] = Field(default_factory=list)
    size: int | None = None
    leaves: int | None = None
    is_batch: bool = False

    def to_fields(self) -> dict[str, Any]:
        fields: dict[str, Any] = {}
        if self.parent_id is not None:
            fields.update({"parent-id": self.parent_id, "batch-index": self.index, "ancestors": self.ancestors})
        if self.is_batch:
            fields.update({"batch-size": self.size, "batch-leaves": self.leaves})
        return fields


class Job(BaseModel):
    """A new job as the server creates it. Field names with hyphens are the public ES contract (seed 004)."""

    model_config = ConfigDict(populate_by_name=True, extra="forbid")

    id: str = Field(default_factory=new_id, pattern=ID_PATTERN)
    process_id: str = Field(alias="process-id", min_length=1)
    process_version: str | None = Field(default=None, alias="process-version")
    inputs: dict[str, Any] = Field(default_factory=dict)
    labels: list[str] = Field(default_factory=list)
    user_id: str | None = Field(default=None, alias="user-id")
    mode: str = "async"
    depends_on: list[str] = Field(default_factory=list, alias="depends-on")
    delay: float = Field(default=0.0, ge=0, description="seconds to wait (after the dependencies) before it starts")
    message: str | None = None
    created: UtcDatetime = Field(default_factory=utcnow)
    host: str | None = Field(default=None, description="the lease id of the node that accepted the job "
                             "(ades.jobs.leases)")
    results_request: dict[str, Any] | None = Field(
        default=None, alias="results-request",
        description="what the execute request asked of the results (response, outputs' transmission modes), so "
        "that an asynchronous job's /results answers as asked (ades.api.results)")
    subscriber: dict[str, str] | None = Field(
        default=None, description="where the job's changes are POSTed (OGC callbacks: successUri, inProgressUri, "
        "failedUri; ades.callbacks)")
    batch: BatchPlace | None = Field(default=None, description="where the job sits in a batch (ades.jobs.batches)")

    def to_document(self) -> dict[str, Any]:
        """The `jobs` index document of a freshly submitted job."""
        created = iso(self.created)
        return {
            "id": self.id,
            "status": Status.SUBMITTED.value,
            "process-id": self.process_id,
            "process-version": self.process_version,
            "inputs": self.inputs,
            "outputs": {},
            "labels": list(self.labels),
            "user-id": self.user_id,
            "mode": self.mode,
            "depends-on": list(self.depends_on),
            "delay": self.delay,
            "created": created,
            "updated": created,
            "start-time": None,
            "stop-time": None,
            "duration": None,
            "progress": 0,
            "message": self.message,
            "results-request": self.results_request,
            "host": self.host,
            **({"subscriber": self.subscriber} if self.subscriber else {}),
            "applied-events": [],
            "merge-clock": {},
            **(self.batch.to_fields() if self.batch is not None else {}),
        }


class JobQuery(BaseModel):
    """Filters, order and paging for `JobStore.search`."""

    model_config = ConfigDict(extra="forbid")

    statuses: list[Status] = Field(default_factory=list)
    process_id: str | None = None
    parent_id: str | None = Field(default=None, description="the children of this batch job")
    labels_all: list[str] = Field(default_factory=list, description="jobs carrying every one of these labels")
    labels_any: list[str] = Field(default_factory=list, description="jobs carrying at least one of these labels")
    user_id: str | None = None
    created_from: UtcDatetime | None = None
    created_to: UtcDatetime | None = None
    updated_from: UtcDatetime | None = None
    updated_to: UtcDatetime | None = None
    min_duration: float | None = Field(default=None, ge=0, description="seconds between start-time and stop-time")
    max_duration: float | None = Field(default=None, ge=0)
    sort: str = Field(default="created", pattern=r"^(created|updated|start-time|stop-time|status|process-id|id)$")
    descending: bool = True
    size: int = Field(default=10, ge=1, le=10_000)
    search_after: list[Any] | None = None
    exact_total: bool = Field(
        default=False,
        description="count every match; otherwise totals are exact up to ADES_JOBS_TRACK_TOTAL_HITS (10,000) and "
        "reported as 'at least' beyond, which lets ES stop early on sorted searches over millions of jobs",
    )


class JobPage(BaseModel):
    jobs: list[dict[str, Any]]
    total: int
    total_is_exact: bool = True
    next_after: list[Any] | None = None
