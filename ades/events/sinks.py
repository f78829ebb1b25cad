"""Where workers send StatusUpdates. The SNS sink is the normal path; the direct sink writes the store itself,
for embedded use without AWS (the demo without moto, unit-sized setups)."""

from __future__ import annotations

from typing import Any, Protocol

from pydantic import BaseModel, ConfigDict

from ades.config import Settings
from ades.models import StatusUpdate


class SinkConfig(BaseModel):
    """Where a job's events go, as plain JSON: it travels in the RunSpec to job processes and Dask workers, and
    into update-job steps as their `sink` input (see ades-update-job)."""

    model_config = ConfigDict(extra="forbid")

    topic_arn: str | None = None
    region: str | None = None
    endpoint_url: str | None = None
    es_url: str | None = None
    index_prefix: str = ""

    def settings(self) -> Settings:
        values: dict[str, Any] = {"index_prefix": self.index_prefix}
        if self.topic_arn:
            values["event_sink"] = "sns"
            values["sns_topic_arn"] = self.topic_arn
            values["aws_endpoint_url"] = self.endpoint_url
            if self.region:
                values["aws_region"] = self.region
        elif self.es_url:
            values["event_sink"] = "direct"
            values["es_url"] = self.es_url
        else:
            raise ValueError("sink needs either topic_arn or es_url")
        # Only what the step was given counts: a services.env in the step's folder must not redirect events.
        return Settings(_env_file=None, **values)

    @classmethod
    def from_settings(cls, settings: Settings) -> SinkConfig:
        if settings.uses_sns:
            from ades.events.pipeline import with_pipeline

            settings = with_pipeline(settings)
            return cls(topic_arn=settings.sns_topic_arn, region=settings.aws_region,
                       endpoint_url=settings.aws_endpoint_url)
        return cls(es_url=settings.elasticsearch_url, index_prefix=settings.index_prefix)


class EventSink(Protocol):
    def publish(self, update: StatusUpdate) -> None: ...


class PublishFailed(RuntimeError):
    pass


class SnsSink:
    """Publishes each update as JSON to the status topic, with `job_id` and `status` message attributes
    (so subscriptions can filter without parsing bodies)."""

    def __init__(self, settings: Settings, sns_client: Any | None = None) -> None:
        if not settings.sns_topic_arn:
            raise ValueError("SnsSink needs ADES_SNS_TOPIC_ARN")
        from ades.events.aws import client

        self.topic_arn = settings.sns_topic_arn
        self.sns = sns_client or client("sns", settings)

    def publish(self, update: StatusUpdate) -> None:
        try:
            self.sns.publish(
                TopicArn=self.topic_arn,
                Message=update.model_dump_json(exclude_none=True),
                MessageAttributes={
                    "job_id": {"DataType": "String", "StringValue": update.job_id},
                    "status": {"DataType": "String", "StringValue": update.status.value},
                },
            )
        except Exception as err:  # botocore raises many types; the caller needs one
            raise PublishFailed(f"could not publish {update.status} for job {update.job_id}: {err}") from err


class DirectSink:
    """Applies updates to the job store at once, through the same monotonic merge the consumer uses."""

    def __init__(self, settings: Settings) -> None:
        from ades.store import JobStore, make_client

        self.store = JobStore(make_client(settings), settings)

    def publish(self, update: StatusUpdate) -> None:
        result = self.store.apply(update)
        if not result.ok:
            raise PublishFailed(f"could not apply {update.status} for job {update.job_id}: {result.reason}")


def make_sink(settings: Settings) -> EventSink:
    """SNS wherever AWS is configured (a topic, or a local endpoint where the topic is found by name), else direct."""
    if settings.uses_sns:
        from ades.events.pipeline import with_pipeline

        return SnsSink(with_pipeline(settings))
    return DirectSink(settings)
