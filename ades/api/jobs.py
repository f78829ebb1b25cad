"""Jobs: list (filters, search_after paging), status, results, files, logs, dismiss."""

from __future__ import annotations

import base64
import binascii
import json
import math
import re
from datetime import UTC, datetime
from typing import Any
from urllib.parse import quote

from flask import Blueprint, Response, current_app, jsonify, request
from pygeoapi.api import APIRequest

from ades.api.auth import current_principal, owner_filter
from ades.api.context import AdesContext, ctx
from ades.api.errors import problem
from ades.api.job_outputs import JobOutputs, OutputFile, find_outputs, not_here
from ades.api.logs import LogQuery, follow, last_lines, source_of
from ades.api.outputs import served
from ades.api.results import ResultsRequest, answer
from ades.api.views import jobs_page, status_info
from ades.config import Settings
from ades.jobs.batches import summary
from ades.models import ID_PATTERN, JobQuery
from ades.results_manifest import normalized
from ades.status import Status
from ades.storage import StorageError
from ades.store import JobNotFound
from ades.store.batches import batch_counts

bp = Blueprint("ades_jobs", __name__)

DEFAULT_LIMIT = 10


def get_job(c: AdesContext, job_id: str) -> dict[str, Any]:
    if not re.fullmatch(ID_PATTERN, job_id):
        # never sent to the store (ES refuses ids over 512 bytes); no job can have this id
        shown = repr(job_id) if len(job_id) <= 80 else repr(job_id[:77]) + "..."
        raise problem(404, "no-such-job", f"jobId: no job {shown}: a job id is 1-128 letters, digits, '_', '.' or "
                      "'-'", "No such job")
    try:
        return c.job_store.get(job_id)
    except JobNotFound:
        raise problem(404, "no-such-job", f"jobId: no job {job_id!r}", "No such job") from None


def visible_job(c: AdesContext, job_id: str) -> dict[str, Any]:
    """The job if the caller may see it (theirs, or they are an admin). Someone else's job answers exactly like a
    missing one, so job ids cannot be probed."""
    doc = get_job(c, job_id)
    if not current_principal().can_see(doc):
        raise problem(404, "no-such-job", f"jobId: no job {job_id!r}", "No such job")
    return doc


# --- query parsing -------------------------------------------------------------------------------------------
def _values(name: str) -> list[str]:
    """A parameter given repeated and/or comma-separated, as one list."""
    return [v.strip() for raw in request.args.getlist(name) for v in raw.split(",") if v.strip()]


def _instant(text: str, name: str) -> datetime | None:
    if text in ("", ".."):
        return None
    try:
        value = datetime.fromisoformat(text)
    except ValueError:
        raise problem(400, "invalid-parameter", f"{name}: {text!r} is not an RFC 3339 date-time") from None
    # a naive time is read as UTC, as most clients mean it
    return value if value.tzinfo else value.replace(tzinfo=UTC)


def number_arg(name: str, low: float, high: float | None = None, integer: bool = False) -> float | None:
    """The query parameter `name` as a number within [low, high] (None when absent); a 400 naming it otherwise."""
    raw = request.args.get(name)
    if raw is None:
        return None
    try:
        value = float(raw)
    except ValueError:
        value = math.nan
    if not math.isfinite(value):
        shown = repr(raw) if len(raw) <= 40 else repr(raw[:37]) + "..."
        raise problem(400, "invalid-parameter", f"{name} must be a number, got {shown}")
    if value < low or (high is not None and value > high):
        bounds = f"between {low:g} and {high:g}" if high is not None else f"at least {low:g}"
        raise problem(400, "invalid-parameter", f"{name} must be {bounds}, got {value:g}")
    if integer and not value.is_integer():
        raise problem(400, "invalid-parameter", f"{name} must be an integer")
    return value


def encode_cursor(values: list[Any]) -> str:
    return base64.urlsafe_b64encode(json.dumps(values, separators=(",", ":")).encode()).decode().rstrip("=")


def decode_cursor(cursor: str) -> list[Any]:
    try:
        values = json.loads(base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4)))
    except (binascii.Error, ValueError):
        raise problem(400, "invalid-parameter", "after: not a cursor this server handed out") from None
    # [created (epoch ms), id], the sort of every job search: anything else would make ES fail the search
    if not (isinstance(values, list) and len(values) == 2 and type(values[0]) is int and isinstance(values[1], str)):
        raise problem(400, "invalid-parameter", "after: not a cursor this server handed out")
    return values


def parse_job_query(settings: Settings) -> JobQuery:
    try:
        statuses = [Status.from_ogc(word) for word in _values("status")]
    except ValueError as err:
        raise problem(400, "invalid-parameter", f"status: {err}") from None
    process_ids = _values("processID") or _values("processId")
    if len(process_ids) > 1:
        raise problem(400, "invalid-parameter", "processID: give one process id")
    # values no job can hold are refused here: ES fails a search for a term over 32 KB
    if process_ids and not re.fullmatch(ID_PATTERN, process_ids[0]):
        raise problem(400, "invalid-parameter", "processID: not a process id (1-128 letters, digits, '_', '.', '-')")
    parents = _values("parentID")
    if len(parents) > 1 or (parents and not re.fullmatch(ID_PATTERN, parents[0])):
        raise problem(400, "invalid-parameter", "parentID: give one job id (1-128 letters, digits, '_', '.', '-')")
    labels = _values("labels")
    too_long = next((label for label in labels if len(label) > settings.max_label_length), None)
    if too_long is not None:
        raise problem(400, "invalid-parameter", f"labels: a label has at most {settings.max_label_length} characters "
                      f"(ADES_MAX_LABEL_LENGTH), this one {len(too_long)}")
    created_from = created_to = None
    if "datetime" in request.args:
        raw = request.args["datetime"]
        if "/" in raw:
            start, _, end = raw.partition("/")
            created_from, created_to = _instant(start, "datetime"), _instant(end, "datetime")
        else:
            created_from = created_to = _instant(raw, "datetime")
    limit = number_arg("limit", 1, settings.max_page_limit, integer=True)
    after = request.args.get("after")
    return JobQuery(
        statuses=statuses,
        process_id=process_ids[0] if process_ids else None,
        parent_id=parents[0] if parents else None,
        labels_all=labels,
        created_from=created_from,
        created_to=created_to,
        min_duration=number_arg("minDuration", 0),
        max_duration=number_arg("maxDuration", 0),
        size=int(limit) if limit is not None else DEFAULT_LIMIT,
        search_after=decode_cursor(after) if after else None,
    )


def _wants_html() -> bool:
    if request.args.get("f"):
        return request.args["f"] == "html"
    best = request.accept_mimetypes.best_match(["application/json", "text/html"])
    return best == "text/html" and request.accept_mimetypes["text/html"] > request.accept_mimetypes["application/json"]


# --- routes --------------------------------------------------------------------------------------------------
@bp.get("/jobs")
def list_jobs() -> Response | str:
    c = ctx()
    # everyone lists only their own jobs, whatever the filters; an admin lists all
    query = parse_job_query(c.settings).model_copy(update={"user_id": owner_filter()})
    c.jobs.write_marks.before_search()
    page = c.job_store.search(query)
    # a batch shows its counts and progress wherever it is listed (one aggregation per batch on the page)
    jobs = [batch_status(c, doc) if "batch-size" in doc else status_info(doc, c.base_url) for doc in page.jobs]
    args = {k: v for k, v in request.args.items(multi=True) if k != "after"}
    links = [{"href": c.url(request.full_path.rstrip("?")), "rel": "self", "type": "application/json",
              "title": "this page"}]
    if page.next_after is not None:
        from urllib.parse import urlencode

        params = urlencode([*args.items(), ("after", encode_cursor(page.next_after))])
        links.append({"href": c.url(f"/jobs?{params}"), "rel": "next", "type": "application/json",
                      "title": "next page"})
    body = {"jobs": jobs, "links": links, "numberMatched": page.total, "numberReturned": len(jobs)}
    if _wants_html():
        api = current_app.extensions["pygeoapi"]
        filters = {"labels": ",".join(_values("labels")), "status": ",".join(_values("status")),
                   "processID": query.process_id or "", "parentID": query.parent_id or ""}
        locale = APIRequest.from_flask(request, api.locales).locale
        html = jobs_page(api.tpl_config, locale, jobs, links, page.total, page.total_is_exact, filters,
                         c.base_url)
        return Response(html, mimetype="text/html")
    return jsonify(body)


@bp.get("/jobs/<job_id>")
def job_status(job_id: str) -> Response:
    c = ctx()
    doc = visible_job(c, job_id)
    if "batch-size" in doc:
        return jsonify(batch_status(c, doc))
    return jsonify(status_info(doc, c.base_url))


def batch_status(c: AdesContext, doc: dict[str, Any]) -> dict[str, Any]:
    """A batch's statusInfo with its counts and progress, read in one aggregation (settling the batch if its
    counts say it started or ended)."""
    c.jobs.write_marks.before_search()
    counts = batch_counts(c.job_store.client, c.job_store.index, doc)
    doc = c.jobs.batches.settle_one(doc, counts)
    info = status_info(doc, c.base_url)
    info["progress"] = counts.progress
    info["batch"] = summary(counts, doc)
    return info


@bp.get("/jobs/<job_id>/results")
def job_results(job_id: str) -> Response:
    c = ctx()
    doc = _succeeded(c, job_id)
    found = _outputs(c, job_id)
    fmt = request.args.get("f", "json")
    if fmt == "stac":
        from ades.results_stac import GEOJSON, job_item  # rasterio loads only when someone asks for STAC

        item = job_item(doc, found.outputs, c.base_url, found.root, found.raster_facts())
        return Response(json.dumps(item), mimetype=GEOJSON)
    if fmt != "json":
        raise problem(400, "invalid-parameter", f"f: results come as json or stac, not {fmt!r}")
    # as the execute request asked (raw or document, each output by value or reference); `f=json`: a document
    wanted = ResultsRequest.of_job(doc)
    if "f" in request.args:
        wanted = wanted.model_copy(update={"response": "document"})
    return answer(doc, found, c.base_url, wanted)


def _succeeded(c: AdesContext, job_id: str) -> dict[str, Any]:
    doc = visible_job(c, job_id)
    status = Status(doc["status"])
    if status is not Status.SUCCEEDED:
        raise problem(404, "result-not-ready", f"job {job_id} is {status.ogc}; results exist once it is successful",
                      "Results not ready")
    return doc


def _outputs(c: AdesContext, job_id: str) -> JobOutputs:
    """The job's outputs from this node's disk, or from object storage when it ran elsewhere."""
    return find_outputs(c.jobs.folder(job_id), c.output_storage, c.manifests)


@bp.get("/jobs/<job_id>/results/<output>")
def job_output(job_id: str, output: str) -> Response:
    c = ctx()
    doc = _succeeded(c, job_id)
    found = _outputs(c, job_id)
    if found.outputs is None:
        raise not_here(doc, found, "no-such-output", "No such output")
    if output not in found.outputs:
        raise problem(404, "no-such-output", f"job {job_id} has no output {output!r}", "No such output")
    value = found.outputs[output]
    if isinstance(value, dict) and value.get("class") == "File":
        file = found.file(value.get("path", ""))
        if file is None:
            raise problem(404, "no-such-output", f"the file of output {output!r} is gone", "No such output")
        fmt = value.get("format") or ""
        return file.download(fmt.split("media-types/", 1)[1] if "media-types/" in fmt else "application/octet-stream")
    return jsonify(served(value, f"{c.base_url.rstrip('/')}/jobs/{job_id}/files", found.root))


@bp.get("/jobs/<job_id>/files/")
@bp.get("/jobs/<job_id>/files/<path:relative>")
def job_file(job_id: str, relative: str = "") -> Response:
    """A file of the job's outputs folder, or (a folder's path) what lies in it."""
    c = ctx()
    doc = visible_job(c, job_id)
    found = _outputs(c, job_id)
    file = found.output_file(relative) if relative.strip("/") else None
    if file is not None:
        return file.download("application/octet-stream")
    folder = normalized(relative)
    entries = found.entries(folder) if folder is not None else None
    if entries is None or folder is None:
        if Status(doc["status"]) is Status.SUCCEEDED and found.outputs is None and not found.folder.outputs.is_dir():
            raise not_here(doc, found, "no-such-file", "No such file")
        raise problem(404, "no-such-file", f"job {job_id} has no file {relative!r}", "No such file")
    return jsonify(_folder_listing(c.url(f"/jobs/{job_id}/files"), folder, entries))


def _folder_listing(files_url: str, path: str, entries: list[tuple[str, OutputFile | None]]) -> dict[str, Any]:
    """A folder of the outputs as a CWL Directory (its location and each entry's: /files URLs)."""
    base = f"{files_url}/{quote(path)}/" if path else f"{files_url}/"
    listing: list[dict[str, Any]] = []
    for name, file in entries:
        if file is None:
            listing.append({"class": "Directory", "basename": name, "location": f"{base}{quote(name)}/"})
        else:
            listing.append({"class": "File", "basename": name, "size": file.size, "location": f"{base}{quote(name)}"})
    folder = {"class": "Directory", "location": base, "listing": listing}
    if path:
        folder["basename"] = path.rsplit("/", 1)[-1]
    return folder


@bp.get("/jobs/<job_id>/logs")
def job_logs(job_id: str) -> Response:
    """The log from this node's disk or the shipped chunks (ades.api.logs); queued, or its files removed: empty."""
    c = ctx()
    visible_job(c, job_id)
    query = LogQuery.of(request)
    folder = c.jobs.folder(job_id)
    if query.tail is not None and folder.log.exists():
        return Response(folder.log_tail(query.tail), mimetype="text/plain")
    source = source_of(folder, c.log_store)
    if query.follow:
        def ended() -> bool:
            try:
                return Status(c.job_store.get(job_id)["status"]).terminal
            except JobNotFound:  # removed meanwhile
                return True
        return Response(follow(source, ended, query.offset, query.seconds), mimetype="text/plain")
    got = source.read(query.offset)
    response = Response(last_lines(got.text, query.tail) if query.tail else got.text, mimetype="text/plain")
    response.headers["Ades-Log-Offset"] = str(got.next_offset)  # where a later read goes on from
    return response


@bp.delete("/jobs/<job_id>")
def dismiss(job_id: str) -> Response:
    c = ctx()
    doc = visible_job(c, job_id)
    status = Status(doc["status"])
    if "batch-size" in doc and not status.terminal:
        c.jobs.batches.dismiss(job_id)
        return jsonify(batch_status(c, c.job_store.get(job_id)))
    try:
        c.jobs.dismiss(job_id, status)
    except StorageError as err:
        raise problem(503, "storage-unavailable", f"job {job_id}: its outputs could not be removed from object "
                      f"storage, so nothing was removed; try again: {err}", "Storage unavailable") from None
    c.manifests.forget(job_id)
    if status.terminal:
        # its files are gone; its status stays what it was (a terminal job never changes)
        return jsonify(status_info({**doc, "message": (doc.get("message") or "") + " (files removed)"}, c.base_url))
    return jsonify(status_info(c.job_store.get(job_id), c.base_url))

