"""The OpenAPI 3.0 document of this server, built in code from the routes we serve.

pygeoapi's generated document is not merged in: it points into schemas.opengis.net by `$ref`, so it cannot be
validated (or read by tools) offline, and it describes pygeoapi's own /jobs routes, which ours replace.
Ours is self-contained.
"""

from __future__ import annotations

from typing import Any

from ades.api import openapi_part4
from ades.api.batch_schemas import BATCH, BATCH_STATUS
from ades.api.callback_schemas import CALLBACK_STATE, CALLBACKS, SUBSCRIBER
from ades.api.processes import DEPLOY_TYPES, REF_PATTERN
from ades.config import Settings
from ades.models import ID_PATTERN

JSON = "application/json"
HTML = "text/html"
OPENAPI_JSON = "application/vnd.oai.openapi+json;version=3.0"


def _ref(name: str) -> dict[str, str]:
    return {"$ref": f"#/components/schemas/{name}"}


def _json(schema: dict[str, Any], description: str) -> dict[str, Any]:
    return {"description": description, "content": {JSON: {"schema": schema}}}


ERROR_TEXTS = {
    400: "Invalid request (on any route: a malformed request, e.g. a header with control characters, or a Host that "
         "is not one of the server's names)",
    401: "No or invalid bearer token (when the server requires them)",
    403: "Forbidden (a missing role) or immutable process", 404: "Not found",
    409: "Conflict: the process is deployed already, or the job is not `created` (Part 4's locked: it was started)",
    413: "Request body larger than ADES_MAX_BODY_BYTES", 414: "Request line too long (gunicorn: over 4094 bytes)",
    415: "Unsupported media type",
    429: "Too many unfinished jobs of this user (ADES_MAX_RUNNING_JOBS_PER_USER), or too many synchronous executes "
         "of this user for one that must wait (ADES_MAX_SYNC_EXECUTES_PER_USER); see Retry-After",
    431: "Request headers too large", 500: "Server error or failed execution",
    503: "Store unavailable, too many queued jobs, or too little free disk for new jobs (see Retry-After)",
}
HTTP_ERRORS = (400, 414, 431)
"""What the HTTP server in front (gunicorn) may answer on any route before the app sees the request."""


def _errors(*codes: int) -> dict[str, Any]:
    return {str(code): {"$ref": f"#/components/responses/E{code}"} for code in codes}


def _path_param(name: str, description: str) -> dict[str, Any]:
    return {"name": name, "in": "path", "required": True, "description": description, "schema": {"type": "string"}}


def _query(name: str, description: str, schema: dict[str, Any], explode: bool = False) -> dict[str, Any]:
    param = {"name": name, "in": "query", "required": False, "description": description, "schema": schema}
    if schema.get("type") == "array":
        param.update(style="form", explode=explode)
    return param


PROCESS_REF = _path_param("processId", "process id (latest version) or `id:version`")
PROCESS_REF["schema"]["pattern"] = f"^{REF_PATTERN}$"
JOB_ID = _path_param("jobId", "job id")
JOB_ID["schema"]["pattern"] = ID_PATTERN
F_PARAM = _query("f", "output format", {"type": "string", "enum": ["json", "html"]})


EXECUTE_OUTPUTS = {
    "type": "object", "additionalProperties": {"type": "object", "properties": {
        "transmissionMode": {"type": "string", "enum": ["value", "reference"]}, "format": {"type": "object"}}},
    "description": "the outputs wanted (all when left out), each by value or by reference (default: files by "
    "reference, other values by value; with response raw, by value)",
}


def _schemas(settings: Settings) -> dict[str, Any]:
    link = {"type": "object", "required": ["href"],
            "properties": {k: {"type": "string"} for k in ("href", "rel", "type", "title", "hreflang")}}
    status_info = {
        "type": "object",
        "required": ["jobID", "status", "type"],
        "properties": {
            "jobID": {"type": "string"}, "processID": {"type": "string"},
            "processVersion": {"type": "string", "nullable": True},
            "type": {"type": "string", "enum": ["process"]},
            "status": {"type": "string", "enum": openapi_part4.STATUS_WORDS},
            "message": {"type": "string"}, "progress": {"type": "integer", "minimum": 0, "maximum": 100},
            **{k: {"type": "string", "format": "date-time"}
               for k in ("created", "started", "finished", "updated")},
            "labels": {"type": "array", "items": {"type": "string"}}, "callback": CALLBACK_STATE, **BATCH_STATUS,
            "links": {"type": "array", "items": _ref("link")},
        },
    }
    summary = {
        "type": "object", "required": ["id", "version", "mutable"],
        "properties": {
            "id": {"type": "string"}, "version": {"type": "string"}, "title": {"type": "string"},
            "description": {"type": "string"}, "keywords": {"type": "array", "items": {"type": "string"}},
            "jobControlOptions": {"type": "array", "items": {"type": "string"}},
            "outputTransmission": {"type": "array", "items": {"type": "string"}},
            "mutable": {"type": "boolean"}, "links": {"type": "array", "items": _ref("link")},
        },
    }
    description = {"allOf": [_ref("processSummary"), {"type": "object", "properties": {
        "inputs": {"type": "object", "additionalProperties": True},
        "outputs": {"type": "object", "additionalProperties": True}}}]}
    labels = {"type": "array", "maxItems": settings.max_labels,
              "items": {"type": "string", "minLength": 1, "maxLength": settings.max_label_length,
                        "pattern": r"\S"},
              "description": "free labels stored with the job (an ades extension); `[]` is the same as none"}
    scheduling = {
        "dependsOn": {"type": "array", "items": {"type": "string"}, "maxItems": 100,
                      "description": "ids of jobs that must succeed before this one starts (an ades extension)"},
        "delay": {"type": "number", "minimum": 0,
                  "description": "seconds to wait, after the dependencies, before the job starts (an ades extension)"},
        "subscriber": _ref("subscriber")}
    return {
        "link": link,
        "exception": {"type": "object", "required": ["type"], "properties": {
            "type": {"type": "string"}, "title": {"type": "string"}, "status": {"type": "integer"},
            "detail": {"type": "string"}, "instance": {"type": "string"}}},
        "statusInfo": status_info, "subscriber": SUBSCRIBER,
        "processSummary": summary,
        "processDescription": description,
        "processList": {"type": "object", "required": ["processes", "links"], "properties": {
            "processes": {"type": "array", "items": _ref("processSummary")},
            "links": {"type": "array", "items": _ref("link")}}},
        "jobList": {"type": "object", "required": ["jobs", "links"], "properties": {
            "jobs": {"type": "array", "items": _ref("statusInfo")},
            "links": {"type": "array", "items": _ref("link")},
            "numberMatched": {"type": "integer"}, "numberReturned": {"type": "integer"}}},
        "results": {"type": "object", "additionalProperties": True,
                    "description": "output id -> {href, type} (by reference) or {value} (by value; a file's content "
                    "with its mediaType, and encoding base64 unless it is text)"},
        "execute": {"type": "object", "properties": {
            "inputs": {"type": "object", "additionalProperties": True},
            "outputs": EXECUTE_OUTPUTS,
            "response": {"type": "string", "enum": ["raw", "document"], "default": "document"},
            "mode": {"type": "string", "enum": ["sync", "async", "auto"]},
            "labels": labels, **scheduling, "batch": BATCH}},
        "executeWpst": {"type": "object", "properties": {
            "mode": {"type": "string", "enum": ["sync", "async", "auto"], "default": "async"},
            "response": {"type": "string", "enum": ["raw", "document"], "default": "document"},
            "inputs": {"type": "array", "items": {"type": "object", "required": ["id"], "properties": {
                "id": {"type": "string"}, "data": {}, "href": {"type": "string"}}}},
            "outputs": {"type": "array", "items": {"type": "object", "required": ["id"], "properties": {
                "id": {"type": "string"},
                "transmissionMode": {"type": "string", "enum": ["value", "reference"]}}}},
            "labels": labels, **scheduling, "batch": BATCH}},
        "ogcapppkg": {"type": "object", "required": ["executionUnit"], "properties": {
            "processDescription": {"type": "object", "additionalProperties": True},
            "executionUnit": {"type": "object", "additionalProperties": True}}},
        "deployResult": {"type": "object", "properties": {"processSummary": _ref("processSummary"),
                                                           "validationMs": {"type": "integer"}}},
    }


def _deploy_body() -> dict[str, Any]:
    content: dict[str, Any] = {}
    for media in DEPLOY_TYPES:
        if media == "application/ogcapppkg+json":
            content[media] = {"schema": _ref("ogcapppkg")}
        elif media == "application/cwl+json":
            content[media] = {"schema": {"type": "object", "additionalProperties": True}}
        else:
            content[media] = {"schema": {"type": "string"}}
    return {"required": True, "content": content,
            "description": "a CWL application package (OGC 20-089); one that requires DockerRequirement is refused "
            "(400, unsupported-requirement) when the server has no container runtime (ADES_CONTAINER_RUNTIME) and "
            "does not run such tools without one (ADES_DOCKER_WITHOUT_CONTAINER)"}


def _job_list_params(settings: Settings) -> list[dict[str, Any]]:
    return [
        _query("status", "OGC status words (comma-separated or repeated): any of them",
               {"type": "array", "items": {"type": "string", "enum": openapi_part4.STATUS_WORDS}}),
        _query("processID", "jobs of this process", {"type": "string"}),
        _query("parentID", "the children of this batch job", {"type": "string"}),
        _query("labels", "labels (comma-separated or repeated): jobs carrying all of them",
               {"type": "array", "items": {"type": "string"}}),
        _query("datetime", "creation time: an instant or an interval `start/end` (`..` open)", {"type": "string"}),
        _query("minDuration", "minimum run time in seconds", {"type": "number", "minimum": 0}),
        _query("maxDuration", "maximum run time in seconds", {"type": "number", "minimum": 0}),
        _query("limit", "page size (ADES_MAX_PAGE_LIMIT at most; more is a 400)",
               {"type": "integer", "minimum": 1, "maximum": settings.max_page_limit, "default": 10}),
        _query("after", "opaque cursor from a `next` link", {"type": "string"}),
        F_PARAM,
    ]


def _json_or_html(description: str, media: str = JSON) -> dict[str, Any]:
    return {"description": description, "content": {media: {"schema": {"type": "object"}},
                                                     HTML: {"schema": {"type": "string"}}}}


def _landing_paths() -> dict[str, Any]:
    return {
        "/": {"get": {"operationId": "getLandingPage", "summary": "landing page", "parameters": [F_PARAM],
                      "responses": {"200": _json_or_html("landing page")}}},
        "/conformance": {"get": {"operationId": "getConformance", "summary": "conformance classes",
                                 "parameters": [F_PARAM],
                                 "responses": {"200": _json_or_html("conformance classes")}}},
        "/openapi": {"get": {"operationId": "getOpenapi", "summary": "this document", "parameters": [F_PARAM],
                             "responses": {"200": _json_or_html("the OpenAPI document", OPENAPI_JSON)}}},
    }


def _process_paths(settings: Settings) -> dict[str, Any]:
    status_json = _json(_ref("statusInfo"), "job status")
    return {
        "/processes": {
            "get": {"operationId": "getProcesses", "summary": "deployed processes (latest versions, by id)",
                    "parameters": [
                        _query("limit", "page size (ADES_MAX_PAGE_LIMIT at most; none: every process)",
                               {"type": "integer", "minimum": 1, "maximum": settings.max_page_limit}),
                        _query("offset", "processes to skip (the next link carries it)",
                               {"type": "integer", "minimum": 0})],
                    "responses": {"200": _json(_ref("processList"), "process list"), **_errors(400, 503)}},
            "post": {"operationId": "deploy", "summary": "deploy a CWL application package",
                     "parameters": [_query("w", "the Workflow of a $graph to deploy", {"type": "string"})],
                     "requestBody": _deploy_body(),
                     "responses": {"201": {**_json(_ref("deployResult"), "deployed"),
                                           "headers": {"Location": {"schema": {"type": "string"}}}},
                                   **_errors(400, 403, 409, 413, 415, 503)}},
        },
        "/processes/{processId}": {
            "parameters": [PROCESS_REF],
            "get": {"operationId": "getProcessDescription", "summary": "process description",
                    "responses": {"200": _json(_ref("processDescription"), "description"), **_errors(404, 503)}},
            "put": {"operationId": "replace", "summary": "replace a deployed process",
                    "requestBody": _deploy_body(),
                    "responses": {"204": {"description": "replaced"}, **_errors(400, 403, 404, 413, 415, 503)}},
            "delete": {"operationId": "undeploy", "summary": "undeploy a process (all versions, or `id:version`)",
                       "responses": {"204": {"description": "undeployed"}, **_errors(403, 404, 503)}},
        },
        "/processes/{processId}/package": {
            "parameters": [PROCESS_REF],
            "get": {"operationId": "getPackage", "summary": "the deployed CWL",
                    "responses": {"200": {"description": "CWL", "content": {"application/cwl+json": {
                        "schema": {"type": "object"}}}}, **_errors(404, 503)}},
        },
        "/processes/{processId}/execution": {
            "parameters": [PROCESS_REF],
            "post": {"operationId": "execute", "summary": "execute (sync unless `Prefer: respond-async`)",
                     "description": "Synchronous unless `Prefer: respond-async` (or mode async, dependsOn, delay). "
                     "A user's synchronous executes at once are capped (ADES_MAX_SYNC_EXECUTES_PER_USER): past the "
                     "cap the request gets a job (201 with Location) as if it had asked respond-async, unless it asks "
                     "mode sync or response raw (then 429).",
                     "parameters": [{"name": "Prefer", "in": "header", "required": False,
                                     "schema": {"type": "string"}}],
                     "requestBody": {"required": True, "content": {JSON: {"schema": _ref("execute")}}},
                     "callbacks": CALLBACKS,
                     "responses": {
                         "200": _results_200("results (sync), as `response` and each output's "
                                             "`transmissionMode` asked"),
                         "201": {**status_json, "headers": {"Location": {"schema": {"type": "string"}}}},
                         "204": {"description": "response raw, every output by reference: a Link header each"},
                         **_errors(400, 404, 413, 415, 429, 500, 503)}},
        },
        "/processes/{processId}/jobs": {
            "parameters": [PROCESS_REF],
            "post": {"operationId": "executeWpst", "summary": "execute, WPS-T form (always async)",
                     "requestBody": {"required": True, "content": {JSON: {"schema": _ref("executeWpst")}}},
                     "callbacks": CALLBACKS,
                     "responses": {"201": {**status_json, "headers": {"Location": {"schema": {"type": "string"}}}},
                                   **_errors(400, 404, 413, 415, 429, 503)}},
        },
    }


def _results_200(description: str, stac: bool = False) -> dict[str, Any]:
    """A 200 of results (ades.api.results): a JSON document, one raw output in its own media type, or several as
    multipart/related."""
    content: dict[str, Any] = {
        # a document, or (response raw) the one output's own JSON value, which may be any JSON
        JSON: {"schema": {"anyOf": [_ref("results"), {}]}},
        "multipart/related": {"schema": {"type": "string", "format": "binary"}},
        "*/*": {"schema": {"type": "string", "format": "binary"}},
    }
    if stac:
        content["application/geo+json"] = {"schema": {"type": "object", "required": [
            "type", "stac_version", "id", "geometry", "properties", "links", "assets"], "additionalProperties": True}}
    return {"description": description, "content": content}


_LISTING = {"type": "object", "required": ["class", "location", "listing"], "additionalProperties": True}
_REDIRECT = {"description": "the file is in object storage (ADES_OUTPUT_STORAGE=s3) and the job ran on another "
             "host: `Location` is a presigned URL of it", "headers": {"Location": {"schema": {"type": "string"}}}}


def _job_paths(settings: Settings) -> dict[str, Any]:
    status_json = _json(_ref("statusInfo"), "job status")
    return {
        "/jobs": {"get": {"operationId": "getJobs", "summary": "jobs, newest first",
                          "parameters": _job_list_params(settings),
                          "responses": {"200": {"description": "job list", "content": {
                              JSON: {"schema": _ref("jobList")}, "text/html": {"schema": {"type": "string"}}}},
                              **_errors(400, 503)}}},
        "/jobs/{jobId}": {
            "parameters": [JOB_ID],
            "get": {"operationId": "getStatus", "summary": "job status",
                    "responses": {"200": status_json, **_errors(404, 503)}},
            "delete": {"operationId": "dismiss", "summary": "dismiss: cancel a running job, remove a finished one's "
                       "files and stored outputs; a batch: every job under it not ended is dismissed too",
                       "responses": {"200": status_json, **_errors(404, 503)}},
        },
        "/jobs/rerun": {"post": {
            "operationId": "rerunMatching", "summary": "run every failed job the filters of GET /jobs select (of one "
            "process) again, as a new batch (an ades extension)", "parameters": _job_list_params(settings),
            "responses": {"201": status_json, **_errors(400, 409, 429, 503)}}},
        "/jobs/{jobId}/rerun": {
            "parameters": [JOB_ID],
            "post": {"operationId": "rerunFailed", "summary": "run the failed jobs of an ended batch again, as a "
                     "new batch (an ades extension)",
                     "responses": {"201": {**status_json, "headers": {"Location": {"schema": {"type": "string"}}}},
                                   **_errors(404, 409, 429, 503)}},
        },
        "/jobs/{jobId}/results": {
            "parameters": [JOB_ID],
            "get": {"operationId": "getResults", "summary": "results document, or (`f=stac`) a STAC Item with an "
                    "asset per file output and the rasters' WGS84 footprint",
                    "parameters": [_query("f", "json: the OGC results document; stac: a STAC 1.1 Item",
                                          {"type": "string", "enum": ["json", "stac"], "default": "json"})],
                    "responses": {"200": _results_200("results, as the execute request asked (`f=json`: a "
                                                      "document), or the STAC Item", stac=True),
                                  "204": {"description": "the execute request asked raw, every output by "
                                          "reference: a Link header each"},
                                  **_errors(400, 404, 503)}},
        },
        "/jobs/{jobId}/results/{outputId}": {
            "parameters": [JOB_ID, _path_param("outputId", "output id")],
            "get": {"operationId": "getResult", "summary": "one output (a file's content, or the value as JSON)",
                    "responses": {"200": {"description": "the output", "content": {
                        "application/octet-stream": {"schema": {"type": "string", "format": "binary"}},
                        JSON: {"schema": {}}}}, "302": _REDIRECT, **_errors(404, 503)}},
        },
        "/jobs/{jobId}/files/": {
            "parameters": [JOB_ID],
            "get": {"operationId": "getJobFiles", "summary": "what the job's outputs folder holds, as a CWL "
                    "Directory with a `listing` (each entry's `location` a /files URL)",
                    "responses": {"200": {"description": "the outputs folder's listing", "content": {
                        JSON: {"schema": _LISTING}}}, **_errors(404, 503)}},
        },
        "/jobs/{jobId}/files/{path}": {
            "parameters": [JOB_ID, _path_param("path", "file path inside the job's outputs")],
            "get": {"operationId": "getJobFile", "summary": "a file the job produced, or (the path of a folder, or "
                    "empty: the outputs folder) what the folder holds, as a CWL Directory with a `listing`",
                    "responses": {"200": {"description": "the file, or the folder's listing", "content": {
                        "application/octet-stream": {"schema": {"type": "string", "format": "binary"}},
                        JSON: {"schema": _LISTING}}},
                        "302": _REDIRECT, **_errors(404, 503)}},
        },
        "/jobs/{jobId}/logs": {
            "parameters": [JOB_ID],
            "get": {"operationId": "getLogs", "summary": "the job log (cwltool and tool output), from this node's "
                    "disk or, for a job that ran on another host, the job-logs index (ADES_LOG_STORE=elasticsearch)",
                    "parameters": [
                        _query("offset", "read from this byte of the log on (the Ades-Log-Offset of an earlier "
                               "read)", {"type": "integer", "minimum": 0}),
                        _query("tail", "only the last lines", {"type": "integer", "minimum": 1}),
                        _query("follow", "stream the log as it grows until the job ends (at most 300 s; go on "
                               "with offset)", {"type": "boolean"}),
                        _query("timeout", "seconds to follow, at most 300", {"type": "integer", "minimum": 1})],
                    "responses": {"200": {"description": "log", "headers": {"Ades-Log-Offset": {
                        "description": "the offset after what was read (not sent when following)",
                        "schema": {"type": "integer"}}}, "content": {"text/plain": {
                        "schema": {"type": "string"}}}}, **_errors(400, 404, 503)}},
        },
    }


def _metrics_path() -> dict[str, Any]:
    return {"/metrics": {"get": {"operationId": "getMetrics", "summary": "Prometheus metrics (jobs by status and "
                                "process, run-time histogram, queued jobs, consumer lag)",
                                "responses": {"200": {"description": "Prometheus text format", "content": {
                                    "text/plain": {"schema": {"type": "string"}}}}}}}}


def _error_responses() -> dict[str, Any]:
    responses = {f"E{code}": _json(_ref("exception"), text) for code, text in ERROR_TEXTS.items()}
    responses["E401"]["headers"] = {"WWW-Authenticate": {"schema": {"type": "string"}, "description": "Bearer"}}
    for code in (429, 503):
        responses[f"E{code}"]["headers"] = {"Retry-After": {"schema": {"type": "integer"},
                                                            "description": "seconds to wait before trying again"}}
    return responses


def build_openapi(base_url: str, title: str = "ades", version: str = "0.1.0",
                  settings: Settings | None = None) -> dict[str, Any]:
    """The document; limits (labels, page size) are those of `settings` (the defaults when None)."""
    settings = settings or Settings.model_construct()
    paths: dict[str, Any] = {**_landing_paths(), **_process_paths(settings), **_job_paths(settings), **_metrics_path()}
    for path, operations in openapi_part4.paths().items():
        paths.setdefault(path, {}).update(operations)
    _secure(paths)
    responses = _error_responses()
    return {
        "openapi": "3.0.3",
        "info": {"title": title, "version": version,
                 "description": "OGC API - Processes (Part 1, Part 2, and Part 4's job management, a draft) and WPS-T "
                 "for CWL application packages"},
        "servers": [{"url": base_url.rstrip("/") or "/"}],
        "paths": paths,
        "components": {"schemas": {**_schemas(settings), **openapi_part4.schemas()}, "responses": responses,
                       "securitySchemes": {"bearer": {
            "type": "http", "scheme": "bearer",
            "description": "a token from the server's tokens file, or a JWT it verifies (it must expire); servers "
                           "started without either are open on loopback only (every request acts as `anonymous`); "
                           "/metrics also takes the server's metrics token"}}},
        "security": [{"bearer": []}],
    }


PUBLIC_PATHS = ("/", "/conformance", "/openapi")
"""Served without a token (ades.api.auth.PUBLIC_BLUEPRINTS); /metrics takes a user's token or ADES_METRICS_TOKEN."""
_DEPLOY_OPERATIONS = ("deploy", "replace", "undeploy")


def _secure(paths: dict[str, Any]) -> None:
    """Public operations need no token; every other one may answer 401, and deploy/replace/undeploy 403 (the
    `deployer` role). Every one may meet the HTTP server's own refusals (HTTP_ERRORS)."""
    for path, item in paths.items():
        for method, operation in item.items():
            if method == "parameters":
                continue
            operation["responses"].update({k: v for k, v in _errors(*HTTP_ERRORS).items()
                                           if k not in operation["responses"]})
            if path in PUBLIC_PATHS:
                operation["security"] = []
                continue
            operation["responses"].update(_errors(401))
            if operation["operationId"] in _DEPLOY_OPERATIONS:
                operation["responses"].update(_errors(403))
