"""OGC API Processes Part 1 (list, describe, execute) and Part 2 (deploy, replace, undeploy) for CWL packages."""

from __future__ import annotations

import contextlib
import re
import time
from typing import Any

from flask import Blueprint, Response, jsonify, request

from ades.api.auth import DEPLOYER, current_principal, require_role
from ades.api.context import AdesContext, ctx
from ades.api.errors import ApiProblem, part2, problem
from ades.api.job_outputs import find_outputs
from ades.api.jobs import number_arg
from ades.api.results import ResultsRequest, answer, results_request
from ades.api.submit import OgcExecute, json_body, parse_body, read_body, submit
from ades.api.views import process_description, process_summary, status_info
from ades.cwl import PackageError, describe, load_package
from ades.execute.containers import refusal as container_refusal
from ades.jobs.quota import TooManySyncExecutes
from ades.status import Status
from ades.store import ProcessExists, ProcessNotFound
from ades.store.processes import DeployedProcess, split_ref

bp = Blueprint("ades_processes", __name__)

REF_PATTERN = r"[A-Za-z0-9][A-Za-z0-9_.-]{0,127}(:[A-Za-z0-9][A-Za-z0-9_.+-]{0,63})?"
"""`id` or `id:version` (ades.models.ID_PATTERN, ades.cwl.package.VERSION_PATTERN)."""
DEPLOY_TYPES = ("application/cwl", "application/cwl+yaml", "application/cwl+json", "application/ogcapppkg+json")


def _show(text: str) -> str:
    """A client's string in a message: quoted, and cut short (a path parameter may be kilobytes long)."""
    return repr(text) if len(text) <= 80 else repr(text[:77]) + "..."


def get_process(c: AdesContext, ref: str) -> DeployedProcess:
    if not re.fullmatch(REF_PATTERN, ref):
        # never sent to the store: ES refuses ids over 512 bytes, and such a name can name no process anyway
        raise problem(404, "no-such-process",
                      f"processId: no process {_show(ref)}: a process is addressed as `id` or `id:version` (id: "
                      "1-128 letters, digits, '_', '.', '-'; version: also '+')", "No such process")
    try:
        return c.process_store.get(ref)
    except ProcessNotFound:
        pid, version = split_ref(ref)
        known = [p.version for p in c.process_store.versions(pid, size=20)] if version is not None else []
        detail = (f"processId: process {pid!r} has no version {version!r}; deployed: {', '.join(known)}" if known
                  else f"processId: no process {ref!r} is deployed")
        raise problem(404, "no-such-process", detail, "No such process") from None


def _immutable(process: DeployedProcess, action: str) -> ApiProblem:
    return ApiProblem(403, part2("immutable-process"), f"process {process.id!r} is built in and cannot be {action}",
                      "Immutable process")


def _load_body(c: AdesContext) -> tuple[Any, float]:
    """The package in the request, loaded and validated by cwltool, and runnable here (a required DockerRequirement
    needs a container runtime or the operator's leave to run without); (Package, milliseconds it took)."""
    media = (request.mimetype or "").lower()
    if media not in DEPLOY_TYPES:
        raise problem(415, part2("unsupported-media-type"),
                      f"Content-Type: cannot deploy {media or 'a body without Content-Type'}; use one of "
                      f"{', '.join(DEPLOY_TYPES)}",
                      "Unsupported media type")
    started = time.perf_counter()
    try:
        package = load_package(read_body(request), media, request.args.get("w"), allowed_roots=c.file_roots,
                               fetcher=c.fetcher)
    except PackageError as err:
        raise problem(400, "invalid-package", str(err), "Invalid application package") from None
    why = container_refusal(package.cwl, c.settings.container_runtime, c.settings.docker_without_container)
    if why is not None:
        raise problem(400, "unsupported-requirement", why, "Unsupported requirement")
    return package, (time.perf_counter() - started) * 1000


def _stored(package: Any, mutable: bool = True) -> DeployedProcess:
    return DeployedProcess(id=package.id, version=package.version, package=package.cwl,
                           description=describe(package), mutable=mutable, title=package.title)


def deploy_builtin(c: AdesContext, package: Any) -> None:
    """(Re)store a built-in process as immutable; its content is the server's, so replacing is right."""
    process = _stored(package, mutable=False)
    c.process_store.deploy(process, replace=True)
    c.remember(process, package)


# --- Part 1: list and describe -------------------------------------------------------------------------------
@bp.get("/processes")
def list_processes() -> Response:
    """The latest version of every process, by id; `limit` and `offset` page through them (no limit: all)."""
    c = ctx()
    limit = number_arg("limit", 1, c.settings.max_page_limit, integer=True)
    offset = int(number_arg("offset", 0, integer=True) or 0)
    every = c.process_store.latest_all()
    end = len(every) if limit is None else offset + int(limit)
    links = [{"href": c.url(request.full_path.rstrip("?")), "rel": "self", "type": "application/json",
              "title": "processes"}]
    if end < len(every):
        links.append({"href": c.url(f"/processes?limit={int(limit or 0)}&offset={end}"), "rel": "next",
                      "type": "application/json", "title": "the next processes"})
    return jsonify({"processes": [process_summary(p, c.base_url) for p in every[offset:end]], "links": links})


@bp.get("/processes/<ref>")
def describe_process(ref: str) -> Response:
    c = ctx()
    return jsonify(process_description(get_process(c, ref), c.base_url))


@bp.get("/processes/<ref>/package")
def get_package(ref: str) -> Response:
    process = get_process(ctx(), ref)
    response = jsonify(process.package)
    response.mimetype = "application/cwl+json"
    return response


# --- Part 2: deploy, replace, undeploy -----------------------------------------------------------------------
@bp.post("/processes")
def deploy() -> Response:
    require_role(DEPLOYER, "deploy processes")
    c = ctx()
    package, load_ms = _load_body(c)
    earlier = c.process_store.versions(package.id, size=1)
    if earlier and not earlier[0].mutable:
        raise _immutable(earlier[0], "redeployed")
    process = _stored(package)
    try:
        c.process_store.deploy(process)
    except ProcessExists:
        raise problem(409, part2("duplicated-process"),
                      f"process {package.id!r} version {package.version!r} is already deployed; PUT replaces it, "
                      "or raise s:softwareVersion", "Duplicated process") from None
    c.remember(process, package)
    response = jsonify({"processSummary": process_summary(process, c.base_url), "validationMs": round(load_ms)})
    response.status_code = 201
    response.headers["Location"] = c.url(f"/processes/{process.id}")
    return response


@bp.put("/processes/<ref>")
def replace(ref: str) -> Response:
    require_role(DEPLOYER, "replace processes")
    c = ctx()
    current = get_process(c, ref)
    if not current.mutable:
        raise _immutable(current, "replaced")
    package, _ = _load_body(c)
    pid, version = split_ref(ref)
    if package.id != pid or (version is not None and package.version != version):
        raise problem(400, "invalid-package",
                      f"the package is {package.key!r}; PUT /processes/{ref} must carry process {ref!r}")
    process = _stored(package)
    c.process_store.deploy(process, replace=True)
    c.remember(process, package)
    return Response(status=204)


@bp.delete("/processes/<ref>")
def undeploy(ref: str) -> Response:
    require_role(DEPLOYER, "undeploy processes")
    c = ctx()
    current = get_process(c, ref)
    if not current.mutable:
        raise _immutable(current, "undeployed")
    try:
        c.process_store.delete(ref)
    except ProcessNotFound:
        raise problem(404, "no-such-process", f"no process {ref!r} is deployed", "No such process") from None
    return Response(status=204)


# --- Part 1: execute -----------------------------------------------------------------------------------------
@bp.post("/processes/<ref>/execution")
def execute(ref: str) -> Response:
    c = ctx()
    process = get_process(c, ref)
    body = parse_body(OgcExecute, json_body(request), c.settings)
    wanted = results_request(body.response, body.outputs, process.description.get("outputs") or {})
    prefer = request.headers.get("Prefer", "").lower()
    user = current_principal().user
    # a job that waits for other jobs or a delay cannot answer synchronously
    asked_async = "respond-async" in prefer or body.mode == "async" or bool(body.dependsOn) or body.delay > 0
    asked_async = asked_async or "batch" in (body.model_extra or {})  # a batch's parent never waits for its end
    # a synchronous execute holds a request thread until its job ends: a user has only so many places for them
    place = contextlib.nullcontext(True) if asked_async else c.jobs.sync_slots.hold(user)
    with place as placed:
        if not placed and (body.mode == "sync" or body.response == "raw"):
            raise _too_many_sync(user, c.settings.sync_executes_cap)
        is_async = asked_async or not placed  # past the cap, a job instead of a held thread
        with c.jobs.quota.hold(user):
            job = submit(c, process, body.inputs, body.labels, "async" if is_async else "sync", body,
                         wanted.model_dump())
        location = c.url(f"/jobs/{job.id}")
        if is_async:
            response = jsonify(status_info(job.to_document(), c.base_url))
            response.status_code = 201
            response.headers["Location"] = location
            response.headers["Link"] = _monitor(location)
            if asked_async:
                response.headers["Preference-Applied"] = "respond-async"
            return response
        return _sync_answer(c, job.id, wanted, location)


def _too_many_sync(user: str, cap: int) -> TooManySyncExecutes:
    return TooManySyncExecutes(
        f"user {user!r} has {cap} synchronous executes waiting for their jobs, the limit per user "
        "(ADES_MAX_SYNC_EXECUTES_PER_USER), and this request asks for an answer only a synchronous execute gives "
        "(mode sync, or response raw): nothing was submitted; send it with Prefer: respond-async to get a job, "
        "or try again once one has ended")


def _monitor(location: str) -> str:
    """The Link header value that points a client at the job it can monitor."""
    return f'<{location}>; rel="monitor"; type="application/json"'


def _sync_answer(c: AdesContext, job_id: str, wanted: ResultsRequest, location: str) -> Response:
    outcome = c.jobs.wait(job_id, c.sync_timeout)
    if outcome is None:
        # the job outlived the sync budget: it keeps running, the client follows it like an async one
        response = jsonify(status_info(c.job_store.get(job_id), c.base_url))
        response.status_code = 201
        response.headers["Location"] = location
        response.headers["Link"] = _monitor(location)
        return response
    doc = c.job_store.get(job_id)
    if outcome is not Status.SUCCEEDED:
        detail = doc.get("message") or f"the job ended {outcome.ogc}"
        raise ApiProblem(500, "execution-failed", detail, "Execution failed",
                         {"Location": location, "Link": _monitor(location)})
    found = find_outputs(c.jobs.folder(job_id), c.output_storage, c.manifests)
    return answer({**doc, "status": Status.SUCCEEDED.value}, found, c.base_url, wanted, [_monitor(location)])
