"""A job through the server whose status reaches Elasticsearch only through SNS → SQS → consumer (real moto)."""

from __future__ import annotations

import json
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from ades.config import Settings
from ades.cwl.loader import pack_file
from ades.events.pipeline import with_pipeline
from ades.events.poller import Consumer
from tests.e2e.conftest import LiveServer, serve_app
from tests.helpers import wait_for

pytestmark = pytest.mark.integration
EXAMPLES = Path(__file__).resolve().parents[2] / "cwl" / "examples"


@pytest.fixture(scope="module")
def sns_live(es_url: str, moto_url: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[LiveServer]:
    prefix = f"e2e-sns-{uuid.uuid4().hex[:8]}-"
    settings = with_pipeline(
        Settings(es_url=es_url, index_prefix=prefix, data_dir=tmp_path_factory.mktemp("e2e-sns") / "data",
                 event_sink="sns", aws_endpoint_url=moto_url, status_topic_name=f"{prefix}status",
                 status_queue_name=f"{prefix}status", sns_topic_arn=None, sqs_queue_url=None, sqs_dlq_url=None),
        need_queue=True,
    )
    yield from serve_app(settings)


def _doc(live: LiveServer, job_id: str) -> dict:
    return live.context.job_store.get(job_id)


def test_status_arrives_only_through_the_queue(sns_live: LiveServer):
    live = sns_live
    # The example `run:`s ../../update-job.cwl; packed (as `cwltool --pack` would, reading inside the folder its
    # author names) it deploys on its own.
    packed = pack_file(EXAMPLES / "progress" / "progress.cwl", roots=[EXAMPLES.parent])
    res = live.post("/processes", data=json.dumps(packed), headers={"Content-Type": "application/cwl+json"})
    assert res.status_code == 201, res.text
    described = live.get(res.headers["Location"].replace(live.url, "")).json()
    body = {"mode": "async", "response": "document", "labels": ["via-sqs"],
            "inputs": [{"id": name, "data": "hello"} for name, d in described["inputs"].items()
                       if d.get("minOccurs", 1) > 0]}
    res = live.post(f"/processes/{described['id']}:{described['version']}/jobs", json=body)
    assert res.status_code == 201, res.text
    job_id = res.json()["jobID"]

    # No consumer yet: the workflow runs to its end (every event published), yet the store still says submitted.
    assert live.context.jobs.wait(job_id, 120) == "succeeded"
    assert _doc(live, job_id)["status"] == "submitted"

    consumer = Consumer(live.settings, wait_seconds=1)

    def applied() -> bool:
        consumer.poll_once()
        return _doc(live, job_id)["status"] == "succeeded"

    wait_for(applied, 60, "the consumer to apply the events", interval=0)
    doc = _doc(live, job_id)
    # start (running), the author's step (progress 50 + message) and finish (succeeded): three events.
    assert len(doc["applied-events"]) == 3
    assert doc["progress"] == 100
    assert doc["start-time"] and doc["stop-time"] and doc["outputs"]
    assert doc["labels"] == ["via-sqs"]
    info = live.get(f"/jobs/{job_id}").json()
    assert info["status"] == "successful"
