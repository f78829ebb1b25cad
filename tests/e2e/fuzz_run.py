"""The CI fuzz run as a process of its own: a live server (in this process, with real cwltool workers and the real
Elasticsearch), the harness of fuzz_harness.py against it, the report written as JSON.

tests/conftest.py starts it, at the lowest CPU priority, as soon as the tests are collected, so that it draws its
cases on the cores the other tests leave idle; tests/e2e/test_fuzz.py then waits for it and asserts on the report.

    python -m tests.e2e.fuzz_run --out report.json --es-url URL [--examples 70] [--seed 2026] [--workers 2]
"""

from __future__ import annotations

import argparse
import json
import os
import tempfile
import uuid
from pathlib import Path

from ades.config import Settings
from tests.e2e.conftest import serve_app
from tests.e2e.fuzz_harness import fuzz, prepare

EXAMPLES = int(os.environ.get("ADES_FUZZ_EXAMPLES", "70"))
SEED = int(os.environ.get("ADES_FUZZ_SEED", "2026"))
WORKERS = 2
"""Processes drawing cases: generating them is most of the work."""


def run(out: Path, es_url: str, examples: int, seed: int, workers: int) -> None:
    work = Path(tempfile.mkdtemp(prefix="ades-fuzz-"))
    roots = work / "inputs"
    roots.mkdir()
    inside = roots / "lines.txt"
    inside.write_text("one\ntwo\n")
    settings = Settings(es_url=es_url, index_prefix=f"e2e-fuzz-{uuid.uuid4().hex[:8]}-", data_dir=work / "data",
                        event_sink="direct")
    for server in serve_app(settings, file_roots=[roots], workers=1):
        pools = prepare(server.url, server.http, inside)
        report = fuzz(server.url, examples, pools, seed=seed, session=server.http, workers=workers)
        paths = server.get("/openapi").json()["paths"]
        summary = report.as_dict() | {
            "examples": examples,
            "seed": seed,
            "operations": sorted(f"{method.upper()} {path}" for path, item in paths.items()
                                 for method in item if method != "parameters"),
            # the server took all that and still works
            "still_serves": server.get("/processes/echo").status_code == 200,
        }
        out.write_text(json.dumps(summary, indent=2))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, required=True, help="where the report goes (JSON)")
    parser.add_argument("--es-url", required=True, help="the Elasticsearch the server stores in")
    parser.add_argument("--examples", type=int, default=EXAMPLES, help="cases per operation and generation method")
    parser.add_argument("--seed", type=int, default=SEED)
    parser.add_argument("--workers", type=int, default=WORKERS)
    parser.add_argument("--nice", type=int, default=0, help="lower this process's CPU priority by this much first")
    args = parser.parse_args(argv)
    if args.nice:
        os.nice(args.nice)  # inherited by the case-drawing processes and the job workers
    run(args.out, args.es_url, args.examples, args.seed, args.workers)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
