"""A long schemathesis run: the harness of tests/e2e/test_fuzz.py (every operation of GET /openapi, positive and
negative cases; checks: no 5xx, response schema, status code, content type), many more cases, against `ades serve`
under gunicorn (2 workers, 8 threads, 1 job worker) with the real Elasticsearch. Writes benchmarks/results/fuzz.json:
cases, cases per operation, response statuses, failures (each with a curl command that reproduces it), the seed.

Usage: python benchmarks/fuzz.py [--examples 300] [--seed N] [--port 5095]
Talks only to 127.0.0.1.
"""

from __future__ import annotations

import os
import random
import shutil
import subprocess
import sys
import tempfile
from datetime import UTC, datetime
from pathlib import Path

import requests
from common import parser as benchmark_parser
from common import wait_until_up, write_figures

from ades.config import Settings

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # the harness lives with the tests
from tests.e2e.fuzz_harness import fuzz, prepare

PREFIX = "bench-fuzz-"


def main(argv: list[str] | None = None) -> int:
    parser = benchmark_parser(__doc__, "fuzz")
    parser.add_argument("--examples", type=int, default=300,
                        help="cases per operation and generation method (default 300; CI runs 70)")
    parser.add_argument("--seed", type=int, default=None, help="hypothesis seed (default: a random one, reported)")
    parser.add_argument("--port", type=int, default=5095, help="port of the ades server")
    args = parser.parse_args(argv)
    seed = args.seed if args.seed is not None else random.randrange(2**32)

    settings = Settings()
    if not settings.uses_external_es:
        from ades.services import elasticsearch

        elasticsearch.ensure_running(settings)
    work = Path(tempfile.mkdtemp(prefix="ades-bench-fuzz-"))
    base = f"http://127.0.0.1:{args.port}"
    # the fuzzer deploys packages: on this loopback server without auth, anonymous must be a deployer
    env = os.environ | {"ADES_EVENT_SINK": "direct", "ADES_INDEX_PREFIX": PREFIX, "ADES_PUBLIC_URL": base,
                        "ADES_DATA_DIR": str(work / "ades"), "ADES_ANONYMOUS_ROLES": '["deployer"]'}
    server = subprocess.Popen([sys.executable, "-m", "ades.cli", "-q", "serve", "--port", str(args.port),
                               "--workers", "2", "--threads", "8", "--job-workers", "1", "--no-access-log"],
                              env=env, stdout=open(work / "ades.log", "w"), stderr=subprocess.STDOUT)  # noqa: SIM115
    try:
        wait_until_up(f"{base}/processes", server)
        session = requests.Session()
        session.trust_env = False
        pools = prepare(base, session)
        print(f"fuzzing {base}: {args.examples} cases per operation and method, seed {seed} ...", file=sys.stderr)
        report = fuzz(base, args.examples, pools, seed=seed, session=session)
    finally:
        server.terminate()
        server.wait(timeout=60)
        _drop_indexes()
        shutil.rmtree(work, ignore_errors=True)
    figures = {
        "started": datetime.now(UTC).isoformat(),
        "cpus": os.cpu_count(),
        "server": "ades serve under gunicorn: 2 workers x 8 threads, 1 job worker each",
        "examples_per_operation_and_method": args.examples,
        "seed": seed,
        **report.as_dict(),
        "server_errors": sum(n for status, n in report.statuses.items() if status.startswith("5")),
    }
    write_figures(args.out, figures)
    return 1 if report.failures else 0


def _drop_indexes() -> None:
    from ades.store import make_client
    from ades.store.setup import drop_indexes

    settings = Settings(index_prefix=PREFIX)
    client = make_client(settings)
    drop_indexes(client, settings)
    client.close()


if __name__ == "__main__":
    raise SystemExit(main())
