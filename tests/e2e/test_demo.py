"""The README's first command ends in `ades demo`: with safe defaults it must still deploy its workflow (anonymous is
a deployer only on its own loopback server) and run a labelled job through SNS -> SQS -> the consumer, sandboxed.
Run here against the tests' Elasticsearch and moto, with a topic, a queue and indexes of its own."""

from __future__ import annotations

import os
import subprocess
import sys
import uuid
from pathlib import Path

import pytest

from tests.conftest import free_port

pytestmark = pytest.mark.integration


def test_the_demo_deploys_and_runs_a_labelled_job(es_url: str, moto_url: str, tmp_path: Path) -> None:
    prefix = f"demo-{uuid.uuid4().hex[:8]}-"
    env = {**{k: v for k, v in os.environ.items() if not k.startswith("ADES_")},
           "ADES_ES_URL": es_url, "ADES_AWS_ENDPOINT_URL": moto_url, "ADES_INDEX_PREFIX": prefix,
           "ADES_DATA_DIR": str(tmp_path / "data"), "ADES_STATUS_TOPIC_NAME": f"{prefix}status",
           "ADES_STATUS_QUEUE_NAME": f"{prefix}status"}
    ades = [sys.executable, "-m", "ades.cli"]
    try:
        demo = subprocess.run([*ades, "demo", "--port", str(free_port())], env=env, cwd=tmp_path,
                              capture_output=True, text=True, timeout=300)
    finally:
        subprocess.run([*ades, "-q", "services", "stop", "consumer"], env=env, cwd=tmp_path, capture_output=True,
                       timeout=60)
    assert demo.returncode == 0, demo.stdout + demo.stderr
    assert "deployed: two-step:1.2.0 (new)" in demo.stdout
    assert "status: successful (100%)" in demo.stdout
    assert "through SNS -> SQS -> consumer" in demo.stdout
