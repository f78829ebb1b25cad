"""`GET /metrics` against live servers: job counters, the run-time histogram and queued jobs after real cwltool runs
(read from Elasticsearch aggregations), consumer lag from a real SQS queue on moto, and a scrape that survives its
sources being down. Parsed with prometheus_client's own parser."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from typing import Any

import pytest
from prometheus_client import generate_latest
from prometheus_client.parser import text_string_to_metric_families

from ades.config import Settings
from ades.events.aws import client as aws_client
from ades.metrics import DURATION_BUCKETS, make_registry
from ades.store import JobStore, make_client
from tests.e2e.conftest import LiveServer, serve_app
from tests.helpers import EXAMPLES

pytestmark = pytest.mark.integration

ASYNC = {"Prefer": "respond-async"}
Samples = dict[tuple[str, frozenset[tuple[str, str]]], float]


def parse(text: str) -> Samples:
    return {(s.name, frozenset(s.labels.items())): s.value
            for family in text_string_to_metric_families(text) for s in family.samples}


def scrape(server: LiveServer) -> Samples:
    response = server.get("/metrics")
    assert response.status_code == 200
    assert response.headers["Content-Type"].startswith("text/plain; version=0.0.4")
    return parse(response.text)


def value(samples: Samples, name: str, **labels: str) -> float | None:
    return samples.get((name, frozenset(labels.items())))


def run(server: LiveServer, process: str, inputs: dict[str, Any]) -> dict[str, Any]:
    response = server.post(f"/processes/{process}/execution", headers=ASYNC, json={"inputs": inputs})
    assert response.status_code == 201, response.text
    return server.wait_status(response.json()["jobID"])


def test_counters_histogram_and_queue_after_jobs_ran(live: LiveServer) -> None:
    before = scrape(live)
    assert value(before, "ades_store_up") == 1
    assert value(before, "ades_jobs_submitted_total", process="echo") is None  # a fresh store: nothing yet
    for status in ("successful", "failed", "dismissed"):
        assert value(before, "ades_jobs_finished_total", status=status) == 0
    assert value(before, "ades_jobs_queued") == 0
    assert value(before, "ades_job_duration_seconds_count") == 0
    # the status pipeline is not this server's (direct sink): no queue metrics, not even a failing probe
    assert not any(name.startswith(("ades_consumer_lag", "ades_queue_up")) for name, _ in before)

    failing = (EXAMPLES / "failing" / "failing.cwl").read_text()
    assert live.post("/processes", data=failing, headers={"Content-Type": "application/cwl"}).status_code == 201
    assert run(live, "echo", {"message": "counted"})["status"] == "successful"
    assert run(live, "echo", {"message": "counted again"})["status"] == "successful"
    assert run(live, "failing", {})["status"] == "failed"
    live.context.job_store.refresh()  # aggregations read what search sees (ES refreshes every second)

    after = scrape(live)
    assert value(after, "ades_jobs_submitted_total", process="echo") == 2
    assert value(after, "ades_jobs_submitted_total", process="failing") == 1
    assert value(after, "ades_jobs_finished_total", status="successful") == 2
    assert value(after, "ades_jobs_finished_total", status="failed") == 1
    assert value(after, "ades_jobs_finished_total", status="dismissed") == 0
    assert value(after, "ades_jobs", status="successful") == 2
    assert value(after, "ades_jobs", status="running") == 0
    assert value(after, "ades_jobs_queued") == 0

    assert value(after, "ades_job_duration_seconds_count") == 3
    assert value(after, "ades_job_duration_seconds_bucket", le="+Inf") == 3
    buckets = [value(after, "ades_job_duration_seconds_bucket", le=str(b)) for b in DURATION_BUCKETS]
    assert all(b is not None for b in buckets) and buckets == sorted(buckets)  # cumulative
    assert buckets[-1] == 3  # every job ran under a day
    durations = [live.context.job_store.get(j["jobID"])["duration"]
                 for j in live.get("/jobs", params={"limit": 10}).json()["jobs"]]
    assert value(after, "ades_job_duration_seconds_sum") == pytest.approx(sum(durations))
    assert buckets[0] == sum(1 for d in durations if d <= DURATION_BUCKETS[0])


def test_queued_jobs_are_counted(live: LiveServer) -> None:
    response = live.post("/processes/echo/execution", headers=ASYNC,
                         json={"inputs": {"message": "later"}, "delay": 600})
    assert response.status_code == 201, response.text
    job_id = response.json()["jobID"]
    live.context.job_store.refresh()
    try:
        samples = scrape(live)
        assert value(samples, "ades_jobs_queued") == 1
        assert value(samples, "ades_jobs", status="accepted") == 1
    finally:
        assert live.delete(f"/jobs/{job_id}").status_code == 200


@pytest.fixture
def queued_server(aws_settings: Settings) -> Iterator[LiveServer]:
    """A server whose jobs report through its own SNS topic and SQS queue on moto (nobody consumes it here)."""
    yield from serve_app(aws_settings)


def test_consumer_lag_from_the_status_queue(queued_server: LiveServer) -> None:
    settings = queued_server.settings
    sqs = aws_client("sqs", settings)
    empty = scrape(queued_server)
    assert value(empty, "ades_queue_up") == 1
    assert value(empty, "ades_consumer_lag_messages", queue="status", state="visible") == 0
    assert value(empty, "ades_consumer_lag_messages", queue="dead-letter", state="visible") == 0
    for i in range(3):
        sqs.send_message(QueueUrl=settings.sqs_queue_url, MessageBody=f'{{"n": {i}}}')
    sqs.send_message(QueueUrl=settings.sqs_dlq_url, MessageBody="{}")
    taken = sqs.receive_message(QueueUrl=settings.sqs_queue_url, MaxNumberOfMessages=1, VisibilityTimeout=300)
    assert len(taken["Messages"]) == 1

    lag = scrape(queued_server)
    assert value(lag, "ades_consumer_lag_messages", queue="status", state="visible") == 2
    assert value(lag, "ades_consumer_lag_messages", queue="status", state="in_flight") == 1
    assert value(lag, "ades_consumer_lag_messages", queue="status", state="delayed") == 0
    assert value(lag, "ades_consumer_lag_messages", queue="dead-letter", state="visible") == 1
    assert value(lag, "ades_store_up") == 1


def test_a_scrape_survives_its_sources_being_down(settings: Settings, moto_url: str, job_store: JobStore) -> None:
    # a queue that does not exist on the (real) moto server, and a store on a port nothing listens on
    gone = settings.model_copy(update={"aws_endpoint_url": moto_url, "event_sink": "sns", "sqs_dlq_url": None,
                                       "sqs_queue_url": f"{moto_url}/123456789012/no-such-{uuid.uuid4().hex[:8]}"})
    samples = parse(generate_latest(make_registry(gone, job_store)).decode())
    assert value(samples, "ades_queue_up") == 0 and value(samples, "ades_store_up") == 1
    assert value(samples, "ades_jobs_queued") == 0

    dead = Settings(es_url="http://127.0.0.1:9", es_max_retries=0, es_request_timeout=2, event_sink="direct")
    samples = parse(generate_latest(make_registry(dead, JobStore(make_client(dead), dead))).decode())
    assert value(samples, "ades_store_up") == 0
    assert value(samples, "ades_jobs_queued") is None  # no made-up zeros while the store is down
