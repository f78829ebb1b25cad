"""create_app(settings): pygeoapi's API object (landing page, conformance, OpenAPI, HTML) + the ades blueprints.

pygeoapi's own Flask app is not used (it reads a YAML config at import time and serves its own /processes and
/jobs). We generate its config from Settings and register only our blueprints, so every route here is ours.
"""

from __future__ import annotations

import logging
import os
import threading
import time
from pathlib import Path
from typing import Any

from flask import Flask, request
from pygeoapi.api import API

from ades import metrics
from ades.api import assets, auth, core, errors, hosts, job_management, jobs, processes, rerun, views, wpst
from ades.api.context import AdesContext
from ades.api.openapi import build_openapi
from ades.config import Settings
from ades.cwl import PackageError, load_package
from ades.fetch import Fetcher, FetchPolicy
from ades.jobs.folder import DataDir
from ades.jobs.service import JobService
from ades.store import JobStore, ProcessStore, StoreUnavailable, ensure_indexes, make_client

log = logging.getLogger(__name__)

DEFAULT_PUBLIC_URL = "http://127.0.0.1:5000"
BUILTIN_DIR = Path(__file__).resolve().parents[1] / "cwl" / "examples"
BUILTINS = ("echo.cwl",)


TEMPLATES = Path(__file__).parent / "templates"


def pygeoapi_config(public_url: str, title: str = "ades") -> dict[str, Any]:
    """The configuration pygeoapi's API object needs, with no resources (processes and jobs are ours)."""
    return {
        "server": {
            "bind": {"host": "127.0.0.1", "port": 5000},
            "url": public_url.rstrip("/"),
            "mimetype": "application/json; charset=UTF-8",
            "encoding": "utf-8",
            "language": "en-US",
            "languages": ["en-US"],
            "pretty_print": False,
            "limits": {"default_items": 10, "max_items": 1000},
            "map": {"url": "https://tile.openstreetmap.org/{z}/{x}/{y}.png", "attribution": "OpenStreetMap"},
            # the dummy manager: pygeoapi's process routes are not mounted, so it is never asked for anything
            "manager": {"name": "Dummy", "connection": None, "output_dir": None},
        },
        # pygeoapi would otherwise reconfigure the root logger for the whole server
        "logging": {"level": logging.getLevelName(logging.getLogger().getEffectiveLevel())},
        "metadata": {
            "identification": {
                "title": title,
                "description": "OGC API - Processes server (ADES, WPS-T) running CWL application packages",
                "keywords": ["ogc", "processes", "cwl", "ades"],
                "keywords_type": "theme",
                "terms_of_service": "https://www.apache.org/licenses/LICENSE-2.0",
                "url": public_url.rstrip("/") + "/",
            },
            "license": {"name": "Apache-2.0", "url": "https://www.apache.org/licenses/LICENSE-2.0"},
            "provider": {"name": "ades", "url": public_url.rstrip("/") + "/"},
            "contact": {"name": "ades", "position": "", "address": "", "city": "", "stateorprovince": "",
                        "postalcode": "", "country": "", "phone": "", "fax": "", "email": "", "url": "",
                        "hours": "", "instructions": "", "role": "pointOfContact"},
        },
        "resources": {},
    }


def create_app(
    settings: Settings,
    *,
    public_url: str | None = None,
    file_roots: list[Path] | None = None,
    workers: int | None = None,
    sync_timeout: float = 600.0,
    reconcile: bool = True,
    bind_host: str | None = None,
) -> Flask:
    """The WSGI app. `public_url` is how clients reach the server (job links, result hrefs; env ADES_PUBLIC_URL,
    default http://127.0.0.1:5000); `file_roots` more directories file:// inputs may come from (beside
    ADES_INPUT_ROOTS); `workers` the number of warm job workers of this process's executor (default: CPU count);
    `bind_host` the address the server listens on, a name requests may carry in `Host` (ades.api.hosts)."""
    public_url = (public_url or os.environ.get("ADES_PUBLIC_URL") or DEFAULT_PUBLIC_URL).rstrip("/")
    settings = _with_roots(settings, file_roots or [])
    app = Flask("ades", template_folder=str(TEMPLATES), static_folder=str(assets.PYGEOAPI_STATIC))  # ades.api.assets
    # werkzeug refuses a larger body (413) as it reads it, Content-Length or chunked
    app.config["MAX_CONTENT_LENGTH"] = settings.max_body_bytes
    app.json.sort_keys = False  # type: ignore[attr-defined]

    _narrow_data_dir(settings)
    client = make_client(settings)
    job_store = JobStore(client, settings)
    context = AdesContext(
        settings=settings,
        job_store=job_store,
        process_store=ProcessStore(client, settings),
        jobs=JobService(settings, job_store, public_url, workers),
        base_url=public_url,
        file_roots=list(settings.input_roots),
        sync_timeout=sync_timeout,
        fetcher=Fetcher(FetchPolicy.from_settings(settings)),
    )
    app.extensions["ades"] = context
    context.jobs.status_document = lambda doc: views.callback_body(doc, public_url)
    app.extensions["pygeoapi"] = API(pygeoapi_config(public_url), build_openapi(public_url, settings=settings))
    errors.register(app)
    # the first before_request: a request for another host (DNS rebinding) stops here
    hosts.install(app, hosts.HostPolicy.for_server(settings, public_url, bind_host))
    # then one without a valid token, before the store is touched
    auth.install(app, settings)
    for blueprint in (core.bp, processes.bp, wpst.bp, jobs.bp, job_management.bp, rerun.bp):
        app.register_blueprint(blueprint)
    metrics.install(app, settings, context.job_store)
    assets.install(app, public_url)

    ready = {"done": False}

    def prepare() -> None:
        if ready["done"]:
            return
        ensure_indexes(client, settings)
        for name in BUILTINS:
            try:
                package = load_package((BUILTIN_DIR / name).read_text(encoding="utf-8"), "application/cwl")
            except (OSError, PackageError) as err:
                log.error("built-in process %s cannot be deployed: %s", name, err)
                continue
            processes.deploy_builtin(context, package)
        ready["done"] = True

    try:
        prepare()
    except Exception as err:  # ES not up yet: the server still starts, and retries on the next request
        log.warning("could not prepare the store at start (retrying on first request): %s", err)

    if reconcile:
        threading.Thread(target=_reconcile_when_ready, args=(context,), name="ades-reconcile", daemon=True).start()

    @app.before_request
    def _ensure_ready() -> None:
        # the landing page, conformance and OpenAPI do not need the store; everything else does
        if not ready["done"] and request.blueprint != core.bp.name:
            try:
                prepare()
            except Exception as err:
                raise StoreUnavailable(f"could not prepare the indexes: {err}") from err

    return app


def _with_roots(settings: Settings, file_roots: list[Path]) -> Settings:
    """One list of input roots, which the job service also hands to each run (what cwltool may stage from)."""
    if not file_roots:
        return settings
    return settings.model_copy(update={"input_roots": [*settings.input_roots, *map(Path, file_roots)]})


def _narrow_data_dir(settings: Settings) -> None:
    for folder in DataDir(settings.data_dir).make_private():
        log.warning("%s was open to other users: narrowed to %o (it holds users' jobs)", folder,
                    folder.stat().st_mode & 0o777)


def _reconcile_when_ready(context: AdesContext) -> None:
    """Reconcile once the store answers (the server may start before Elasticsearch)."""
    delay = 1.0
    while True:
        try:
            context.jobs.reconcile()
            return
        except Exception as err:  # the store is not there yet: try again, less and less often
            log.info("reconciliation postponed: %s", err)
            time.sleep(delay)
            delay = min(delay * 2, 30.0)


def close_app(app: Flask) -> None:
    """Stop the app's job service (its warm workers and running jobs)."""
    context: AdesContext = app.extensions["ades"]
    context.close()
