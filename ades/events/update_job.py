"""`ades-update-job`: publish one StatusUpdate. This is what cwl/update-job.cwl runs inside a workflow.

The sink comes from `--sink`, a JSON object passed into the step by the workflow (never baked into the CWL):
  {"topic_arn": "...", "region": "...", "endpoint_url": "..."}   publish to SNS (endpoint_url only for moto)
  {"es_url": "...", "index_prefix": ""}                            apply to Elasticsearch directly (embedded use)
"""

from __future__ import annotations

import argparse
import json
import sys

from pydantic import ValidationError

from ades.events.sinks import PublishFailed, SinkConfig, make_sink
from ades.models import StatusUpdate


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
    try:
        make_sink(settings).publish(update)
    except PublishFailed as err:
        print(f"ades-update-job: {err}", file=sys.stderr)
        return 1
    print(json.dumps({"published": update.event_id, "job_id": update.job_id, "status": update.status.value}))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
