"""OGC API exceptions: every 4xx/5xx this server answers is `{type, title, status, detail}` (RFC 7807 shape).

Handlers cover our own ApiProblem, Flask/werkzeug's HTTP errors (404, 405, 413, bad JSON) and the store being down,
so a client never has to parse an HTML error page.
"""

from __future__ import annotations

import logging
from typing import Any

from elasticsearch import ApiError as EsApiError
from elasticsearch import TransportError
from flask import Flask, Response, current_app, jsonify
from werkzeug.exceptions import HTTPException, RequestEntityTooLarge

from ades.jobs.admission import Refused
from ades.store import StoreUnavailable

log = logging.getLogger(__name__)

OGC_EXCEPTIONS = "http://www.opengis.net/def/exceptions/ogcapi-processes-1/1.0/"
PART2_EXCEPTIONS = "http://www.opengis.net/def/exceptions/ogcapi-processes-2/1.0/"
"""Where Part 2 (deploy, replace, undeploy) defines an exception, its answers carry Part 2's type."""
PROBLEM_JSON = "application/problem+json"

# HTTP status -> (type suffix, title) for errors werkzeug raises on its own
_HTTP_DEFAULTS: dict[int, tuple[str, str]] = {
    400: ("invalid-parameter", "Bad request"),
    404: ("not-found", "Not found"),
    405: ("method-not-allowed", "Method not allowed"),
    406: ("not-acceptable", "Not acceptable"),
    413: ("payload-too-large", "Payload too large"),
    415: ("unsupported-media-type", "Unsupported media type"),
}


class ApiProblem(Exception):
    """Raised anywhere in a request to answer with an OGC exception document."""

    def __init__(self, status: int, kind: str, detail: str, title: str | None = None,
                 headers: dict[str, str] | None = None) -> None:
        super().__init__(detail)
        self.status = status
        self.kind = kind
        self.detail = detail
        self.title = title or _short(kind).replace("-", " ").capitalize()
        self.headers = headers or {}


def problem(status: int, kind: str, detail: str, title: str | None = None) -> ApiProblem:
    return ApiProblem(status, kind, detail, title)


def part2(kind: str) -> str:
    """The kind of an exception Part 2 defines (duplicated-process, immutable-process, unsupported-media-type of a
    deploy), as a full type URI."""
    return PART2_EXCEPTIONS + kind


def problem_response(status: int, kind: str, detail: str, title: str | None = None,
                     headers: dict[str, str] | None = None) -> Response:
    body: dict[str, Any] = {
        "type": kind if "://" in kind else OGC_EXCEPTIONS + kind,
        "title": title or _short(kind).replace("-", " ").capitalize(),
        "status": status,
        "detail": detail,
    }
    response = jsonify(body)
    response.status_code = status
    # application/json, not problem+json: OGC clients (and pygeoapi's) look for JSON
    response.headers.update(headers or {})
    return response


def _short(kind: str) -> str:
    return kind.rsplit("/", 1)[-1]


def register(app: Flask) -> None:
    @app.errorhandler(ApiProblem)
    def _problem(err: ApiProblem) -> Response:
        return problem_response(err.status, err.kind, err.detail, err.title, err.headers)

    @app.errorhandler(HTTPException)
    def _http(err: HTTPException) -> Response:
        status = err.code or 500
        kind, title = _HTTP_DEFAULTS.get(status, ("server-error" if status >= 500 else "client-error", err.name))
        headers = {}
        if status == 405 and err.get_response().headers.get("Allow"):
            headers["Allow"] = err.get_response().headers["Allow"]
        return problem_response(status, kind, err.description or title, title, headers)

    @app.errorhandler(RequestEntityTooLarge)
    def _too_large(err: RequestEntityTooLarge) -> Response:
        limit = current_app.config.get("MAX_CONTENT_LENGTH")
        return problem_response(413, "payload-too-large",
                                f"body: the request body is larger than {limit} bytes, this server's limit "
                                "(ADES_MAX_BODY_BYTES); nothing was stored", "Payload too large")

    @app.errorhandler(Refused)
    def _refused(err: Refused) -> Response:
        # the whole service is full (503), or this one user has their share and others are still served (429)
        return problem_response(err.status, err.kind, err.detail, err.title, {"Retry-After": str(err.retry_after)})

    @app.errorhandler(StoreUnavailable)
    def _store(err: StoreUnavailable) -> Response:
        log.warning("store unavailable: %s", err)
        return problem_response(503, "service-unavailable", f"the job store (Elasticsearch) is unavailable: {err}",
                                "Service unavailable", {"Retry-After": "5"})

    @app.errorhandler(TransportError)
    @app.errorhandler(EsApiError)
    def _es(err: Exception) -> Response:
        status = getattr(err, "status_code", None) if isinstance(err, EsApiError) else None
        if isinstance(status, int) and 400 <= status < 500 and status != 429:
            # ES refused what we sent: our bug (a request we should have validated), not an outage
            log.exception("elasticsearch refused a request")
            return problem_response(500, "server-error", f"Elasticsearch refused a request: {err}",
                                    "Internal server error")
        log.warning("elasticsearch error: %s", err)
        return problem_response(503, "service-unavailable", f"Elasticsearch is unavailable: {err}",
                                "Service unavailable", {"Retry-After": "5"})

    @app.errorhandler(Exception)
    def _crash(err: Exception) -> Response:
        log.exception("unhandled error")
        return problem_response(500, "server-error", f"{type(err).__name__}: {err}", "Internal server error")
