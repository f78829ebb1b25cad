"""How ades reaches Elasticsearch, in one place: the node's URL (scheme, host, port, path prefix, credentials), TLS
verification, timeouts and bounded retries with backoff. elasticsearch-py (`make_client`, every call but one) and
the group commit's own bulk connection (ades.store.bulk) are both built from it."""

from __future__ import annotations

import base64
import functools
import random
import ssl
import time
from dataclasses import dataclass
from urllib.parse import unquote, urlsplit

from elasticsearch import Elasticsearch

from ades.config import Settings

RETRY_STATUSES = frozenset({429, 502, 503, 504})
"""Answers worth retrying: the node is busy or restarting."""


class StoreUnavailable(RuntimeError):
    """Elasticsearch could not be reached or answered with a server error."""


def backoff(attempt: int, base: float, cap: float) -> None:
    """Sleep before retry `attempt` (0 for the first): full jitter, growing from `base` by doubling up to `cap`, so
    writers that failed together do not retry together."""
    time.sleep(random.uniform(0, min(cap, base * 2**attempt)))


@dataclass(frozen=True)
class Endpoint:
    """Where and how to reach the node, from its URL (credentials percent-encoded in it become Basic auth)."""

    https: bool
    host: str
    port: int
    prefix: str
    authorization: str | None

    @classmethod
    def from_url(cls, url: str) -> Endpoint:
        parts = urlsplit(url)
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise ValueError(f"not an http(s) URL of an Elasticsearch node: {url!r}")
        https = parts.scheme == "https"
        authorization = None
        if parts.username is not None:
            user_pass = f"{unquote(parts.username)}:{unquote(parts.password or '')}"
            authorization = "Basic " + base64.b64encode(user_pass.encode()).decode("ascii")
        return cls(https, parts.hostname, parts.port or (443 if https else 80), parts.path.rstrip("/"), authorization)


@functools.cache
def tls_context() -> ssl.SSLContext:
    """The node's certificate is verified against certifi's bundle when it is installed (as elasticsearch-py does),
    else the system's. Made once per process."""
    try:
        import certifi
    except ImportError:
        return ssl.create_default_context()
    return ssl.create_default_context(cafile=certifi.where())


def make_client(settings: Settings) -> Elasticsearch:
    endpoint = Endpoint.from_url(settings.elasticsearch_url)
    node = {"scheme": "https" if endpoint.https else "http", "host": endpoint.host, "port": endpoint.port,
            "path_prefix": endpoint.prefix}
    return Elasticsearch(
        [node],
        headers={"Authorization": endpoint.authorization} if endpoint.authorization else None,
        ssl_context=tls_context() if endpoint.https else None,
        request_timeout=settings.es_request_timeout,
        max_retries=settings.es_max_retries,
        retry_on_timeout=True,
        retry_on_status=tuple(sorted(RETRY_STATUSES)),
    )
