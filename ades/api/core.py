"""Landing page, conformance and the OpenAPI document, rendered by pygeoapi's API object (JSON and HTML).

pygeoapi.flask_app is never imported: it reads PYGEOAPI_CONFIG at import time. We build `pygeoapi.api.API`
ourselves from a config dict made in code (see ades.app) and call its module-level view functions.
"""

from __future__ import annotations

import json
from typing import Any
from urllib.parse import urlencode

from flask import Blueprint, Response, current_app, make_response, redirect, request
from pygeoapi import api as pygeoapi_api
from pygeoapi.api import APIRequest
from pygeoapi.util import render_j2_template

bp = Blueprint("ades_core", __name__)

PROCESSES_CONFORMANCE = [
    "http://www.opengis.net/spec/ogcapi-processes-1/1.0/conf/core",
    "http://www.opengis.net/spec/ogcapi-processes-1/1.0/conf/ogc-process-description",
    "http://www.opengis.net/spec/ogcapi-processes-1/1.0/conf/json",
    "http://www.opengis.net/spec/ogcapi-processes-1/1.0/conf/html",
    "http://www.opengis.net/spec/ogcapi-processes-1/1.0/conf/oas30",
    "http://www.opengis.net/spec/ogcapi-processes-1/1.0/conf/job-list",
    "http://www.opengis.net/spec/ogcapi-processes-1/1.0/conf/dismiss",
    "http://www.opengis.net/spec/ogcapi-processes-1/1.0/conf/callback",
    "http://www.opengis.net/spec/ogcapi-processes-2/1.0/conf/deploy-replace-undeploy",
    "http://www.opengis.net/spec/ogcapi-processes-2/1.0/conf/ogcapppkg",
    "http://www.opengis.net/spec/ogcapi-processes-2/1.0/conf/cwl",
    # Part 4 (draft): POST /jobs, PATCH /jobs/{id}, POST /jobs/{id}/results, GET /jobs/{id}/definition
    "http://www.opengis.net/spec/ogcapi-processes-4/1.0/conf/job-management",
]
# pygeoapi links to collections and tiling schemes on its landing page; this server has neither
_DROPPED_RELS = ("data", "http://www.opengis.net/def/rel/ogc/1.0/tiling-schemes")


def _api() -> pygeoapi_api.API:
    return current_app.extensions["pygeoapi"]


def _respond(headers: dict[str, Any], status: int, content: Any) -> Response:
    response = make_response(content, int(status))
    response.headers.update(headers)
    return response


def _request(api: pygeoapi_api.API) -> APIRequest:
    return APIRequest.from_flask(request, api.locales)


@bp.get("/")
def landing_page() -> Response:
    api = _api()
    req = _request(api)
    headers, status, content = pygeoapi_api.landing_page(api, req)
    if req.format == "json" or req.format is None:
        body = json.loads(content)
        body["links"] = [link for link in body.get("links", []) if link.get("rel") not in _DROPPED_RELS]
        content = json.dumps(body)
    return _respond(headers, status, content)


@bp.get("/conformance")
def conformance() -> Response:
    api = _api()
    req = _request(api)
    # pygeoapi's own list grows on each call (it extends a module global); ours is computed, not accumulated
    classes = sorted(set(pygeoapi_api.CONFORMANCE_CLASSES) | set(PROCESSES_CONFORMANCE))
    headers = req.get_response_headers(**api.api_headers)
    if req.format == "html":
        content = render_j2_template(api.tpl_config, api.config["server"]["templates"], "conformance.html",
                                     {"conformsTo": classes}, req.locale)
        return _respond(headers, 200, content)
    return _respond(headers, 200, json.dumps({"conformsTo": classes}))


@bp.get("/openapi")
def openapi() -> Response:
    api = _api()
    if request.args.get("ui") == "redoc":
        # ReDoc's script is not served here (ades.api.assets): its page would stay blank without the internet
        kept = urlencode([(k, v) for k, v in request.args.items(multi=True) if k != "ui"])
        return redirect(f"{api.base_url}/openapi?{kept}", 302)
    headers, status, content = pygeoapi_api.openapi_(api, _request(api))
    return _respond(headers, status, content)
