"""`GET /metrics` for Prometheus: what the job store and the status queue say at scrape time.

Counts come from Elasticsearch aggregations, not from in-process counters: under gunicorn each worker process
would count only what it saw, and every counter would reset on restart, while the `jobs` index holds what every
server and worker did. One search per scrape (size 0, a few aggregations) gives:

- `ades_jobs_submitted_total{process}`: every job ever created, by process id;
- `ades_jobs_finished_total{status}`: jobs that ended, by OGC status (successful, failed, dismissed);
- `ades_jobs{status}`: jobs in each status now; `ades_jobs_queued`: jobs waiting to start (`accepted`);
- `ades_job_duration_seconds`: a histogram of the run time (`duration`) of the jobs that ended.

When status events go through SQS (`ADES_EVENT_SINK` resolves to sns and a queue URL is known), the consumer's
backlog is `ades_consumer_lag_messages{queue="status"|"dead-letter", state="visible"|"in_flight"|"delayed"}`.
`ades_store_up` / `ades_queue_up` say whether those sources answered: a scrape never fails because one is down.

With auth on, a scrape needs a bearer token like every other route (counts of every user's jobs by process are not
for anyone who reaches the port), or ADES_METRICS_TOKEN, which opens /metrics only (ades.api.auth).

Counters here can go down if someone deletes job documents; Prometheus treats that as a counter reset.
Each app has its own CollectorRegistry (never the process-global one): tests build many apps in one process.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable, Iterator
from typing import Any

from botocore.config import Config
from flask import Blueprint, Flask, Response, current_app, request
from prometheus_client import CollectorRegistry
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, HistogramMetricFamily, Metric
from prometheus_client.exposition import choose_encoder
from prometheus_client.registry import Collector

from ades.config import Settings
from ades.status import Status
from ades.store import JobStore

log = logging.getLogger(__name__)

bp = Blueprint("ades_metrics", __name__)

DURATION_BUCKETS = (1.0, 5.0, 10.0, 30.0, 60.0, 300.0, 900.0, 1800.0, 3600.0, 7200.0, 21600.0, 86400.0)
"""Upper bounds (seconds) of the run-time histogram: from an echo job to the default one-day job timeout."""
MAX_PROCESSES = 1000
"""Process ids reported by ades_jobs_submitted_total (the most used first): a bound on label cardinality."""
STORE_TIMEOUT = 5.0
QUEUE_TIMEOUT = 5.0
"""Seconds a scrape waits on Elasticsearch / on each SQS call: answers take milliseconds when healthy, but a loaded
local moto can take seconds; a scrape slower than Prometheus' timeout just counts as a failed scrape."""
_QUEUE_ATTRIBUTES = {
    "ApproximateNumberOfMessages": "visible",
    "ApproximateNumberOfMessagesNotVisible": "in_flight",
    "ApproximateNumberOfMessagesDelayed": "delayed",
}


def _le(bound: float) -> str:
    return "+Inf" if bound == float("inf") else repr(bound)


def job_aggregations() -> dict[str, Any]:
    """The aggregations of one scrape (a pure function; `filters` with `lte`, so buckets match Prometheus' `le`,
    where a `range` aggregation's `to` would exclude the bound)."""
    ended = {"bool": {"filter": [{"terms": {"status": [s.value for s in Status if s.terminal]}},
                                 {"exists": {"field": "duration"}}]}}
    return {
        "by_status": {"terms": {"field": "status", "size": len(Status)}},
        "by_process": {"terms": {"field": "process-id", "size": MAX_PROCESSES}},
        "ended": {
            "filter": ended,
            "aggs": {
                "buckets": {"filters": {"filters": {
                    _le(b): {"range": {"duration": {"lte": b}}} for b in DURATION_BUCKETS}}},
                "total": {"sum": {"field": "duration"}},
            },
        },
    }


def job_metrics(response: dict[str, Any]) -> list[Metric]:
    """Metric families of one aggregation response (a pure function of it)."""
    aggs = response["aggregations"]
    by_status = {Status(b["key"]): int(b["doc_count"]) for b in aggs["by_status"]["buckets"]
                 if b["key"] in Status._value2member_map_}
    submitted = CounterMetricFamily("ades_jobs_submitted", "Jobs created, by process id (from the jobs index).",
                                    labels=["process"])
    for bucket in aggs["by_process"]["buckets"]:
        submitted.add_metric([str(bucket["key"])], int(bucket["doc_count"]))
    finished = CounterMetricFamily("ades_jobs_finished", "Jobs that ended, by OGC status (from the jobs index).",
                                   labels=["status"])
    current = GaugeMetricFamily("ades_jobs", "Jobs in each OGC status now.", labels=["status"])
    for status in Status:
        if status.terminal:
            finished.add_metric([status.ogc], by_status.get(status, 0))
        current.add_metric([status.ogc], by_status.get(status, 0))
    queued = GaugeMetricFamily("ades_jobs_queued", "Jobs accepted and not started yet (stored status submitted).",
                               value=by_status.get(Status.SUBMITTED, 0))
    ended = aggs["ended"]
    counts = ended["buckets"]["buckets"]
    buckets = [(_le(b), int(counts[_le(b)]["doc_count"])) for b in DURATION_BUCKETS]
    buckets.append(("+Inf", int(ended["doc_count"])))
    duration = HistogramMetricFamily("ades_job_duration_seconds", "Run time of jobs that ended (start to stop).",
                                     buckets=buckets, sum_value=float(ended["total"]["value"] or 0.0))
    return [submitted, finished, current, queued, duration]


class JobsCollector(Collector):
    """Queries the job store at each scrape."""

    def __init__(self, store: JobStore) -> None:
        self.store = store

    def collect(self) -> Iterator[Metric]:
        up = GaugeMetricFamily("ades_store_up", "Whether the job store (Elasticsearch) answered this scrape.")
        try:
            client = self.store.client.options(request_timeout=STORE_TIMEOUT, max_retries=0)
            response = client.search(index=self.store.index, size=0, track_total_hits=False,
                                     aggs=job_aggregations())
        except Exception as err:  # any failure: report the store down, keep the scrape (and the queue metrics)
            log.warning("metrics: the job store did not answer: %s", err)
            up.add_metric([], 0)
            yield up
            return
        up.add_metric([], 1)
        yield up
        yield from job_metrics(dict(response))

    def describe(self) -> Iterable[Metric]:
        # nothing up front: describing would run a query when the collector is registered
        return []


class QueueCollector(Collector):
    """The status queue's backlog (consumer lag) and its dead-letter queue, from SQS queue attributes."""

    def __init__(self, settings: Settings) -> None:
        self.queues = {"status": settings.sqs_queue_url}
        if settings.sqs_dlq_url:
            self.queues["dead-letter"] = settings.sqs_dlq_url
        self.settings = settings
        self._sqs: Any = None

    def _client(self) -> Any:
        if self._sqs is None:
            import boto3

            from ades.events.aws import LOCAL_CREDENTIALS

            # short and unretried, unlike ades.events.aws.client: a scrape must not wait on a slow queue
            config = Config(region_name=self.settings.aws_region, connect_timeout=QUEUE_TIMEOUT,
                            read_timeout=QUEUE_TIMEOUT, retries={"max_attempts": 1, "mode": "standard"})
            kwargs: dict[str, Any] = {"config": config}
            if self.settings.aws_endpoint_url:
                kwargs.update(endpoint_url=self.settings.aws_endpoint_url, **LOCAL_CREDENTIALS)
            self._sqs = boto3.session.Session().client("sqs", **kwargs)
        return self._sqs

    def collect(self) -> Iterator[Metric]:
        lag = GaugeMetricFamily("ades_consumer_lag_messages",
                                "Status events waiting in SQS: visible (not received yet), in flight (received, not "
                                "deleted yet), delayed; queue status or dead-letter.", labels=["queue", "state"])
        up = GaugeMetricFamily("ades_queue_up", "Whether SQS answered this scrape.")
        try:
            for name, url in self.queues.items():
                attributes = self._client().get_queue_attributes(
                    QueueUrl=url, AttributeNames=list(_QUEUE_ATTRIBUTES))["Attributes"]
                for attribute, state in _QUEUE_ATTRIBUTES.items():
                    lag.add_metric([name, state], float(attributes.get(attribute, 0)))
        except Exception as err:  # report the queue down rather than failing the scrape
            log.warning("metrics: SQS did not answer: %s", err)
            up.add_metric([], 0)
            yield up
            return
        up.add_metric([], 1)
        yield up
        yield lag

    def describe(self) -> Iterable[Metric]:
        return []


def make_registry(settings: Settings, store: JobStore) -> CollectorRegistry:
    registry = CollectorRegistry(auto_describe=False)
    registry.register(JobsCollector(store))
    # the queue matters only when this server's jobs report through it; a direct sink never fills it
    if settings.uses_sns and settings.sqs_queue_url:
        registry.register(QueueCollector(settings))
    return registry


@bp.get("/metrics")
def metrics() -> Response:
    registry: CollectorRegistry = current_app.extensions["ades_metrics"]
    encoder, content_type = choose_encoder(request.headers.get("Accept", ""))
    return Response(encoder(registry), headers={"Content-Type": content_type})


def install(app: Flask, settings: Settings, store: JobStore) -> CollectorRegistry:
    registry = make_registry(settings, store)
    app.extensions["ades_metrics"] = registry
    app.register_blueprint(bp)
    return registry
