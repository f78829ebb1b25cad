"""Fuzzing a live ades server with schemathesis, from the server's own OpenAPI document (GET /openapi).

Shared by tests/e2e/test_fuzz.py (a bounded run in CI) and benchmarks/fuzz.py (a longer one). Each operation gets
`examples` generated cases (fewer when its input space is smaller); every response goes through the checks, and a
failing check is recorded, not raised, so one run reports every kind of failure instead of stopping at the first.

Random path parameters would only ever meet 404s (no process or job is called `xJ7…`), so part of the time a
parameter is replaced by a name that exists (`Pools`): then the request reaches the handler's real work. Execute
bodies likewise sometimes get the process's real inputs, so a few jobs are really submitted and run.
"""

from __future__ import annotations

import contextlib
import json
import multiprocessing
import time
from collections import Counter
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import requests
import schemathesis
from hypothesis import HealthCheck, Phase, given, settings
from hypothesis import seed as hypothesis_seed
from hypothesis import strategies as st
from hypothesis.errors import Unsatisfiable
from schemathesis import DataGenerationMethod
from schemathesis.checks import not_a_server_error
from schemathesis.exceptions import SkipTest
from schemathesis.internal.checks import CheckContext
from schemathesis.models import Case
from schemathesis.specs.openapi.checks import (
    content_type_conformance,
    response_schema_conformance,
    status_code_conformance,
)

from tests.helpers import wait_for

CHECKS = (not_a_server_error, response_schema_conformance, status_code_conformance, content_type_conformance)
KNOWN_SHARE = 0.6
"""How often a path parameter is replaced by a name that exists."""
VALID_INPUTS_SHARE = 0.15
"""How often an execute body gets valid inputs (a real job); kept low: each one runs cwltool."""


@dataclass
class Pools:
    """Names that exist on the server under test, and valid inputs of its processes."""

    processes: list[str] = field(default_factory=list)
    jobs: list[str] = field(default_factory=list)
    outputs: list[str] = field(default_factory=list)
    files: list[str] = field(default_factory=list)
    inputs: dict[str, dict[str, Any]] = field(default_factory=dict)
    """process ref -> a valid OGC `inputs` object"""

    def apply(self, case: Case, data: st.DataObject) -> None:
        params = case.path_parameters or {}
        for name, pool in (("processId", self.processes), ("jobId", self.jobs), ("outputId", self.outputs),
                           ("path", self.files)):
            if name in params and pool and data.draw(st.floats(0, 1)) < KNOWN_SHARE:
                params[name] = data.draw(st.sampled_from(pool))
        ref = params.get("processId")
        body = case.body
        if ref in self.inputs and isinstance(body, dict) and data.draw(st.floats(0, 1)) < VALID_INPUTS_SHARE:
            inputs = self.inputs[ref]
            if case.operation.path.endswith("/jobs"):
                body["inputs"] = [{"id": k, "data": v} for k, v in inputs.items()]
            else:
                body["inputs"] = dict(inputs)


@dataclass
class Failure:
    operation: str
    check: str
    status: int
    message: str
    reproduce: str
    count: int = 1


@dataclass
class FuzzReport:
    cases: int = 0
    per_operation: Counter[str] = field(default_factory=Counter)
    statuses: Counter[str] = field(default_factory=Counter)
    failures: dict[tuple[str, str, int], Failure] = field(default_factory=dict)
    seconds: float = 0.0

    def record(self, operation: str, check: str, response: requests.Response, err: AssertionError,
               case: Case) -> None:
        key = (operation, check, response.status_code)
        if key in self.failures:
            self.failures[key].count += 1
            return
        context = getattr(err, "context", None)
        message = (getattr(context, "title", None) or str(err).strip().splitlines()[0] if str(err).strip() else check)
        detail = getattr(context, "message", None)
        if detail:
            message = f"{message}: {detail}"
        body = response.text[:500]
        self.failures[key] = Failure(operation, check, response.status_code, f"{message}\n{body}",
                                     case.as_curl_command())

    @classmethod
    def merged(cls, parts: list[FuzzReport]) -> FuzzReport:
        report = cls()
        for part in parts:
            report.cases += part.cases
            report.per_operation.update(part.per_operation)
            report.statuses.update(part.statuses)
            for key, failure in part.failures.items():
                if key in report.failures:
                    report.failures[key].count += failure.count
                else:
                    report.failures[key] = failure
        return report

    def as_dict(self) -> dict[str, Any]:
        return {
            "cases": self.cases,
            "seconds": round(self.seconds, 1),
            "per_operation": dict(sorted(self.per_operation.items())),
            "statuses": dict(sorted(self.statuses.items())),
            "failures": [vars(f) for f in self.failures.values()],
        }


EXAMPLES_DIR = Path(__file__).resolve().parents[2] / "cwl" / "examples"
COUNT_LINES = """\
cwlVersion: v1.2
class: CommandLineTool
id: count-lines
baseCommand: [wc, -l]
inputs:
  data: {type: File, inputBinding: {position: 1}}
outputs:
  out: stdout
"""


def prepare(base_url: str, session: requests.Session, inside_file: Path | None = None) -> Pools:
    """Deploy count-lines (a File input) and failing, run a job that succeeds and one that fails: the names the
    fuzzer then reuses. `inside_file`: a file inside the server's input roots, if it has any."""
    for cwl in (COUNT_LINES, (EXAMPLES_DIR / "failing" / "failing.cwl").read_text()):
        deployed = session.post(f"{base_url}/processes", data=cwl, timeout=120,
                                headers={"Content-Type": "application/cwl+yaml"})
        assert deployed.status_code == 201, deployed.text
    jobs = []
    for ref, inputs, ends in (("echo", {"message": "fuzz"}, "successful"), ("failing", {"reason": "x"}, "failed")):
        answer = session.post(f"{base_url}/processes/{ref}/execution", json={"inputs": inputs}, timeout=60,
                              headers={"Prefer": "respond-async"})
        assert answer.status_code == 201, answer.text
        job_id = answer.json()["jobID"]
        wait_for(lambda: session.get(f"{base_url}/jobs/{job_id}", timeout=30).json()["status"] == ends,  # noqa: B023
                 180, f"job {job_id} to be {ends}", interval=0.2)
        jobs.append(job_id)
    valid = {"echo": {"message": "fuzz"}, "echo:1.0.0": {"message": "fuzz"}}
    if inside_file is not None:
        valid["count-lines"] = {"data": {"href": inside_file.as_uri()}}
    return Pools(processes=["echo", "echo:1.0.0", "count-lines", "failing", "failing:1.0.0"], jobs=jobs,
                 outputs=["out"], files=["out.txt", "stdout", "../job.log"], inputs=valid)


def load_document(base_url: str, session: requests.Session) -> dict[str, Any]:
    return session.get(f"{base_url}/openapi", params={"f": "json"}, timeout=30).json()


def _operation_test(operation: Any, name: str, method: DataGenerationMethod, examples: int, pools: Pools,
                    session: requests.Session, report: FuzzReport, ctx: CheckContext) -> Any:
    @settings(max_examples=examples, deadline=None, database=None, derandomize=False, print_blob=False,
              phases=[Phase.explicit, Phase.generate], suppress_health_check=list(HealthCheck))
    @given(case=operation.as_strategy(data_generation_method=method, skip_on_not_negated=False), data=st.data())
    def run(case: Case, data: st.DataObject) -> None:
        pools.apply(case, data)
        response = case.call(session=session, timeout=180)
        report.cases += 1
        report.per_operation[name] += 1
        report.statuses[str(response.status_code)] += 1
        for check in CHECKS:
            try:
                check(ctx, response, case)
            except AssertionError as err:
                report.record(name, check.__name__, response, err, case)

    return run


@dataclass(frozen=True)
class Task:
    """One operation and generation method to fuzz: what a worker process gets."""

    base_url: str
    examples: int
    pools: Pools
    seed: int | None
    document: dict[str, Any]
    operation: str
    method: str


_SCHEMAS: dict[int, Any] = {}


def _schema(document: dict[str, Any], base_url: str) -> Any:
    """schemathesis' view of the document, made once per process and document."""
    key = hash((json.dumps(document, sort_keys=True), base_url))
    if key not in _SCHEMAS:
        _SCHEMAS[key] = schemathesis.from_dict(document, base_url=base_url)
    return _SCHEMAS[key]


def run_task(task: Task, session: requests.Session | None = None) -> FuzzReport:
    """Fuzz one operation with one generation method; the cases sent and what the checks found."""
    if session is None:
        session = requests.Session()
        session.trust_env = False  # 127.0.0.1 only, never through a proxy
    report = FuzzReport()
    ctx = CheckContext(override=None, auth=None, headers=None)
    for result in _schema(task.document, task.base_url).get_all_operations():
        operation = result.ok()
        if f"{operation.method.upper()} {operation.path}" != task.operation:
            continue
        method = DataGenerationMethod(task.method)
        run = _operation_test(operation, task.operation, method, task.examples, task.pools, session, report, ctx)
        if task.seed is not None:
            run = hypothesis_seed(task.seed)(run)
        # nothing to break (Unsatisfiable, SkipTest): e.g. a negative case of an operation without parameters or body
        with contextlib.suppress(Unsatisfiable, SkipTest):
            run()
    return report


def fuzz(base_url: str, examples: int, pools: Pools, *, seed: int | None = None,
         session: requests.Session | None = None, operations: list[str] | None = None,
         methods: tuple[DataGenerationMethod, ...] = (DataGenerationMethod.positive, DataGenerationMethod.negative),
         document: dict[str, Any] | None = None, workers: int = 1) -> FuzzReport:
    """Run up to `examples` cases per operation and generation method: positive (requests the document allows)
    and negative (requests it forbids: each must be refused with a documented 4xx, never a 5xx). All operations,
    or those whose `METHOD /path` is in `operations`. `document`: the OpenAPI document (default: the server's).

    Generating cases is most of the work (hypothesis-jsonschema, in the client): with `workers` > 1, operations
    are fuzzed by that many processes at once. Each operation's cases depend on the seed alone, not on which
    process draws them."""
    session = session or requests.Session()
    session.trust_env = False
    document = document or load_document(base_url, session)
    names = [f"{r.ok().method.upper()} {r.ok().path}" for r in _schema(document, base_url).get_all_operations()]
    # negative cases first: they cost the most, and the pool is best balanced when the long tasks start early
    tasks = [Task(base_url, examples, pools, seed, document, name, method.value)
             for method in sorted(methods, key=lambda m: m is not DataGenerationMethod.negative)
             for name in names if operations is None or name in operations]
    started = time.perf_counter()
    if workers > 1:
        with ProcessPoolExecutor(workers, mp_context=multiprocessing.get_context("spawn")) as pool:
            parts = list(pool.map(run_task, tasks, chunksize=1))
    else:
        parts = [run_task(task, session) for task in tasks]
    report = FuzzReport.merged(parts)
    report.seconds = time.perf_counter() - started
    return report
