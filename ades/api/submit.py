"""Creating jobs, shared by the OGC execute route and the WPS-T route.

Order matters: validate everything first (body, labels, inputs against the package, dependencies) so a 4xx never
leaves a document behind; then the job service accepts the job (ades.jobs.service).
"""

from __future__ import annotations

import re
from typing import Any, Literal, TypeVar

from flask import Request
from pydantic import BaseModel, ConfigDict, Field, StrictStr, ValidationError, ValidationInfo, field_validator
from werkzeug.exceptions import RequestEntityTooLarge

from ades import floats
from ades.api.auth import current_principal, owner_filter
from ades.api.context import AdesContext
from ades.api.errors import ApiProblem, problem
from ades.callbacks import Subscriber
from ades.config import Settings
from ades.cwl import InputError, to_job_order
from ades.cwl.package import Package, json_depth
from ades.fetch import FetchError
from ades.jobs.spec import waiting_message
from ades.models import ID_PATTERN, Job
from ades.store.processes import DeployedProcess

# for models validated without settings; the defaults themselves live in config.py
MAX_LABELS: int = Settings.model_fields["max_labels"].default
MAX_LABEL_LENGTH: int = Settings.model_fields["max_label_length"].default
MAX_DEPENDENCIES = 100
MAX_JSON_DEPTH = 32
"""Deepest nesting of an execute body: the `inputs` field of the jobs index is `flattened` with depth_limit 32, and
ES refuses a deeper document (that would be a 5xx after validation passed)."""
M = TypeVar("M", bound=BaseModel)


def _kind(value: Any) -> str:
    return {dict: "an object", list: "an array", str: "a string", bool: "a boolean", type(None): "null",
            int: "a number", float: "a number"}.get(type(value), type(value).__name__)


def _check_labels(value: Any, settings: Settings | None = None) -> list[str]:
    most = settings.max_labels if settings else MAX_LABELS
    longest = settings.max_label_length if settings else MAX_LABEL_LENGTH
    if value is None:
        return []
    if not isinstance(value, list):
        raise ValueError(f"must be an array of strings, got {_kind(value)}")
    if len(value) > most:
        raise ValueError(f"{len(value)} labels; at most {most} are allowed (ADES_MAX_LABELS)")
    for position, item in enumerate(value):
        if not isinstance(item, str):
            raise ValueError(f"item {position} is {_kind(item)}, not a string")
        if not item.strip():
            raise ValueError(f"item {position} is empty")
        if len(item) > longest:
            raise ValueError(f"item {position} has {len(item)} characters; at most {longest} are allowed "
                             "(ADES_MAX_LABEL_LENGTH)")
    return list(dict.fromkeys(value))


def _settings_of(info: ValidationInfo) -> Settings | None:
    context = info.context or {}
    return context.get("settings")


def checked_labels(value: Any, info: ValidationInfo) -> list[str]:
    """A `labels` member checked against the settings in the validation context (ades.api.batch's items too)."""
    return _check_labels(value, _settings_of(info))


class Scheduling(BaseModel):
    """What both execute bodies share: ades' extensions (run after other jobs succeeded, `dependsOn`, after a
    `delay`) and OGC's `subscriber` (callbacks)."""

    dependsOn: list[str] = Field(default_factory=list, max_length=MAX_DEPENDENCIES,
                                 description="ids of jobs that must succeed first")
    delay: float = Field(default=0.0, ge=0, description="seconds to wait (after the dependencies) before starting")
    subscriber: Subscriber | None = Field(default=None, description="OGC callbacks: where the job's changes are "
                                          "POSTed (ades.callbacks)")

    @field_validator("dependsOn", mode="before")
    @classmethod
    def _ids(cls, value: Any) -> list[str]:
        if value is None:
            return []
        if not isinstance(value, list) or not all(isinstance(v, str) and re.fullmatch(ID_PATTERN, v) for v in value):
            raise ValueError("dependsOn must be an array of job ids")
        return list(dict.fromkeys(value))


class OgcExecute(Scheduling):
    """OGC API Processes 1.0 execute request (plus `labels`, `dependsOn` and `delay`, ades extensions)."""

    model_config = ConfigDict(extra="allow")

    inputs: dict[str, Any] = Field(default_factory=dict)
    outputs: dict[str, Any] | None = None
    response: Literal["raw", "document"] = "document"
    mode: Literal["sync", "async", "auto"] | None = None
    labels: list[str] = Field(default_factory=list)

    @field_validator("labels", mode="before")
    @classmethod
    def _labels(cls, value: Any, info: ValidationInfo) -> list[str]:
        return _check_labels(value, _settings_of(info))


class WpstInput(BaseModel):
    model_config = ConfigDict(extra="allow")

    id: StrictStr


class WpstOutput(BaseModel):
    model_config = ConfigDict(extra="allow")

    id: StrictStr
    transmissionMode: Literal["value", "reference"] = "reference"


class WpstExecute(Scheduling):
    """WPS-T (ADES best practice) execute request: inputs and outputs as arrays (plus `dependsOn`, `delay`)."""

    model_config = ConfigDict(extra="allow")

    mode: Literal["async", "sync", "auto"] = "async"
    response: Literal["raw", "document"] = "document"
    inputs: list[dict[str, Any]] = Field(default_factory=list)
    outputs: list[WpstOutput] = Field(default_factory=list)
    labels: list[str] = Field(default_factory=list)

    @field_validator("labels", mode="before")
    @classmethod
    def _labels(cls, value: Any, info: ValidationInfo) -> list[str]:
        return _check_labels(value, _settings_of(info))


def _not_json(constant: str) -> Any:
    raise ValueError(f"{constant} is not a JSON value")


def read_body(request: Request) -> bytes:
    """The request body, or RequestEntityTooLarge (413) past ADES_MAX_BODY_BYTES."""
    data = request.get_data(cache=True)
    limit = request.max_content_length
    chunked = limit is not None and request.content_length is None
    # A chunked body: werkzeug hands over its first `limit` bytes and says nothing of the rest, which would then be
    # parsed as if whole (a cut YAML package may even be valid). One more byte tells.
    if chunked and len(data) >= limit and request.environ["wsgi.input"].read(1):
        raise RequestEntityTooLarge()
    return data


def json_body(request: Request) -> dict[str, Any]:
    if not request.is_json:
        raise problem(415, "unsupported-media-type",
                      f"Content-Type: send the execute request as application/json (got "
                      f"{request.mimetype or 'no Content-Type'})")
    raw = read_body(request)
    try:
        body = floats.loads(raw, parse_constant=_not_json)  # floats keep their spelling: ades.floats
    except RecursionError:
        raise problem(400, "invalid-parameter", f"body: nested deeper than {MAX_JSON_DEPTH} levels") from None
    except ValueError as err:  # JSONDecodeError, bad UTF-8, NaN/Infinity
        raise problem(400, "invalid-parameter", f"body: not valid JSON: {err}") from None
    if not isinstance(body, dict):
        raise problem(400, "invalid-parameter", f"body: must be a JSON object, got {_kind(body)}")
    if json_depth(body) > MAX_JSON_DEPTH:
        raise problem(400, "invalid-parameter", f"body: nested deeper than {MAX_JSON_DEPTH} levels")
    return body


def parse_body(model: type[M], body: dict[str, Any], settings: Settings | None = None) -> M:
    try:
        return model.model_validate(body, context={"settings": settings})
    except ValidationError as err:
        first = err.errors()[0]
        where = ".".join(str(p) for p in first["loc"]) or "body"
        message = first["msg"].removeprefix("Value error, ")
        raise problem(400, "invalid-parameter", f"{where}: {message}") from None


def _check_scheduling(ctx: AdesContext, scheduling: Scheduling | None) -> tuple[list[str], float]:
    if scheduling is None:
        return [], 0.0
    if scheduling.delay > ctx.settings.max_delay:
        raise problem(400, "invalid-parameter", f"delay: at most {ctx.settings.max_delay:g} seconds")
    depends_on = scheduling.dependsOn
    if depends_on:
        found = ctx.job_store.heads(depends_on)
        owner = owner_filter()
        # another user's job is "no job" here as on every other route: its existence must not leak
        missing = [d for d in depends_on
                   if found.get(d) is None or (owner is not None and found[d].get("user-id") != owner)]
        if missing:
            raise problem(400, "invalid-parameter", f"dependsOn: no job {', '.join(missing)}")
    return depends_on, scheduling.delay


def check_subscriber(ctx: AdesContext, subscriber: Subscriber | None) -> dict[str, str] | None:
    """The subscriber's URIs, each one an http(s) URL the fetcher reaches (checked now, and again at each delivery:
    a name may resolve elsewhere later); a 400 naming the member otherwise."""
    uris = subscriber.uris() if subscriber is not None else {}
    for member, uri in uris.items():
        try:
            ctx.fetcher.check(uri)
        except FetchError as err:
            raise problem(400, "invalid-parameter", f"subscriber.{member}: {err}") from None
    return uris or None


def prepare(ctx: AdesContext, process: DeployedProcess, inputs: dict[str, Any], labels: list[str], mode: str,
            scheduling: Scheduling | None = None,
            results: dict[str, Any] | None = None) -> tuple[Package, Job, dict[str, Any]]:
    """Validate the request as an execute request is (inputs against the package, dependencies, delay) and make
    its Job (package, job, cwltool job order); nothing is written. Raises ApiProblem (4xx)."""
    package = ctx.package_of(process)
    try:
        job_order = to_job_order(package, inputs, ctx.file_roots, ctx.fetcher)
    except InputError as err:
        title = "Unsupported requirement" if err.kind == "unsupported-requirement" else "Invalid input"
        raise ApiProblem(400, err.kind, str(err), title) from None
    depends_on, delay = _check_scheduling(ctx, scheduling)
    subscriber = check_subscriber(ctx, scheduling.subscriber if scheduling else None)
    if mode == "sync" and (depends_on or delay):
        raise problem(400, "invalid-parameter", "dependsOn and delay need an asynchronous execution")
    job = Job(process_id=process.id, process_version=process.version, inputs=inputs, labels=labels,
              user_id=current_principal().user, mode=mode, depends_on=depends_on, delay=delay,
              message=waiting_message(depends_on, delay), results_request=results, subscriber=subscriber)
    return package, job, job_order


def submit(ctx: AdesContext, process: DeployedProcess, inputs: dict[str, Any], labels: list[str], mode: str,
           scheduling: Scheduling | None = None, results: dict[str, Any] | None = None) -> Job:
    """Validate the request and hand the job to the job service. Raises ApiProblem (4xx) before anything is
    written; TooManyQueued (503) writes nothing either."""
    raw_batch = (scheduling.model_extra or {}).get("batch") if scheduling is not None else None
    if raw_batch is not None:
        return submit_batch(ctx, process, ctx.package_of(process), raw_batch, inputs, labels, scheduling, results)
    package, job, job_order = prepare(ctx, process, inputs, labels, mode, scheduling, results)
    ctx.jobs.submit(package, job, job_order)
    return job


def submit_batch(ctx: AdesContext, process: DeployedProcess, package: Package, raw: Any, inputs: dict[str, Any],
                 labels: list[str], scheduling: Scheduling | None, results: dict[str, Any] | None) -> Job:
    """A batch request (ades.api.batch): every item checked, then the parent and its children accepted at once;
    the parent job is returned. Always asynchronous."""
    from ades.api.batch import parse_batch, plan_batch  # it imports this module

    request = parse_batch(raw, ctx)
    depends_on, delay = _check_scheduling(ctx, scheduling)
    # the parent's subscriber is told the batch's own changes (its end once every child ended), not each child's
    subscriber = check_subscriber(ctx, scheduling.subscriber if scheduling else None)
    parent = Job(process_id=process.id, process_version=process.version, inputs=inputs, labels=labels,
                 user_id=current_principal().user, mode="async", depends_on=depends_on, delay=delay,
                 message=waiting_message(depends_on, delay), results_request=results, subscriber=subscriber)
    plan = plan_batch(ctx, package, parent, request)
    ctx.jobs.submit_batch(plan.jobs)
    return plan.parent
