"""What the HTML pages load, served by the server itself, so that an air-gapped deployment shows them whole.

pygeoapi's page frame (`_base.html`) links its logo and stylesheet under `/static/` (pygeoapi's own package data,
served as the app's static folder) and Bootstrap's stylesheet from a public CDN. Bootstrap comes from the
Bootstrap-Flask package instead (maintained, pinned by pip like any dependency), under `/assets/bootstrap/`, and
every HTML answer's link to the CDN copy is pointed there. The frame's html5shiv script is for Internet Explorer 8
and older, inside a conditional comment no browser of today reads: it is dropped, so no page names an outside
script at all.

The OpenAPI page (`/openapi?f=html`) is Swagger UI, whose script, stylesheet and icons pygeoapi loads from a CDN's
`swagger-ui-dist`: they come from the swagger-ui-bundle package (the one Connexion maintains), under
`/assets/swagger-ui/`. pygeoapi's other viewer, ReDoc (`ui=redoc`), has no maintained Python package: that request
gets the Swagger UI page too, rather than a page that stays blank without the internet.

pygeoapi renders its frame from a copy of its configuration that it caches per locale for the whole process
(`l10n.translate_struct`), so in a process holding several apps (tests, an embedding) every frame would name the
first app's URL: a page's links to that URL are pointed at its own app's.
"""

from __future__ import annotations

import re
from pathlib import Path

import flask_bootstrap
import pygeoapi
import swagger_ui_bundle
from flask import Blueprint, Flask, Response, current_app, request, send_from_directory
from pygeoapi import l10n
from pygeoapi.api import APIRequest

PYGEOAPI_STATIC = Path(pygeoapi.__file__).resolve().parent / "static"
BOOTSTRAP = Path(flask_bootstrap.__file__).resolve().parent / "static" / "bootstrap5"
BOOTSTRAP_CSS = re.compile(r'href="[^"]*/bootstrap@[0-9.]+/dist/css/bootstrap(\.min)?\.css"')
SWAGGER_UI = Path(str(swagger_ui_bundle.swagger_ui_path))
SWAGGER_DIST = re.compile(r'(href|src)="https?://[^"]*/swagger-ui-dist(@[^/"]*)?/')
OLD_IE = re.compile(r"<!--\[if lt IE 9\]>.*?<!\[endif\]-->", re.DOTALL)
PAGES = ("ades_core.", "ades_jobs.list_jobs")
"""The endpoints that render pygeoapi's frame. Only their answers are rewritten: a job's own HTML output, by
reference or by value, is given as the job wrote it."""

bp = Blueprint("ades_assets", __name__)


@bp.get("/assets/bootstrap/<path:name>")
def bootstrap(name: str) -> Response:
    return send_from_directory(BOOTSTRAP, name, max_age=86_400)


@bp.get("/assets/swagger-ui/<path:name>")
def swagger_ui(name: str) -> Response:
    return send_from_directory(SWAGGER_UI, name, max_age=86_400)


def local_assets(html: str, base_url: str, framed_url: str | None = None) -> str:
    """The page with Bootstrap's stylesheet and Swagger UI taken from this server and the old-IE script gone;
    `framed_url`: the app URL pygeoapi's frame was rendered with, if not `base_url`."""
    if framed_url and framed_url != base_url:
        html = html.replace(f'"{framed_url}/', f'"{base_url}/').replace(f'"{framed_url}"', f'"{base_url}"')
    html = BOOTSTRAP_CSS.sub(f'href="{base_url}/assets/bootstrap/css/bootstrap.min.css"', html)
    html = SWAGGER_DIST.sub(rf'\1="{base_url}/assets/swagger-ui/', html)
    return OLD_IE.sub("", html)


def install(app: Flask, base_url: str) -> None:
    app.register_blueprint(bp)

    @app.after_request
    def _local_assets(response: Response) -> Response:
        page = (request.endpoint or "").startswith(PAGES)
        if page and response.mimetype == "text/html" and not response.is_streamed and response.status_code < 300:
            response.set_data(local_assets(response.get_data(as_text=True), base_url, _framed_url()))
        return response


def _framed_url() -> str | None:
    """The app URL in the configuration pygeoapi renders this request's frame with (see the module's text)."""
    api = current_app.extensions.get("pygeoapi")
    if api is None:
        return None
    locale = APIRequest.from_flask(request, api.locales).locale
    return l10n.translate_struct(api.tpl_config, locale, True)["server"]["url"]
