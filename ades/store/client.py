"""One place that builds the Elasticsearch client, with timeouts and bounded retries on every call."""

from __future__ import annotations

from elasticsearch import Elasticsearch

from ades.config import Settings


class StoreUnavailable(RuntimeError):
    """Elasticsearch could not be reached or answered with a server error."""


def make_client(settings: Settings) -> Elasticsearch:
    return Elasticsearch(
        settings.elasticsearch_url,
        request_timeout=settings.es_request_timeout,
        max_retries=settings.es_max_retries,
        retry_on_timeout=True,
        retry_on_status=(429, 502, 503, 504),
    )
