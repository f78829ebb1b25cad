"""The group commit's own connection to Elasticsearch: `_bulk` requests over one keep-alive `http.client` connection.

Every other call goes through elasticsearch-py. The submission path does not, because of what the client costs per
request: measured on a warm local node, a bulk of 3 small jobs took 0.63-0.86 ms of our CPU through
elasticsearch-py (its parameter rewriting, transport, urllib3 pool and response objects) and 0.28-0.37 ms as one
`http.client` request, and that request runs once per batch under the GIL the request threads share.

It speaks what `make_client` sets up for elasticsearch-py: the URL of `Settings.elasticsearch_url` (http or https,
credentials percent-encoded in it, a path prefix if any), the request timeout, bounded retries with backoff on a lost
connection or a 429/502/503/504 answer. A bulk resent after a lost connection may find documents its first send
stored: `BulkAnswer.resent` says so, and the caller knows whether a 409 then means "stored by us".
"""

from __future__ import annotations

import base64
import functools
import http.client
import json
import select
import socket
import ssl
import threading
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any
from urllib.parse import unquote, urlencode, urlsplit

from ades.config import Settings
from ades.store.client import StoreUnavailable, backoff

RETRY_STATUSES = frozenset({429, 502, 503, 504})
_BACKOFF_BASE = 0.05
_BACKOFF_CAP = 1.0


@dataclass(frozen=True)
class Endpoint:
    """Where and how to reach the node, from its URL."""

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


@dataclass(frozen=True)
class BulkAnswer:
    body: dict[str, Any]
    resent: bool
    """Whether the request went out more than once after a send whose fate is unknown (a lost connection)."""


def ndjson(lines: Iterable[dict[str, Any]]) -> bytes:
    return "".join(json.dumps(line, separators=(",", ":")) + "\n" for line in lines).encode()


class BulkConnection:
    """One keep-alive connection for `_bulk` requests (one request at a time: the group commit has one writer)."""

    def __init__(self, endpoint: Endpoint, timeout: float, max_retries: int,
                 ssl_context: ssl.SSLContext | None = None) -> None:
        self.endpoint = endpoint
        self.timeout = timeout
        self.max_retries = max_retries
        self.ssl_context = ssl_context
        self._conn: http.client.HTTPConnection | None = None
        self._lock = threading.Lock()
        self.headers = {"Content-Type": "application/x-ndjson", "Accept": "application/json"}
        if endpoint.authorization:
            self.headers["Authorization"] = endpoint.authorization

    @classmethod
    def from_settings(cls, settings: Settings) -> BulkConnection:
        return cls(Endpoint.from_url(settings.elasticsearch_url), settings.es_request_timeout, settings.es_max_retries)

    def bulk(self, lines: Iterable[dict[str, Any]], **params: str) -> BulkAnswer:
        """POST the action and document lines to `_bulk`; the parsed answer. Raises StoreUnavailable when the node
        cannot be reached or keeps refusing within the retries, or answers with another error."""
        body = ndjson(lines)
        path = f"{self.endpoint.prefix}/_bulk" + (f"?{urlencode(params)}" if params else "")
        unsure = False
        with self._lock:
            for attempt in range(self.max_retries + 1):
                last = attempt == self.max_retries
                try:
                    status, data = self._post(path, body)
                except (OSError, http.client.HTTPException) as err:
                    self.close()
                    unsure = True  # the node may have taken the request before the connection went
                    if last:
                        raise StoreUnavailable(f"Elasticsearch bulk request failed: {err!r}") from err
                else:
                    if status < 300:
                        return BulkAnswer(json.loads(data), resent=unsure)
                    if status not in RETRY_STATUSES or last:
                        raise StoreUnavailable(f"Elasticsearch answered the bulk request with {status}: "
                                               f"{data[:500].decode(errors='replace')}")
                backoff(attempt, _BACKOFF_BASE, _BACKOFF_CAP)
        raise AssertionError("unreachable")  # the loop returns or raises on its last attempt

    def close(self) -> None:
        if self._conn is not None:
            self._conn.close()
            self._conn = None

    def _post(self, path: str, body: bytes) -> tuple[int, bytes]:
        if self._conn is not None and _dropped(self._conn.sock):
            self.close()  # the node closed it while idle (a restart, an idle timeout): not a failed attempt
        if self._conn is None:
            if self.endpoint.https:
                context = self.ssl_context or _default_context()
                self._conn = http.client.HTTPSConnection(self.endpoint.host, self.endpoint.port,
                                                         timeout=self.timeout, context=context)
            else:
                self._conn = http.client.HTTPConnection(self.endpoint.host, self.endpoint.port, timeout=self.timeout)
        self._conn.request("POST", path, body, self.headers)
        response = self._conn.getresponse()
        data = response.read()
        if response.will_close:
            self.close()
        return response.status, data


def _dropped(sock: socket.socket | None) -> bool:
    """Whether a kept connection is gone: an idle one has nothing to read, so anything readable is its end (EOF or
    a reset). urllib3 checks its pooled connections the same way before reusing them."""
    if sock is None:
        return False  # not connected yet: http.client connects on the next request
    poller = select.poll()
    poller.register(sock, select.POLLIN)
    return bool(poller.poll(0))


@functools.cache
def _default_context() -> ssl.SSLContext:
    """Verify the node's certificate as elasticsearch-py does: against certifi's bundle when it is installed.
    Made once: a reconnect should not read the bundle again."""
    try:
        import certifi
    except ImportError:
        return ssl.create_default_context()
    return ssl.create_default_context(cafile=certifi.where())
