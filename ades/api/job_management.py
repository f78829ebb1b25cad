"""OGC API Processes Part 4 (job management, draft), as Weaver does it: a job made without running it, edited, then
started.

- `POST /jobs`: `process` (its id, `id:version`, or its URL on this server) and the members of an OGC execute
  request (`inputs`, `outputs`, `response`, `labels`, `dependsOn`, `delay`), validated as an execute request is.
  The job is `created`: stored, and nothing else (ades.jobs.created); 201 with `Location` and its status.
- `PATCH /jobs/{id}`: any of `inputs`, `outputs`, `response`, `labels`, `dependsOn`, `delay`, each replacing what
  the job had, validated again against the package as a whole request; 200 with its status. Only while `created`:
  otherwise 409 (Part 4's `locked`).
- `POST /jobs/{id}/results`: starts it: `submitted`, then it runs as any job; 202 with its status. 409 if it is not
  `created` (a second start included).
- `GET /jobs/{id}/definition`: the process and the request the job runs (or will run) with.

An edit and a start write the document only if nobody wrote it since it was read (ades.store.job_edits): of a start
and an edit, or of two starts, that meet, one wins and the other reads the job again (and then finds it started, or
applies itself to the edited job). A request that is refused writes nothing.
"""

from __future__ import annotations

from typing import Any

from flask import Blueprint, Response, jsonify, request

from ades.api.context import AdesContext, ctx
from ades.api.errors import ApiProblem, problem
from ades.api.jobs import visible_job
from ades.api.processes import get_process
from ades.api.results import ResultsRequest, results_request
from ades.api.submit import OgcExecute, Scheduling, json_body, parse_body, prepare
from ades.api.views import status_info
from ades.cwl.package import Package
from ades.jobs.created import created_document, edited_document
from ades.models import Job
from ades.status import Status
from ades.store import JobNotFound
from ades.store.job_edits import Versioned, create_one, read_versioned, replace
from ades.store.processes import DeployedProcess

bp = Blueprint("ades_job_management", __name__)

LOCKED = "http://www.opengis.net/def/exceptions/ogcapi-processes-4/1.0/locked"
EDITABLE = ("inputs", "outputs", "response", "labels", "dependsOn", "delay", "subscriber")
"""What PATCH may replace: every member of the execute request but `process` (and `mode`: it runs async)."""
ATTEMPTS = 3
"""Reads and conditional writes one edit or start makes while others keep writing the same job."""
CREATE_WORDS = ("create", "created")
"""What `status` may say in a POST /jobs body (Weaver's `"status": "create"`): the job is made `created`."""


# --- what a job was asked to do ------------------------------------------------------------------------------
def process_of(c: AdesContext, value: Any) -> DeployedProcess:
    """The process a POST /jobs body names: `id`, `id:version`, or its URL (`…/processes/{id}`) on this server."""
    if not isinstance(value, str) or not value:
        raise problem(400, "invalid-parameter", "process: required: the process to run, as its id, `id:version` or "
                      "its URL (.../processes/{id})")
    ref = value
    if "/" in value:
        base, found, ref = value.rpartition("/processes/")
        ours = {c.base_url.rstrip("/"), request.host_url.rstrip("/"), ""}
        if not found or "/" in ref or base.rstrip("/") not in ours:
            raise problem(400, "invalid-parameter", f"process: {value[:200]!r} is not a process of this server (its "
                          f"processes are {c.url('/processes/')}{{id}})")
    try:
        return get_process(c, ref)
    except ApiProblem as err:
        raise ApiProblem(err.status, err.kind, f"process: {err.detail}", err.title) from None


def job_process(c: AdesContext, doc: dict[str, Any]) -> DeployedProcess:
    """The process (the very version) a stored job runs."""
    ref = f"{doc['process-id']}:{doc['process-version']}" if doc.get("process-version") else doc["process-id"]
    try:
        return get_process(c, ref)
    except ApiProblem as err:
        if err.status != 404:
            raise
        raise problem(409, "no-such-process", f"job {doc['id']}: its process {ref!r} is no longer deployed "
                      f"({err.detail}); create a new job", "No such process") from None


def request_of(doc: dict[str, Any]) -> dict[str, Any]:
    """The execute request a stored job holds, as an OGC execute body."""
    wanted = ResultsRequest.of_job(doc)
    outputs = ({name: {"transmissionMode": mode} if mode else {} for name, mode in wanted.outputs.items()}
               if wanted.outputs else None)
    body = {"inputs": doc.get("inputs") or {}, "outputs": outputs, "response": wanted.response,
            "labels": list(doc.get("labels") or []), "dependsOn": list(doc.get("depends-on") or []),
            "delay": doc.get("delay") or 0.0}
    if doc.get("subscriber"):
        body["subscriber"] = doc["subscriber"]
    return body


def _validated(c: AdesContext, process: DeployedProcess,
               body: dict[str, Any]) -> tuple[Package, Job, dict[str, Any]]:
    """An execute body checked as the execute route checks it: (package, Job, job order). Raises ApiProblem."""
    execute = parse_body(OgcExecute, body, c.settings)
    if execute.mode == "sync":
        raise problem(400, "invalid-parameter", "mode: a created job runs asynchronously once started, not sync")
    wanted = results_request(execute.response, execute.outputs, process.description.get("outputs") or {})
    return prepare(c, process, execute.inputs, execute.labels, "async", execute, wanted.model_dump())


def _read_created(c: AdesContext, job_id: str, verb: str) -> Versioned:
    """The job as stored now, if it is still `created` (409 `locked` otherwise, 404 if it is gone)."""
    try:
        read = read_versioned(c.job_store, job_id)
    except JobNotFound:
        raise problem(404, "no-such-job", f"jobId: no job {job_id!r}", "No such job") from None
    status = Status(read.source["status"])
    if status is not Status.CREATED:
        raise ApiProblem(409, LOCKED, f"job {job_id} is {status.ogc}: only a created job can be {verb}", "Locked")
    return read


def _busy(job_id: str, verb: str) -> ApiProblem:
    return problem(409, "conflict", f"job {job_id} changed {ATTEMPTS} times while it was being {verb}; nothing was "
                   "done: send the request again", "Conflict")


def _status(c: AdesContext, doc: dict[str, Any], code: int) -> Response:
    response = jsonify(status_info(doc, c.base_url))
    response.status_code = code
    if code != 200:
        response.headers["Location"] = c.url(f"/jobs/{doc['id']}")
    return response


# --- routes --------------------------------------------------------------------------------------------------
@bp.post("/jobs")
def create_job() -> Response:
    c = ctx()
    body = json_body(request)
    if body.get("status", "create") not in CREATE_WORDS:
        raise problem(400, "invalid-parameter", f"status: POST /jobs makes a created job (status 'create' or none); "
                      f"to run one at once, POST /processes/{{id}}/execution (got {str(body['status'])[:40]!r})")
    if "batch" in body:  # a batch (an execute request's `batch`, ades.api.batch) runs at once or not at all
        raise problem(400, "invalid-parameter", "batch: a batch cannot be created to start later; execute it "
                      "(POST /processes/{id}/execution)")
    process = process_of(c, body.get("process"))
    _, job, _ = _validated(c, process, {k: v for k, v in body.items() if k not in ("process", "status")})
    doc = created_document(job)
    create_one(c.job_store, doc)
    c.jobs.write_marks.mark()  # a listing on this host shows it at once, as a submission's does
    return _status(c, doc, 201)


@bp.patch("/jobs/<job_id>")
def edit_job(job_id: str) -> Response:
    c = ctx()
    visible_job(c, job_id)
    patch = json_body(request)
    other = next((name for name in patch if name not in EDITABLE), None)
    if other is not None:
        raise problem(400, "invalid-parameter", f"{other[:80]}: cannot be changed; a created job's "
                      f"{', '.join(EDITABLE)} can")
    for _ in range(ATTEMPTS):
        read = _read_created(c, job_id, "edited")
        _, job, _ = _validated(c, job_process(c, read.source), {**request_of(read.source), **patch})
        doc = edited_document(read.source, job)
        if replace(c.job_store, read, doc):
            c.jobs.write_marks.mark()
            return _status(c, doc, 200)
    raise _busy(job_id, "edited")


@bp.post("/jobs/<job_id>/results")
def start_job(job_id: str) -> Response:
    c = ctx()
    visible_job(c, job_id)
    for _ in range(ATTEMPTS):
        read = _read_created(c, job_id, "started")
        doc = read.source
        scheduling = Scheduling.model_validate({k: v for k, v in request_of(doc).items()
                                                 if k in ("dependsOn", "delay", "subscriber")})
        package, job, job_order = prepare(c, job_process(c, doc), doc.get("inputs") or {}, doc.get("labels") or [],
                                          "async", scheduling, doc.get("results-request"))
        owner = doc.get("user-id") or job.user_id
        job = job.model_copy(update={"id": job_id, "user_id": owner})  # an admin starts it as its owner's
        with c.jobs.quota.hold(owner):
            started = c.jobs.start(package, job, job_order, read)
        if started:
            return _status(c, c.job_store.get(job_id), 202)
    raise _busy(job_id, "started")


@bp.get("/jobs/<job_id>/definition")
def job_definition(job_id: str) -> Response:
    c = ctx()
    doc = visible_job(c, job_id)
    version = doc.get("process-version")
    process = c.url(f"/processes/{doc['process-id']}" + (f":{version}" if version else ""))
    definition = {"entity": process, "process": process, **request_of(doc)}
    definition["outputs"] = definition["outputs"] or {}
    definition["links"] = [
        {"href": c.url(f"/jobs/{job_id}/definition"), "rel": "self", "type": "application/json",
         "title": "this job's definition"},
        {"href": c.url(f"/jobs/{job_id}"), "rel": "status", "type": "application/json", "title": "the job's status"},
        {"href": process, "rel": "http://www.opengis.net/def/rel/ogc/1.0/processes", "type": "application/json",
         "title": "the process it runs"}]
    return jsonify(definition)
