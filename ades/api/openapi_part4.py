"""The OpenAPI description of OGC API Processes Part 4 (job management: ades.api.job_management), merged into the
server's document by ades.api.openapi."""

from __future__ import annotations

from typing import Any

from ades.models import ID_PATTERN

JSON = "application/json"
STATUS_WORDS = ["created", "accepted", "running", "successful", "failed", "dismissed"]
"""OGC's job status words, Part 4's `created` first (ades.status)."""
_JOB_ID = {"name": "jobId", "in": "path", "required": True, "description": "job id",
           "schema": {"type": "string", "pattern": ID_PATTERN}}


def _ref(name: str) -> dict[str, str]:
    return {"$ref": f"#/components/schemas/{name}"}


def _errors(*codes: int) -> dict[str, Any]:
    return {str(code): {"$ref": f"#/components/responses/E{code}"} for code in codes}


def _status(description: str, location: bool = False) -> dict[str, Any]:
    answer: dict[str, Any] = {"description": description, "content": {JSON: {"schema": _ref("statusInfo")}}}
    if location:
        answer["headers"] = {"Location": {"schema": {"type": "string"}}}
    return answer


def schemas() -> dict[str, Any]:
    """`createJob` (an execute request naming its process), `jobPatch`, `jobDefinition`."""
    process = {"type": "string", "minLength": 1,
               "description": "the process to run: its id, `id:version`, or its URL on this server"}
    edits = {"inputs": {"type": "object", "additionalProperties": True},
             "outputs": {"type": "object", "additionalProperties": {"type": "object"}, "nullable": True},
             "response": {"type": "string", "enum": ["raw", "document"]},
             "labels": {"type": "array", "items": {"type": "string"}},
             "dependsOn": {"type": "array", "items": {"type": "string"}},
             "delay": {"type": "number", "minimum": 0}, "subscriber": _ref("subscriber")}
    return {
        "createJob": {"allOf": [_ref("execute"), {"type": "object", "required": ["process"], "properties": {
            "process": process,
            "status": {"type": "string", "enum": ["create", "created"],
                       "description": "Weaver's way of asking for a created job; every job POST /jobs makes is"}}}]},
        "jobPatch": {"type": "object", "additionalProperties": False, "properties": edits,
                     "description": "what to change of a created job, each member replacing what it had"},
        "jobDefinition": {"type": "object", "required": ["entity", "inputs", "outputs"], "properties": {
            "entity": {"type": "string"}, "process": {"type": "string"}, **edits,
            "links": {"type": "array", "items": _ref("link")}}},
    }


def paths() -> dict[str, dict[str, Any]]:
    """Path -> the Part 4 operations on it (the jobs routes' own path items take them in)."""
    return {
        "/jobs": {"post": {
            "operationId": "createJob", "summary": "create a job that does not run until it is started (Part 4)",
            "requestBody": {"required": True, "content": {JSON: {"schema": _ref("createJob")}}},
            "responses": {"201": _status("the created job", location=True), **_errors(400, 404, 413, 415, 503)}}},
        "/jobs/{jobId}": {"patch": {
            "operationId": "updateJob", "summary": "change a created job's inputs, outputs, response, labels, "
            "dependencies or delay (validated again as a whole execute request)",
            "requestBody": {"required": True, "content": {JSON: {"schema": _ref("jobPatch")}}},
            "responses": {"200": _status("the job as changed"),
                          **_errors(400, 404, 409, 413, 415, 503)}}},
        "/jobs/{jobId}/results": {"post": {
            "operationId": "startJob", "summary": "start a created job (Part 4): it is accepted, then runs",
            "responses": {"202": _status("the started job", location=True),
                          **_errors(400, 404, 409, 429, 503)}}},
        "/jobs/{jobId}/definition": {
            "parameters": [_JOB_ID],
            "get": {"operationId": "getJobDefinition", "summary": "the process and the request the job runs with "
                    "(Part 4)", "responses": {"200": {"description": "job definition", "content": {
                        JSON: {"schema": _ref("jobDefinition")}}}, **_errors(404, 503)}}},
    }
