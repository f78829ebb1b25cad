"""Status events through the real moto server: update-job → SNS → SQS → consumer → Elasticsearch."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest

from ades.config import Settings
from ades.events.aws import client
from ades.events.pipeline import ensure_pipeline
from ades.events.poller import Consumer
from ades.events.sinks import SinkConfig, SnsSink
from ades.models import Job, StatusUpdate
from ades.status import Status
from ades.store import JobStore
from tests.helpers import store_jobs, wait_for

pytestmark = pytest.mark.integration
ROOT = Path(__file__).resolve().parents[2]
BIN = Path(sys.executable).parent


def drain(consumer: Consumer, until, timeout: float = 20.0) -> None:
    """Let the consumer poll until `until()` holds (each poll is a long poll of the queue: no sleep needed)."""
    def polled() -> bool:
        consumer.poll_once()
        return until()

    wait_for(polled, timeout, "the consumer to get there", interval=0)


def test_pipeline_is_created_idempotently_with_redrive(aws_settings: Settings):
    first = ensure_pipeline(aws_settings)
    second = ensure_pipeline(aws_settings)
    assert first == second
    sqs = client("sqs", aws_settings)
    attrs = sqs.get_queue_attributes(QueueUrl=first.queue_url, AttributeNames=["RedrivePolicy"])["Attributes"]
    redrive = json.loads(attrs["RedrivePolicy"])
    assert redrive["deadLetterTargetArn"] == first.dlq_arn
    assert int(redrive["maxReceiveCount"]) == aws_settings.max_receive_count
    subs = client("sns", aws_settings).list_subscriptions_by_topic(TopicArn=first.topic_arn)["Subscriptions"]
    assert [(s["Protocol"], s["Endpoint"]) for s in subs] == [("sqs", first.queue_arn)]


def test_update_job_entry_point_publishes_with_attributes(aws_settings: Settings, job_store: JobStore):
    job = Job(process_id="echo")
    store_jobs(job_store, [job])
    sink = SinkConfig.from_settings(aws_settings).model_dump_json()
    out = subprocess.run(
        [str(BIN / "ades-update-job"), "--job-id", job.id, "--status", "running", "--progress", "40",
         "--message", "from the step", "--sink", sink],
        capture_output=True, text=True, check=True,
    )
    event_id = json.loads(out.stdout)["published"]
    sqs = client("sqs", aws_settings)
    msgs = sqs.receive_message(QueueUrl=aws_settings.sqs_queue_url, MessageAttributeNames=["All"],
                               WaitTimeSeconds=5)["Messages"]
    assert len(msgs) == 1
    attrs = msgs[0]["MessageAttributes"]
    assert attrs["job_id"]["StringValue"] == job.id
    assert attrs["status"]["StringValue"] == "running"
    body = json.loads(msgs[0]["Body"])
    assert body["event_id"] == event_id and body["progress"] == 40
    # Not deleted: the consumer gets it once the visibility timeout lapses; make that now.
    sqs.change_message_visibility(QueueUrl=aws_settings.sqs_queue_url, ReceiptHandle=msgs[0]["ReceiptHandle"],
                                  VisibilityTimeout=0)
    consumer = Consumer(aws_settings, wait_seconds=1)
    drain(consumer, lambda: job_store.get(job.id)["status"] == "running")
    doc = job_store.get(job.id)
    assert doc["progress"] == 40 and doc["message"] == "from the step"


def test_sns_envelope_delivery_is_read_too(aws_settings: Settings, job_store: JobStore):
    enveloped = aws_settings.model_copy(update={"raw_message_delivery": False})
    ensure_pipeline(enveloped)
    job = Job(process_id="echo")
    store_jobs(job_store, [job])
    SnsSink(enveloped).publish(StatusUpdate(job_id=job.id, status=Status.FAILED, message="it broke"))
    consumer = Consumer(enveloped, wait_seconds=1)
    drain(consumer, lambda: job_store.get(job.id)["status"] == "failed")
    assert job_store.get(job.id)["message"] == "it broke"


def test_malformed_messages_end_in_the_dead_letter_queue(aws_settings: Settings, job_store: JobStore):
    settings = aws_settings.model_copy(update={"max_receive_count": 2})
    ensure_pipeline(settings)
    sns = client("sns", settings)
    sns.publish(TopicArn=settings.sns_topic_arn, Message="this is not a status update")
    job = Job(process_id="echo")
    store_jobs(job_store, [job])
    SnsSink(settings).publish(StatusUpdate(job_id=job.id, status=Status.RUNNING))
    consumer = Consumer(settings, wait_seconds=1, retry_delay=0)
    sqs = client("sqs", settings)

    def in_dlq() -> int:
        attrs = sqs.get_queue_attributes(QueueUrl=settings.sqs_dlq_url,
                                         AttributeNames=["ApproximateNumberOfMessages"])["Attributes"]
        return int(attrs["ApproximateNumberOfMessages"])

    try:
        drain(consumer, lambda: in_dlq() == 1, timeout=30)
    except AssertionError:
        main = sqs.get_queue_attributes(QueueUrl=settings.sqs_queue_url, AttributeNames=["All"])["Attributes"]
        raise AssertionError(f"DLQ has {in_dlq()}; queue: {main}") from None
    dead = sqs.receive_message(QueueUrl=settings.sqs_dlq_url)["Messages"]
    assert dead[0]["Body"] == "this is not a status update"
    assert job_store.get(job.id)["status"] == "running"


def test_cwltool_runs_update_job_cwl_into_elasticsearch(aws_settings: Settings, job_store: JobStore, tmp_path):
    job = Job(process_id="echo")
    store_jobs(job_store, [job])
    sink = SinkConfig.from_settings(aws_settings).model_dump_json()
    env = {**os.environ, "PATH": f"{BIN}:{os.environ['PATH']}"}
    subprocess.run(
        [str(BIN / "cwltool"), "--quiet", "--no-container", "--outdir", str(tmp_path / "out"),
         str(ROOT / "cwl" / "update-job.cwl"), "--job_id", job.id, "--status", "running", "--progress", "50",
         "--message", "half way", "--sink", sink],
        check=True, env=env, capture_output=True, timeout=120,
    )
    consumer = Consumer(aws_settings, wait_seconds=1)
    drain(consumer, lambda: job_store.get(job.id)["progress"] == 50)
    assert job_store.get(job.id)["message"] == "half way"


def test_consumer_command_stops_cleanly_on_sigterm(aws_settings: Settings, job_store: JobStore):
    env = {
        **os.environ,
        "ADES_ES_URL": aws_settings.elasticsearch_url,
        "ADES_INDEX_PREFIX": aws_settings.index_prefix,
        "ADES_AWS_ENDPOINT_URL": aws_settings.aws_endpoint_url,
        "ADES_SQS_QUEUE_URL": aws_settings.sqs_queue_url,
        "ADES_SNS_TOPIC_ARN": aws_settings.sns_topic_arn,
    }
    proc = subprocess.Popen([sys.executable, "-m", "ades.cli", "consumer"], env=env, cwd=ROOT / "tests",
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    try:
        job = Job(process_id="echo")
        store_jobs(job_store, [job])
        SnsSink(aws_settings).publish(StatusUpdate(job_id=job.id, status=Status.SUCCEEDED))
        wait_for(lambda: job_store.get(job.id)["status"] == "succeeded", 20, "the consumer to apply the update", 0.2)
    finally:
        proc.send_signal(signal.SIGTERM)
        output, _ = proc.communicate(timeout=30)
    assert proc.returncode == 0, output
    assert "consumer stopped" in output
