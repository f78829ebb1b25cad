"""Creating jobs, shared by the OGC execute route and the WPS-T route.

Order matters (DESIGN §1): validate everything first — body, labels, inputs against the package — so a 4xx never
leaves a document behind; then index the job as `submitted`; then hand it to the executor.
"""

from __future__ import annotations

import time
from typing import Any, Literal, TypeVar

from flask import Request
from pydantic import BaseModel, ConfigDict, Field, StrictStr, ValidationError, field_validator

from ades.api.context import AdesContext
from ades.api.errors import ApiProblem, problem
from ades.cwl import InputError, to_job_order
from ades.execute.runner import RunSpec
from ades.models import Job
from ades.status import Status
from ades.store.processes import DeployedProcess

MAX_LABELS = 100
M = TypeVar("M", bound=BaseModel)


def _check_labels(value: Any) -> list[str]:
    if value is None:
        return []
    if not isinstance(value, list):
        raise ValueError("labels must be an array of strings")
    for item in value:
        if not isinstance(item, str) or not item.strip() or len(item) > 256:
            raise ValueError("labels must be an array of non-empty strings (at most 256 characters each)")
    if len(value) > MAX_LABELS:
        raise ValueError(f"at most {MAX_LABELS} labels")
    return list(dict.fromkeys(value))


class OgcExecute(BaseModel):
    """OGC API Processes 1.0 execute request (plus `labels`, an ades extension)."""

    model_config = ConfigDict(extra="allow")

    inputs: dict[str, Any] = Field(default_factory=dict)
    outputs: dict[str, Any] | None = None
    response: Literal["raw", "document"] = "document"
    mode: Literal["sync", "async", "auto"] | None = None
    labels: list[str] = Field(default_factory=list)

    @field_validator("labels", mode="before")
    @classmethod
    def _labels(cls, value: Any) -> list[str]:
        return _check_labels(value)


class WpstInput(BaseModel):
    model_config = ConfigDict(extra="allow")

    id: StrictStr


class WpstOutput(BaseModel):
    model_config = ConfigDict(extra="allow")

    id: StrictStr
    transmissionMode: Literal["value", "reference"] = "reference"


class WpstExecute(BaseModel):
    """WPS-T (ADES best practice) execute request: inputs and outputs as arrays."""

    model_config = ConfigDict(extra="allow")

    mode: Literal["async", "sync", "auto"] = "async"
    response: Literal["raw", "document"] = "document"
    inputs: list[dict[str, Any]] = Field(default_factory=list)
    outputs: list[WpstOutput] = Field(default_factory=list)
    labels: list[str] = Field(default_factory=list)

    @field_validator("labels", mode="before")
    @classmethod
    def _labels(cls, value: Any) -> list[str]:
        return _check_labels(value)


def json_body(request: Request) -> dict[str, Any]:
    if not request.is_json:
        raise problem(415, "unsupported-media-type",
                      f"send the execute request as application/json (got {request.mimetype or 'no Content-Type'})")
    body = request.get_json(silent=True)
    if not isinstance(body, dict):
        raise problem(400, "invalid-parameter", "the request body is not a JSON object")
    return body


def parse_body(model: type[M], body: dict[str, Any]) -> M:
    try:
        return model.model_validate(body)
    except ValidationError as err:
        first = err.errors()[0]
        where = ".".join(str(p) for p in first["loc"]) or "body"
        message = first["msg"].removeprefix("Value error, ")
        raise problem(400, "invalid-parameter", f"{where}: {message}") from None


def submit(ctx: AdesContext, process: DeployedProcess, inputs: dict[str, Any], labels: list[str], mode: str) -> Job:
    """Validate the inputs, index the job, queue it. Raises ApiProblem (400) before anything is written."""
    package = ctx.package_of(process)
    try:
        job_order = to_job_order(package, inputs, ctx.file_roots)
    except InputError as err:
        raise ApiProblem(400, "invalid-input", str(err), "Invalid input") from None
    job = Job(process_id=process.id, process_version=process.version, inputs=inputs, labels=labels,
              user_id="anonymous", mode=mode)
    spec = RunSpec.for_package(package, job.id, job_order, ctx.settings.data_dir,
                               ctx.sink_config, ctx.base_url, ctx.storage_config)
    executor = ctx.executor  # before indexing: if workers cannot start, no job is left `submitted` forever
    ctx.creator.create(job)
    executor.submit(spec)
    return job


def wait_for_end(ctx: AdesContext, job_id: str, timeout: float) -> Status | None:
    """Block until the job has ended (its terminal status), or None after `timeout` seconds."""
    executor = ctx.executor
    waiter = getattr(executor, "wait", None)
    deadline = time.monotonic() + timeout
    if callable(waiter):
        outcome = waiter(job_id, timeout)
        if outcome is None:
            return None
        # the worker's own word is final here; the store may still be catching up (SNS -> consumer)
        return Status(outcome)
    while time.monotonic() < deadline:
        status = Status(ctx.job_store.get(job_id)["status"])
        if status.terminal:
            return status
        time.sleep(0.2)
    return None
