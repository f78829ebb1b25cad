"""schemathesis against the server's own OpenAPI document (GET /openapi), on a live server with the real
Elasticsearch and cwltool: every operation, positive cases (what the document allows) and negative ones (what it
forbids). Checks: no 5xx, every response conforms to the document's schema, status code and content type.

Bounded for CI: FUZZ_EXAMPLES per operation and generation method, a fixed seed (a failure reproduces). The count of
cases actually sent is asserted, so the test cannot pass by generating nothing. Generating the cases is most of the
work, so two processes draw them (one per core) while this one serves. benchmarks/fuzz.py runs the same harness
longer, against `ades serve` under gunicorn.

Cost control: the server has one job worker; execute cases name an existing process only part of the time and carry
valid inputs in a small share of those (tests/e2e/fuzz_harness.py), so a run submits a few dozen real jobs (echo, wc)
and refuses the rest at validation.
"""

from __future__ import annotations

import json
import os
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from ades.config import Settings
from tests.e2e.conftest import LiveServer, serve_app
from tests.e2e.fuzz_harness import FuzzReport, Pools, fuzz, load_document, prepare

pytestmark = pytest.mark.integration

FUZZ_EXAMPLES = int(os.environ.get("ADES_FUZZ_EXAMPLES", "70"))
FUZZ_SEED = int(os.environ.get("ADES_FUZZ_SEED", "2026"))
FUZZ_WORKERS = 2
MIN_CASES = 2000


@pytest.fixture(scope="module")
def fuzzed(e2e_settings: Settings, tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[LiveServer, Pools]]:
    roots = tmp_path_factory.mktemp("fuzz-inputs")
    inside = roots / "lines.txt"
    inside.write_text("one\ntwo\n")
    settings = e2e_settings.model_copy(update={"index_prefix": f"e2e-fuzz-{uuid.uuid4().hex[:8]}-",
                                               "data_dir": tmp_path_factory.mktemp("fuzz") / "data"})
    for server in serve_app(settings, file_roots=[roots], workers=1):
        yield server, prepare(server.url, server.http, inside)


@pytest.mark.timeout(1800)
def test_fuzz_every_route(fuzzed: tuple[LiveServer, Pools], tmp_path: Path) -> None:
    server, pools = fuzzed
    report: FuzzReport = fuzz(server.url, FUZZ_EXAMPLES, pools, seed=FUZZ_SEED, session=server.http,
                              workers=FUZZ_WORKERS)
    summary = report.as_dict()
    (tmp_path / "fuzz.json").write_text(json.dumps(summary, indent=2))
    print(json.dumps({k: v for k, v in summary.items() if k != "failures"}, indent=2))

    operations = {f"{method.upper()} {path}" for path, item in server.get("/openapi").json()["paths"].items()
                  for method in item if method != "parameters"}
    assert set(report.per_operation) == operations, operations ^ set(report.per_operation)
    assert report.cases >= MIN_CASES, report.per_operation
    assert not report.failures, "\n\n".join(f"{f.operation} [{f.check}] {f.status} x{f.count}: {f.message}\n"
                                             f"{f.reproduce}" for f in report.failures.values())
    # the server took all that and still works
    assert server.get("/processes/echo").status_code == 200


def test_the_checks_bite(fuzzed: tuple[LiveServer, Pools]) -> None:
    """Against a document that asks for a field the server never sends, and forbids a status it does send, the same
    harness reports failures: a clean run above means the server conforms, not that nothing was checked."""
    server, pools = fuzzed
    document = load_document(server.url, server.http)
    document["components"]["schemas"]["processList"]["required"].append("nextPage")
    del document["paths"]["/processes/{processId}"]["get"]["responses"]["404"]
    report = fuzz(server.url, 10, pools, seed=FUZZ_SEED, session=server.http, document=document,
                  operations=["GET /processes", "GET /processes/{processId}"])
    found = {(f.operation, f.check) for f in report.failures.values()}
    assert ("GET /processes", "response_schema_conformance") in found, found
    assert ("GET /processes/{processId}", "status_code_conformance") in found, found
