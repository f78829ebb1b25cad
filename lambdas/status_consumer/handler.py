"""AWS Lambda entry point of the status consumer (SQS event source with ReportBatchItemFailures).

Configured from the environment like the rest of ades (ADES_ES_URL, ADES_INDEX_PREFIX, ...). The Elasticsearch
client is built once per container and reused across invocations. A cluster that needs credentials is named by
ADES_ES_URL_SECRET_ARN instead (infra/ades.yaml does so): its URL, credentials included, is read from Secrets
Manager when the container starts, so it is in no environment variable of the function.
"""

from __future__ import annotations

import logging
from typing import Any

from ades.config import Settings
from ades.events.consumer import process_event
from ades.store.client import make_client
from ades.store.jobs import JobStore

logging.getLogger().setLevel(logging.INFO)

_store: JobStore | None = None


def settings_with_secrets(settings: Settings) -> Settings:
    """`settings`, with the cluster URL read from Secrets Manager when only its secret is named."""
    if settings.es_url is not None or not settings.es_url_secret_arn:
        return settings
    from ades.events.aws import client  # boto3: the Lambda runtime has it, and only this path needs it

    region = settings.es_url_secret_arn.split(":")[3]  # arn:partition:secretsmanager:REGION:account:secret:name
    secrets = client("secretsmanager", settings.model_copy(update={"aws_region": region}))
    url = secrets.get_secret_value(SecretId=settings.es_url_secret_arn)["SecretString"].strip()
    return settings.model_copy(update={"es_url": url})


def _job_store() -> JobStore:
    global _store
    if _store is None:
        settings = settings_with_secrets(Settings())
        _store = JobStore(make_client(settings), settings)
    return _store


def handler(event: dict[str, Any], context: Any) -> dict[str, list[dict[str, str]]]:
    return process_event(event, _job_store())
