"""One place that builds the Elasticsearch client, with timeouts and bounded retries on every call."""

from __future__ import annotations

import random
import time

from elasticsearch import Elasticsearch

from ades.config import Settings


class StoreUnavailable(RuntimeError):
    """Elasticsearch could not be reached or answered with a server error."""


def backoff(attempt: int, base: float, cap: float) -> None:
    """Sleep before retry `attempt` (0 for the first): full jitter, growing from `base` by doubling up to `cap`, so
    writers that failed together do not retry together."""
    time.sleep(random.uniform(0, min(cap, base * 2**attempt)))


def make_client(settings: Settings) -> Elasticsearch:
    return Elasticsearch(
        settings.elasticsearch_url,
        request_timeout=settings.es_request_timeout,
        max_retries=settings.es_max_retries,
        retry_on_timeout=True,
        retry_on_status=(429, 502, 503, 504),
    )
