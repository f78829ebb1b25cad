"""The Lambda zip from lambdas/build.py: what it carries, and that its handler works from the zip alone.

The handler runs in a fresh `python3.11 -I -S` (no environment variables of Python's, no user or global
site-packages, no project venv) whose sys.path is the standard library plus the unpacked zip, against the real
local Elasticsearch, with settings passed through the environment exactly as the Lambda gets them.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

from ades.models import Job, StatusUpdate
from ades.status import Status
from ades.store import JobStore
from tests.helpers import store_jobs

pytestmark = pytest.mark.integration
ROOT = Path(__file__).resolve().parents[2]

# Things the consumer must never drag into the Lambda: the server, the runner, AWS SDKs (the handler does not call
# AWS; the runtime has boto3 anyway).
FORBIDDEN = {"boto3", "botocore", "s3transfer", "cwltool", "flask", "pygeoapi", "dask", "distributed", "gunicorn",
             "moto", "yaml", "requests", "rioxarray", "numpy"}

RUN_HANDLER = """
import json, os, sys
unpacked = sys.argv[1]
stdlib = os.path.dirname(os.__file__)
sys.path.insert(0, unpacked)
from status_consumer.handler import handler
result = handler(json.load(sys.stdin), None)
builtin = set(sys.builtin_module_names) | {"__main__"}
loaded = sorted({name.split(".")[0] for name in sys.modules} - builtin)
foreign = [n for n in loaded if not (getattr(sys.modules[n], "__file__", None) or "").startswith((unpacked, stdlib))]
print(json.dumps({"result": result, "path": sys.path, "loaded": loaded, "foreign": foreign}))
"""


def runtime_python() -> str:
    """A bare CPython 3.11 (the Lambda runtime's version; the zip's compiled wheels are cp311)."""
    base = getattr(sys, "_base_executable", None)
    if sys.version_info[:2] == (3, 11) and base and Path(base).exists():
        return base
    found = shutil.which("python3.11")
    if not found:
        pytest.skip("no python3.11 interpreter to play the Lambda runtime")
    return found


def expected_ades_entries() -> set[str]:
    ades = ROOT / "ades"
    names = {f"ades/{m}" for m in (
        "__init__.py", "config.py", "config_batches.py", "config_callbacks.py", "config_node.py", "models.py",
        "status.py", "merge.py")}
    for package in ("store", "events"):
        for path in (ades / package).rglob("*"):
            if path.is_file() and path.suffix in {".py", ".json"} and "__pycache__" not in path.parts:
                names.add(path.relative_to(ROOT).as_posix())
    return names


def record(message_id: str, body: str) -> dict:
    return {"messageId": message_id, "receiptHandle": f"rh-{message_id}", "body": body, "eventSource": "aws:sqs",
            "eventSourceARN": "arn:aws:sqs:us-east-1:123456789012:ades-job-status"}


def test_zip_carries_the_handler_the_ades_parts_and_their_wheels_only(lambda_zip: Path):
    names = zipfile.ZipFile(lambda_zip).namelist()
    assert sorted(n for n in names if n.startswith("status_consumer/")) == [
        "status_consumer/__init__.py", "status_consumer/handler.py"]
    assert {n for n in names if n.startswith("ades/")} == expected_ades_entries()
    top = {n.split("/")[0].removesuffix(".py") for n in names}
    assert {"elasticsearch", "elastic_transport", "pydantic", "pydantic_core", "pydantic_settings"} <= top
    assert not top & FORBIDDEN, f"heavy packages in the zip: {sorted(top & FORBIDDEN)}"
    assert not [n for n in names if "__pycache__" in n or n.endswith(".pyc")]
    manifest = lambda_zip.with_suffix(".txt").read_text().splitlines()
    dists = {line.split("==")[0].lower().replace("_", "-") for line in manifest if not line.startswith("#")}
    assert {"elasticsearch", "pydantic", "pydantic-settings"} <= dists
    assert not dists & FORBIDDEN
    # Every top-level entry is ours or belongs to a listed distribution (its dist-info is in the zip).
    infos = {n.split("/")[0] for n in names if n.split("/")[0].endswith(".dist-info")}
    assert len(infos) == len(dists)


def test_rebuilding_gives_the_same_bytes(lambda_zip: Path, tmp_path: Path):
    # Cached wheels and fixed zip timestamps: a rebuild is quick and byte-identical (stable S3 object hash).
    again = subprocess.run([sys.executable, str(ROOT / "lambdas" / "build.py"), "--out", str(tmp_path)],
                           capture_output=True, text=True, timeout=600, cwd=ROOT)
    assert again.returncode == 0, again.stderr
    assert "using cached dependencies" in again.stderr
    assert (tmp_path / "status-consumer.zip").read_bytes() == lambda_zip.read_bytes()


def test_handler_from_the_zip_alone_applies_a_batch_to_elasticsearch(lambda_zip: Path, job_store: JobStore,
                                                                       settings, tmp_path: Path):
    unpacked = tmp_path / "task"
    zipfile.ZipFile(lambda_zip).extractall(unpacked)
    job = Job(process_id="echo", labels=["deploy-test"])
    store_jobs(job_store, [job])
    running = StatusUpdate(job_id=job.id, status=Status.RUNNING, progress=40, message="half way")
    done = StatusUpdate(job_id=job.id, status=Status.SUCCEEDED, outputs={"out": "http://127.0.0.1:5000/o.txt"})
    sns_envelope = json.dumps({"Type": "Notification", "MessageId": "sns-1", "Message": done.model_dump_json(),
                               "TopicArn": "arn:aws:sns:us-east-1:123456789012:ades-job-status"})
    event = {"Records": [
        record("m-running", running.model_dump_json()),
        record("m-succeeded", sns_envelope),
        record("m-garbage", "{not json"),
        record("m-unknown-job", StatusUpdate(job_id="no-such-job", status=Status.RUNNING).model_dump_json()),
    ]}
    # Only what the Lambda service would set (plus PATH/HOME); the working directory has no .ades/services.env.
    env = {"ADES_ES_URL": settings.elasticsearch_url, "ADES_INDEX_PREFIX": settings.index_prefix,
           "PATH": os.environ.get("PATH", "/usr/bin:/bin"), "HOME": str(tmp_path)}
    run = subprocess.run([runtime_python(), "-I", "-S", "-c", RUN_HANDLER, str(unpacked)], input=json.dumps(event),
                         capture_output=True, text=True, env=env, cwd=tmp_path, timeout=300)
    assert run.returncode == 0, run.stderr
    out = json.loads(run.stdout.strip().splitlines()[-1])

    assert out["result"] == {"batchItemFailures": [{"itemIdentifier": "m-garbage"},
                                                   {"itemIdentifier": "m-unknown-job"}]}
    assert out["foreign"] == [], f"modules loaded from neither the zip nor the standard library: {out['foreign']}"
    assert not set(out["loaded"]) & FORBIDDEN
    assert {"elasticsearch", "pydantic", "pydantic_settings", "ades", "status_consumer"} <= set(out["loaded"])
    assert not [p for p in out["path"] if "site-packages" in p or ".venv" in p]

    doc = job_store.get(job.id)
    assert doc["status"] == "succeeded"
    assert doc["outputs"] == {"out": "http://127.0.0.1:5000/o.txt"}
    assert doc["progress"] == 100
    assert doc["message"] == "half way"
    assert doc["start-time"] is not None and doc["stop-time"] is not None
    assert sorted(doc["applied-events"]) == sorted([running.event_id, done.event_id])
