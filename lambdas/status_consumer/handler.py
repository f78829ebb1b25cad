"""AWS Lambda entry point of the status consumer (SQS event source with ReportBatchItemFailures).

Configured from the environment like the rest of ades (ADES_ES_URL, ADES_INDEX_PREFIX, ...). The Elasticsearch
client is built once per container and reused across invocations.
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


def _job_store() -> JobStore:
    global _store
    if _store is None:
        settings = Settings()
        _store = JobStore(make_client(settings), settings)
    return _store


def handler(event: dict[str, Any], context: Any) -> dict[str, list[dict[str, str]]]:
    return process_event(event, _job_store())
