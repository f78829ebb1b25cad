"""`ades-update-job`: publish one StatusUpdate. This is what cwl/update-job.cwl runs inside a workflow.

The sink comes from `--sink`, a JSON object passed into the step by the workflow (never baked into the CWL):
  {"topic_arn": "...", "region": "...", "endpoint_url": "..."}   publish to SNS (endpoint_url only for moto)
  {"es_url": "...", "index_prefix": ""}                            apply to Elasticsearch directly (embedded use)
"""

from __future__ import annotations

import argparse
import json
import sys
from typing import Any

from pydantic import BaseModel, ConfigDict, ValidationError

from ades.config import Settings
from ades.models import StatusUpdate


class SinkConfig(BaseModel):
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


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="ades-update-job",
        description="Publish one status update (with a fresh event id and timestamp) for an ades job.",
    )
    p.add_argument("--job-id", required=True, help="the job the update is about")
    p.add_argument("--status", required=True, help="running, succeeded, failed or dismissed (OGC words also work)")
    p.add_argument("--progress", type=int, help="percent done, 0-100")
    p.add_argument("--message", help="a short human-readable message")
    p.add_argument("--outputs", help="JSON object: output id -> URL (or list of URLs)")
    p.add_argument("--sink", required=True, help="JSON object saying where to publish (see the module doc)")
    return p


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        sink_config = SinkConfig.model_validate_json(args.sink)
        outputs = json.loads(args.outputs) if args.outputs else None
        update = StatusUpdate(job_id=args.job_id, status=args.status, progress=args.progress,
                              message=args.message, outputs=outputs)
        settings = sink_config.settings()
    except (ValidationError, ValueError) as err:
        print(f"ades-update-job: invalid arguments: {err}", file=sys.stderr)
        return 2
    from ades.events.sinks import PublishFailed, make_sink

    try:
        make_sink(settings).publish(update)
    except PublishFailed as err:
        print(f"ades-update-job: {err}", file=sys.stderr)
        return 1
    print(json.dumps({"published": update.event_id, "job_id": update.job_id, "status": update.status.value}))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
