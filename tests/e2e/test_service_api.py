"""Landing page, conformance, OpenAPI (validated), OGC exception bodies for Flask's own errors, ES down -> 503,
and `serve()` under gunicorn."""

from __future__ import annotations

import subprocess
import sys
import uuid

import pytest
import requests
from openapi_spec_validator import validate

from ades.app import close_app, create_app
from ades.config import Settings
from tests.conftest import free_port
from tests.e2e.conftest import LiveServer, drop_test_indexes
from tests.helpers import assert_problem, wait_for

pytestmark = pytest.mark.integration


def test_openapi_validates_and_documents_every_route(live: LiveServer) -> None:
    response = live.get("/openapi")
    assert response.status_code == 200
    document = response.json()
    validate(document)
    documented = {path.replace("{", "<").replace("}", ">") for path in document["paths"]}
    # the pages' stylesheets and images are files, not API (ades.api.assets)
    rules = {r.rule for r in live.app.url_map.iter_rules()
             if r.endpoint != "static" and not r.endpoint.startswith("ades_assets.")}
    normalized = {rule.replace("<ref>", "<processId>").replace("<job_id>", "<jobId>").replace("<output>", "<outputId>")
                  .replace("<path:relative>", "<path>") for rule in rules}
    assert normalized <= documented, normalized - documented
    assert live.get("/openapi", params={"f": "html"}).headers["Content-Type"].startswith("text/html")


def test_landing_page_and_conformance(live: LiveServer) -> None:
    landing = live.get("/", params={"f": "json"}).json()
    rels = {link["rel"] for link in landing["links"]}
    assert "service-desc" in rels and "http://www.opengis.net/def/rel/ogc/1.0/processes" in rels
    assert "data" not in rels
    assert live.get("/", params={"f": "html"}).headers["Content-Type"].startswith("text/html")
    classes = live.get("/conformance").json()["conformsTo"]
    assert "http://www.opengis.net/spec/ogcapi-processes-2/1.0/conf/deploy-replace-undeploy" in classes
    assert "http://www.opengis.net/spec/ogcapi-processes-1/1.0/conf/job-list" in classes
    assert live.get("/conformance", params={"f": "html"}).status_code == 200


def test_flask_errors_are_ogc_exceptions(live: LiveServer) -> None:
    assert_problem(live.get("/no/such/route"), 404, "not-found")
    method = live.http.patch(live.url + "/processes", timeout=10)
    assert_problem(method, 405, "method-not-allowed")
    huge = live.post("/processes", data=b"x" * (11 * 1024 * 1024), headers={"Content-Type": "application/cwl"})
    assert_problem(huge, 413, "payload-too-large")
    no_type = live.post("/processes/echo/execution", data="{}", headers={"Content-Type": "text/plain"})
    assert_problem(no_type, 415, "unsupported-media-type")
    array = live.post("/processes/echo/execution", json=[1, 2])
    assert_problem(array, 400, "invalid-parameter")


def test_store_down_is_503(tmp_path) -> None:
    settings = Settings(es_url=f"http://127.0.0.1:{free_port()}", es_max_retries=0, es_request_timeout=2,
                        index_prefix="down-", data_dir=tmp_path, event_sink="direct")
    app = create_app(settings)
    try:
        client = app.test_client()
        for path in ("/processes", "/jobs", "/jobs/x"):
            response = client.get(path)
            assert response.status_code == 503
            body = response.get_json()
            assert body["type"].endswith("/service-unavailable") and body["status"] == 503
        assert client.get("/conformance").status_code == 200  # needs no store
    finally:
        close_app(app)


def test_serve_under_gunicorn(e2e_settings: Settings) -> None:
    port = free_port()
    settings = e2e_settings.model_copy(update={"index_prefix": f"e2e-gunicorn-{uuid.uuid4().hex[:8]}-"})
    code = (
        "import sys; from ades.config import Settings; from ades.serve import serve; "
        f"serve(Settings.model_validate_json(sys.argv[1]), '127.0.0.1', {port}, workers=2, job_workers=1)"
    )
    proc = subprocess.Popen([sys.executable, "-c", code, settings.model_dump_json()],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        def up() -> requests.Response | None:
            assert proc.poll() is None, "gunicorn exited"
            try:
                return requests.get(f"http://127.0.0.1:{port}/processes/echo", timeout=60)
            except requests.ConnectionError:
                return None

        response = wait_for(up, 60, "gunicorn to come up", interval=0.2)
        assert response.status_code == 200 and response.json()["mutable"] is False
        submitted = requests.post(f"http://127.0.0.1:{port}/processes/echo/execution",
                                  json={"inputs": {"message": "g"}}, headers={"Prefer": "respond-async"}, timeout=30)
        assert submitted.status_code == 201
        assert submitted.json()["links"][0]["href"].startswith(f"http://127.0.0.1:{port}/jobs/")
        job = submitted.headers["Location"]
        wait_for(lambda: requests.get(job, timeout=5).json()["status"] in ("successful", "failed"), 120,
                 "the job to end", interval=0.2)
        assert requests.get(job, timeout=5).json()["status"] == "successful"
    finally:
        proc.terminate()
        proc.wait(30)
        drop_test_indexes(settings)
