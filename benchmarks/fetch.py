"""What the fetcher (ades/fetch.py) costs for one small http input. Writes benchmarks/results/fetch.json.

- the download alone, 1 KiB from an HTTP server on 127.0.0.1: ades.fetch.Fetcher.fetch_to (name resolved and
  checked, connection to the checked address, written into a folder) beside cwltool's own downloader
  (cwltool.utils.downloadHttpFile: requests with an HTTP cache, into /tmp), which fetched http inputs before;
- the check an execute request now makes (Fetcher.check: the name resolved, every address checked);
- a job with that one http input, submit -> successful through `ades serve` (1 worker, 2 job workers, direct
  sink), with the sandbox on and off. Run from an older checkout, the same script measures the job as it was (the
  download parts are skipped where ades.fetch does not exist).

Usage: python benchmarks/fetch.py [--runs 20] [--port 5093] [--out FILE]
Talks only to 127.0.0.1 (the test server is allowed by name: ADES_FETCH_ALLOW=["localhost"]).
"""

from __future__ import annotations

import http.server
import json
import os
import tempfile
import threading
import time
import urllib.error
import urllib.request
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from common import ades_server, ms_summary, write_figures
from common import parser as benchmark_parser

from ades.config import Settings

PAYLOAD = b"x" * 1024
TAKE_FILE = """\
cwlVersion: v1.2
class: CommandLineTool
id: take-file
baseCommand: cat
inputs:
  file: {type: File, inputBinding: {position: 1}}
outputs:
  out: stdout
"""


def _site() -> tuple[http.server.ThreadingHTTPServer, int]:
    class Handler(http.server.BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def do_GET(self) -> None:
            self.send_response(200)
            self.send_header("Content-Length", str(len(PAYLOAD)))
            self.end_headers()
            self.wfile.write(PAYLOAD)

        def log_message(self, *args: Any) -> None:
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    return server, server.server_address[1]


def downloads(url: str, runs: int) -> dict[str, Any] | None:
    try:
        from ades.fetch import Fetcher, FetchPolicy
    except ImportError:
        return None
    from cwltool.utils import downloadHttpFile

    fetcher = Fetcher(FetchPolicy(allow=["localhost"]))
    ours, theirs, checks = [], [], []
    with tempfile.TemporaryDirectory() as folder:
        for i in range(runs + 5):  # interleaved, the first five unmeasured
            t = time.perf_counter()
            fetcher.fetch_to(url, Path(folder) / str(i))
            a = time.perf_counter() - t
            t = time.perf_counter()
            path, _ = downloadHttpFile(url)
            b = time.perf_counter() - t
            os.unlink(path)
            t = time.perf_counter()
            fetcher.check(url)
            c = time.perf_counter() - t
            if i >= 5:
                ours.append(a)
                theirs.append(b)
                checks.append(c)
    return {"fetcher_fetch_to": ms_summary(ours), "cwltool_downloadHttpFile": ms_summary(theirs),
            "fetcher_check_at_submit": ms_summary(checks)}


def _call(url: str, body: bytes | None = None, headers: dict[str, str] | None = None) -> Any:
    request = urllib.request.Request(url, data=body, method="POST" if body is not None else "GET",
                                     headers=headers or {})
    with urllib.request.urlopen(request, timeout=60) as response:
        return json.loads(response.read())


def jobs(port: int, input_url: str, runs: int, sandbox: str) -> dict[str, Any]:
    """Submit -> successful of `runs` jobs whose one input is `input_url`, through a fresh server."""
    samples, failed = [], 0
    with (tempfile.TemporaryDirectory() as data_dir,
          ades_server(port, data_dir, index_prefix="bench-fetch-", sandbox=sandbox, fetch_allow='["localhost"]',
                      anonymous_roles='["deployer"]') as base):
        try:
            _call(f"{base}/processes", TAKE_FILE.encode(), {"Content-Type": "application/cwl+yaml"})
        except urllib.error.HTTPError as err:
            if err.code != 409:  # deployed by an earlier run under the same prefix
                raise
        body = json.dumps({"inputs": {"file": {"href": input_url}}}).encode()
        headers = {"Content-Type": "application/json", "Prefer": "respond-async"}
        for i in range(runs + 3):  # the first three warm the workers up
            t = time.perf_counter()
            job_id = _call(f"{base}/processes/take-file/execution", body, headers)["jobID"]
            while (status := _call(f"{base}/jobs/{job_id}")["status"]) not in ("successful", "failed"):
                time.sleep(0.005)
            if i >= 3:
                samples.append(time.perf_counter() - t)
                failed += status != "successful"
    return {**ms_summary(samples), "failed": failed}


def main(argv: list[str] | None = None) -> int:
    parser = benchmark_parser(__doc__, "fetch")
    parser.add_argument("--runs", type=int, default=20, help="samples per measurement (default 20)")
    parser.add_argument("--port", type=int, default=5093, help="port of the benchmark server")
    parser.add_argument("--sandboxes", default="none,bwrap", help="ADES_SANDBOX values to run the jobs with")
    args = parser.parse_args(argv)

    settings = Settings()
    if not settings.uses_external_es:
        from ades.services import elasticsearch

        elasticsearch.ensure_running(settings)
    site, site_port = _site()
    url = f"http://localhost:{site_port}/small.txt"
    try:
        figures: dict[str, Any] = {"started": datetime.now(UTC).isoformat(), "runs": args.runs,
                                   "input_bytes": len(PAYLOAD), "downloads": downloads(url, args.runs)}
        for sandbox in args.sandboxes.split(","):
            figures[f"job_submit_to_successful_sandbox_{sandbox}"] = jobs(args.port, url, args.runs, sandbox)
    finally:
        site.shutdown()
    write_figures(args.out, figures)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
