"""`ades demo`: the whole path once, on this machine, with nothing but what the project installs.

Starts Elasticsearch, moto (SNS/SQS) and the status consumer; starts the server under gunicorn; deploys the
two-step example workflow (OGC Part 2); runs it through the WPS-T route with labels; waits until the status that
the workflow's update-job steps sent through SNS → SQS → consumer shows it succeeded; prints the job, its output
and where to look. The server is stopped at the end; the services keep running so the jobs can be browsed.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any

from ades.config import Settings

ROOT = Path(__file__).resolve().parent.parent
EXAMPLE = ROOT / "cwl" / "examples" / "two-step" / "two-step.cwl"


def _call(method: str, url: str, body: bytes | None = None, content_type: str = "application/json") -> tuple[int, Any]:
    request = urllib.request.Request(url, data=body, method=method, headers={"Content-Type": content_type})
    try:
        with urllib.request.urlopen(request, timeout=30) as response:
            raw = response.read()
            status = response.status
    except urllib.error.HTTPError as err:
        raw, status = err.read(), err.code
    try:
        return status, json.loads(raw)
    except ValueError:
        return status, raw.decode("utf-8", errors="replace")


def _wait_http(url: str, proc: subprocess.Popen, timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"the server exited with code {proc.returncode}")
        try:
            with urllib.request.urlopen(url, timeout=2):
                return
        except (OSError, urllib.error.URLError):
            time.sleep(0.3)
    raise RuntimeError(f"the server did not answer at {url} within {timeout:.0f} s")


def _demo_roles(settings: Settings) -> dict[str, str]:
    """The demo deploys its workflow without a token: on its loopback server without auth, `anonymous` is a deployer
    (a server of the operator's own, with auth or its own ADES_ANONYMOUS_ROLES, is left as configured)."""
    if settings.auth_enabled or settings.anonymous_roles:
        return {}
    return {"ADES_ANONYMOUS_ROLES": json.dumps(["deployer"])}


def run_demo(settings: Settings, port: int, out=print) -> int:
    from ades.services import service_module

    for name in ("elasticsearch", "moto", "consumer"):
        out(f"{name}: {service_module(name).ensure_running(settings)}")
    settings = Settings()  # re-read: `services start` wrote the moto pipeline to .ades/services.env
    from ades.store import ensure_indexes, make_client

    es = make_client(settings)
    ensure_indexes(es, settings)

    base = f"http://127.0.0.1:{port}"
    log_path = settings.data_dir / "demo-server.log"
    log_path.parent.mkdir(parents=True, exist_ok=True)
    with log_path.open("ab") as log:
        server = subprocess.Popen(
            [sys.executable, "-m", "ades.cli", "serve", "--port", str(port), "--workers", "1"],
            stdout=log, stderr=subprocess.STDOUT, env=os.environ | {"ADES_PUBLIC_URL": base, **_demo_roles(settings)},
        )
    try:
        _wait_http(f"{base}/conformance", server)
        out(f"server: {base} (log {log_path})")
        package = EXAMPLE.read_bytes()
        status, body = _call("POST", f"{base}/processes", package, "application/cwl+yaml")
        if status not in (201, 409):
            out(f"deploy failed: {status} {body}")
            return 1
        process = body.get("id", "two-step") if status == 201 and isinstance(body, dict) else "two-step"
        _, described = _call("GET", f"{base}/processes/{process}")
        version = described.get("version", "1.2.0")
        out(f"deployed: {process}:{version} ({'new' if status == 201 else 'already there'})")
        labels = ["demo", f"run-{time.strftime('%Y%m%d-%H%M%S')}"]
        request = {
            "mode": "async",
            "response": "document",
            "inputs": [{"id": "message", "data": "hello from the ades demo"}],
            "outputs": [{"id": name, "transmissionMode": "reference"} for name in described.get("outputs", {})],
            "labels": labels,
        }
        status, job = _call("POST", f"{base}/processes/{process}:{version}/jobs", json.dumps(request).encode())
        if status != 201:
            out(f"execute failed: {status} {job}")
            return 1
        job_id = job["jobID"]
        out(f"job {job_id} submitted with labels {labels}")
        history: list[str] = []
        deadline = time.monotonic() + 120
        info: dict[str, Any] = {}
        while time.monotonic() < deadline:
            _, info = _call("GET", f"{base}/jobs/{job_id}")
            if not history or history[-1] != info["status"]:
                history.append(info["status"])
                out(f"  status: {info['status']} ({info.get('progress', 0)}%)")
            if info["status"] in ("successful", "failed", "dismissed"):
                break
            time.sleep(0.3)
        _, results = _call("GET", f"{base}/jobs/{job_id}/results")
        doc = es.get(index=settings.jobs_alias, id=job_id)["_source"]
        out("")
        out(f"job:            {job_id}")
        out(f"labels:         {doc['labels']}")
        out(f"status history: {' -> '.join(history)}  (stored in ES as {doc['status']!r})")
        out(f"events applied: {len(doc['applied-events'])} (through SNS -> SQS -> consumer)")
        out(f"results:        {json.dumps(results)}")
        out(f"job page:       {base}/jobs/{job_id}?f=html  (while a server runs: ades serve)")
        out(f"jobs by label:  {base}/jobs?labels=demo&f=html  or  ades jobs list --label demo")
        out(f"Elasticsearch:  curl '{settings.elasticsearch_url}/{settings.jobs_alias}/_search?q=labels:demo&pretty'")
        out(f"Elasticvue:     add the cluster {settings.elasticsearch_url} (README: Browse jobs with Elasticvue)")
        out("Stop the services with: ades services stop")
        return 0 if info.get("status") == "successful" else 1
    finally:
        server.terminate()
        try:
            server.wait(timeout=30)
        except subprocess.TimeoutExpired:
            server.kill()
