"""The consumer handler with crafted SQS events, against the real Elasticsearch."""

from __future__ import annotations

import importlib
import json
import sys
from pathlib import Path

import pytest

from ades.events.consumer import process_event
from ades.models import Job, StatusUpdate
from ades.status import Status
from ades.store import JobStore
from tests.helpers import store_jobs

pytestmark = pytest.mark.integration
ROOT = Path(__file__).resolve().parents[2]


def record(message_id: str, body: str) -> dict:
    return {"messageId": message_id, "receiptHandle": f"rh-{message_id}", "body": body, "eventSource": "aws:sqs"}


def envelope(inner: str) -> str:
    return json.dumps({"Type": "Notification", "MessageId": "sns-1", "TopicArn": "arn:aws:sns:x:1:t",
                       "Message": inner, "Timestamp": "2026-01-01T00:00:00.000Z"})


def test_mixed_batch_reports_exactly_what_could_not_be_applied(job_store: JobStore):
    job = Job(process_id="echo")
    store_jobs(job_store, [job])
    raw = StatusUpdate(job_id=job.id, status=Status.RUNNING, progress=10).model_dump_json()
    wrapped = envelope(StatusUpdate(job_id=job.id, status=Status.RUNNING, progress=30, message="m").model_dump_json())
    event = {
        "Records": [
            record("ok-raw", raw),
            record("ok-sns", wrapped),
            record("bad-json", "{not json"),
            record("bad-status", json.dumps({"job_id": job.id, "status": "exploded"})),
            record("bad-envelope", json.dumps({"Type": "Notification", "Message": "<xml/>"})),
            record("unknown-job", StatusUpdate(job_id="nobody", status=Status.RUNNING).model_dump_json()),
            record("dup-raw", raw),
        ]
    }
    result = process_event(event, job_store)
    failed = [f["itemIdentifier"] for f in result["batchItemFailures"]]
    assert failed == ["bad-json", "bad-status", "bad-envelope", "unknown-job"]
    doc = job_store.get(job.id)
    assert doc["status"] == "running"
    assert doc["progress"] == 30
    assert doc["message"] == "m"
    assert len(doc["applied-events"]) == 2


def test_empty_and_strange_events_do_not_crash(job_store: JobStore):
    assert process_event({"Records": []}, job_store) == {"batchItemFailures": []}
    assert process_event({"Records": [{"nothing": 1}]}, job_store) == {"batchItemFailures": []}
    assert process_event({"Records": "nope"}, job_store) == {"batchItemFailures": []}


def test_store_down_fails_every_valid_record(job_store: JobStore, settings):
    from ades.store import make_client

    dead = settings.model_copy(update={"es_url": "http://127.0.0.1:9", "es_max_retries": 0, "es_request_timeout": 2})
    down = JobStore(make_client(dead), dead)
    body = StatusUpdate(job_id="j1", status=Status.RUNNING).model_dump_json()
    result = process_event({"Records": [record("a", body), record("b", "{")]}, down)
    assert sorted(f["itemIdentifier"] for f in result["batchItemFailures"]) == ["a", "b"]


def test_lambda_module_is_configured_from_the_environment(job_store: JobStore, settings, monkeypatch):
    monkeypatch.setenv("ADES_ES_URL", settings.elasticsearch_url)
    monkeypatch.setenv("ADES_INDEX_PREFIX", settings.index_prefix)
    monkeypatch.syspath_prepend(str(ROOT / "lambdas"))
    sys.modules.pop("status_consumer.handler", None)
    module = importlib.import_module("status_consumer.handler")
    job = Job(process_id="echo")
    store_jobs(job_store, [job])
    body = StatusUpdate(job_id=job.id, status=Status.SUCCEEDED, outputs={"out": "http://x/o"}).model_dump_json()
    assert module.handler({"Records": [record("m1", body)]}, None) == {"batchItemFailures": []}
    doc = job_store.get(job.id)
    assert doc["status"] == "succeeded" and doc["outputs"] == {"out": "http://x/o"}
