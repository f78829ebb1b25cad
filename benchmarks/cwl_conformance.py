"""CWL v1.2 conformance through an ades server, beside bare cwltool. Writes benchmarks/results/cwl_conformance.json.

Runs the conformance tests of a checkout of common-workflow-language/cwl-v1.2 (its conformance_tests.yaml, without
the `docker` tag: jobs here run without containers) with cwltest twice: with `cwltool --no-container`, and with
`ades-cwl-runner` against an `ades serve` this script starts on 127.0.0.1 (its own data dir and index prefix, the
Elasticsearch of the settings; anonymous may deploy; the suite's tests folder is an input root). The JSON holds the
counts both ways and every test whose result differs, with its tags and why it failed (the runner's error, or
cwltest's comparison, in one line).

Usage: python benchmarks/cwl_conformance.py PATH_TO_cwl-v1.2 [-j 2] [--port 5781] [--ids a,b] [--reuse-cwltool]
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import tempfile
import time
import uuid
import xml.etree.ElementTree as ET
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from common import ades_server, require_free
from common import parser as benchmark_parser

BIN = Path(sys.executable).parent
EXCLUDED_TAGS = "docker"
MAX_WHY = 400


def arguments() -> Any:
    p = benchmark_parser(__doc__, "cwl_conformance")
    p.add_argument("suite", type=Path, help="a checkout of the CWL v1.2 conformance tests (cwl-v1.2)")
    p.add_argument("-j", "--jobs", type=int, default=2, help="tests at once (default 2)")
    p.add_argument("--port", type=int, default=5781, help="the ades server's port on 127.0.0.1")
    p.add_argument("--timeout", type=int, default=300, help="seconds one test may take")
    p.add_argument("--ids", default=None, help="only these tests (short names, comma-separated)")
    p.add_argument("--reuse-cwltool", action="store_true",
                   help="take bare cwltool's results from the existing --out file instead of running it again")
    return p.parse_args()


def run_cwltest(suite: Path, tool: str, tool_args: list[str], jobs: int, timeout: int, ids: str | None,
                env: dict[str, str], workdir: Path) -> tuple[dict[str, dict[str, Any]], float]:
    """cwltest with `tool`: test id -> {status, tags, why}, and the seconds it took."""
    report = workdir / f"{Path(tool).name}.xml"
    tests = selected(suite, ids, workdir) if ids else suite / "conformance_tests.yaml"
    command = [str(BIN / "cwltest"), "--test", str(tests), "--tool", tool, "--exclude-tags", EXCLUDED_TAGS,
               "-j", str(jobs), "--timeout", str(timeout), "--junit-xml", str(report), "--", *tool_args]
    started = time.perf_counter()
    # cwltest's exit code is 1 whenever a test fails: the report says which
    done = subprocess.run(command, cwd=workdir, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True,
                          check=False)
    if not report.exists():
        raise SystemExit(f"cwltest wrote no report:\n{done.stderr[-3000:]}")
    return parse_report(report), round(time.perf_counter() - started, 1)


def selected(suite: Path, ids: str, workdir: Path) -> Path:
    """A test file of only the tests `ids` names (cwltest's own `-s` reports its tests under other tests' names)."""
    from cwltest.utils import load_and_validate_tests, shortname

    wanted = set(ids.split(","))
    tests, _ = load_and_validate_tests(str(suite / "conformance_tests.yaml"))
    # "line" is what the loader adds, not a field its schema allows back in
    chosen = [{k: v for k, v in test.items() if k != "line"} for test in tests
              if shortname(str(test.get("id", ""))) in wanted]
    path = workdir / "selected_tests.yaml"
    path.write_text(json.dumps(chosen, default=str))
    return path


def parse_report(report: Path) -> dict[str, dict[str, Any]]:
    results: dict[str, dict[str, Any]] = {}
    for case in ET.parse(report).getroot().iter("testcase"):
        test_id = case.get("file") or case.get("name") or "?"
        tags = [t.strip() for t in (case.get("class") or case.get("classname") or "").split(",") if t.strip()]
        failure = case.find("failure")
        if case.find("skipped") is not None:
            status, why = "unsupported", ""
        elif failure is not None:
            status = "failed"
            why = one_line((case.findtext("system-err") or ""), failure.get("message") or failure.text or "")
        else:
            status, why = "passed", ""
        results[test_id] = {"status": status, "tags": tags, "why": why}
    return results


CLUE = re.compile(r"error|exception|denied|no such|not found|can't|cannot|invalid|missing|expected", re.IGNORECASE)
NOISE = re.compile(r"permanentFail|Final process status|^ades-cwl-runner:|Exception on step", re.IGNORECASE)


def one_line(stderr: str, message: str) -> str:
    """Why a test failed, in one line: the runner's own error and the first line of the job's log that says what
    went wrong (with the line after it when it ends in a colon), else the comparison cwltest made."""
    lines = [line.strip() for line in stderr.splitlines() if line.strip()]
    said = next((line for line in lines if line.startswith("ades-cwl-runner:")), "")
    if said:
        log = lines[lines.index(said) + 1:]
        found = next((i for i, line in enumerate(log) if CLUE.search(line) and not NOISE.search(line)), None)
        clue = ""
        if found is not None:
            clue = log[found] + (f" {log[found + 1]}" if log[found].endswith(":") and found + 1 < len(log) else "")
        text = said.removeprefix("ades-cwl-runner: ") + (f" | {clue}" if clue else "")
    else:
        # cwltest nests "expected ... got ... caused by: ..."; the innermost cause says what differed
        causes = " ".join(message.split()).split("caused by: ")
        text = (f"{causes[-1]} (in: {causes[0]})" if len(causes) > 1 else causes[0]) or (lines[-1] if lines else "")
    return text if len(text) <= MAX_WHY else text[: MAX_WHY - 3] + "..."


def counts(results: dict[str, dict[str, Any]]) -> dict[str, int]:
    statuses = [r["status"] for r in results.values()]
    return {"total": len(statuses), "passed": statuses.count("passed"), "failed": statuses.count("failed"),
            "unsupported": statuses.count("unsupported")}


def run_through_ades(args: Any, workdir: Path) -> tuple[dict[str, dict[str, Any]], float]:
    require_free(args.port)
    prefix = f"cwlconf-{uuid.uuid4().hex[:8]}-"
    roots = [str((args.suite / "tests").resolve()), str(workdir)]
    settings = {"index_prefix": prefix, "anonymous_roles": '["deployer"]', "input_roots": json.dumps(roots)}
    try:
        with ades_server(args.port, str(workdir / "data"), **settings) as url:
            env = os.environ | {"ADES_URL": url, "NO_PROXY": "127.0.0.1"}
            return run_cwltest(args.suite, str(BIN / "ades-cwl-runner"), [], args.jobs, args.timeout, args.ids,
                               env, workdir)
    finally:
        drop(prefix)


def drop(prefix: str) -> None:
    from ades.config import Settings
    from ades.store import make_client
    from ades.store.setup import drop_indexes

    settings = Settings(index_prefix=prefix)
    client = make_client(settings)
    drop_indexes(client, settings)
    client.close()


def main() -> None:
    args = arguments()
    suite = args.suite.resolve()
    args.suite = suite
    revision = subprocess.run(["git", "-C", str(suite), "rev-parse", "--short", "HEAD"], capture_output=True,
                              text=True, check=False).stdout.strip()
    with tempfile.TemporaryDirectory(prefix="cwl-conformance-") as tmp:
        workdir = Path(tmp)
        if args.reuse_cwltool:
            previous = json.loads(args.out.read_text())
            bare, bare_seconds = previous["cwltool"]["tests"], previous["cwltool"]["seconds"]
        else:
            bare, bare_seconds = run_cwltest(suite, str(BIN / "cwltool"), ["--no-container"], args.jobs,
                                             args.timeout, args.ids, dict(os.environ), workdir)
        ades, ades_seconds = run_through_ades(args, workdir)
    differing = [{"id": test_id, "tags": bare[test_id]["tags"], "cwltool": bare[test_id]["status"],
                  "ades": ades.get(test_id, {}).get("status", "not run"),
                  "why": ades.get(test_id, {}).get("why") or bare[test_id]["why"]}
                 for test_id in sorted(bare) if bare[test_id]["status"] != ades.get(test_id, {}).get("status")]
    figures = {
        "measured_at": datetime.now(UTC).isoformat(timespec="seconds"),
        "ades_commit": subprocess.run(["git", "-C", str(Path(__file__).parent), "rev-parse", "--short", "HEAD"],
                                      capture_output=True, text=True, check=False).stdout.strip(),
        "suite": f"cwl-v1.2 {revision}".strip(), "excluded_tags": [EXCLUDED_TAGS], "jobs_at_once": args.jobs,
        "only": args.ids,
        "cwltool": {**counts(bare), "seconds": bare_seconds, "command": "cwltool --no-container", "tests": bare},
        "ades": {**counts(ades), "seconds": ades_seconds, "command": "ades-cwl-runner (ades serve, 1 worker, 2 job "
                 "workers, sandbox on)", "tests": ades},
        "differing": differing,
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(figures, indent=1) + "\n")
    summary = {side: counts(figures[side]["tests"]) for side in ("cwltool", "ades")}
    print(json.dumps({**summary, "differing": [(d["id"], d["why"][:120]) for d in differing]}, indent=1))


if __name__ == "__main__":
    main()
