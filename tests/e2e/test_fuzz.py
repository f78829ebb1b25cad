"""schemathesis against the server's own OpenAPI document (GET /openapi), on a live server with the real
Elasticsearch and cwltool: every operation, positive cases (what the document allows) and negative ones (what it
forbids). Checks: no 5xx, every response conforms to the document's schema, status code and content type.

Bounded for CI: ADES_FUZZ_EXAMPLES per operation and generation method, a fixed seed (a failure reproduces). The
count of cases actually sent is asserted, so the test cannot pass by generating nothing. The run itself
(tests/e2e/fuzz_run.py) starts in the background as soon as the tests are collected, at the lowest CPU priority, and
this test waits for its report (tests/conftest.py). benchmarks/fuzz.py runs the same harness longer, against
`ades serve` under gunicorn.

Cost control: the server has one job worker; execute cases name an existing process only part of the time and carry
valid inputs in a small share of those (tests/e2e/fuzz_harness.py), so a run submits a few dozen real jobs (echo, wc)
and refuses the rest at validation.
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from ades.config import Settings
from tests.conftest import FuzzRun
from tests.e2e.conftest import LiveServer, serve_app
from tests.e2e.fuzz_harness import Pools, fuzz, load_document, prepare
from tests.e2e.fuzz_run import SEED as FUZZ_SEED

pytestmark = pytest.mark.integration

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
def test_fuzz_every_route(fuzz_run: FuzzRun, tmp_path: Path) -> None:
    summary = fuzz_run.wait(timeout=1700)
    (tmp_path / "fuzz.json").write_text(json.dumps(summary, indent=2))
    print(json.dumps({k: v for k, v in summary.items() if k != "failures"}, indent=2))

    assert set(summary["per_operation"]) == set(summary["operations"]), (
        set(summary["operations"]) ^ set(summary["per_operation"]))
    assert summary["cases"] >= MIN_CASES, summary["per_operation"]
    assert not summary["failures"], "\n\n".join(
        f"{f['operation']} [{f['check']}] {f['status']} x{f['count']}: {f['message']}\n{f['reproduce']}"
        for f in summary["failures"])
    assert summary["still_serves"]  # the server took all that and still works


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
