"""The group commit's own connection to Elasticsearch: `_bulk` requests over one keep-alive `http.client` connection.

Every other call goes through elasticsearch-py. The submission path does not: elasticsearch-py's per-request
machinery (parameter rewriting, transport, connection pool, response objects) costs about twice the CPU of one
`http.client` request, and that request runs once per batch under the GIL the request threads share
(benchmarks/README.md). Where and how the node is reached (URL, credentials, TLS, retries) is ades.store.client's,
as for elasticsearch-py. A bulk resent after a lost connection may find documents its first send stored:
`BulkAnswer.resent` says so, and the caller knows whether a 409 then means "stored by us".
"""

from __future__ import annotations

import http.client
import json
import select
import socket
import ssl
import threading
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlencode

from ades.config import Settings
from ades.store.client import RETRY_STATUSES, Endpoint, StoreUnavailable, backoff, tls_context

_BACKOFF_BASE = 0.05
_BACKOFF_CAP = 1.0


@dataclass(frozen=True)
class BulkAnswer:
    body: dict[str, Any]
    resent: bool
    """Whether the request went out more than once after a send whose fate is unknown (a lost connection)."""


def ndjson_text(lines: Iterable[dict[str, Any]]) -> str:
    """The lines as newline-delimited JSON, all ASCII (non-ASCII characters escaped): its length is its size."""
    return "".join(json.dumps(line, separators=(",", ":")) + "\n" for line in lines)


def ndjson(lines: Iterable[dict[str, Any]]) -> bytes:
    return ndjson_text(lines).encode()


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

    def bulk(self, lines: Iterable[dict[str, Any]] | bytes, **params: str) -> BulkAnswer:
        """POST the action and document lines (or their NDJSON) to `_bulk`; the parsed answer. Raises
        StoreUnavailable when the node cannot be reached or keeps refusing within the retries, or answers with
        another error."""
        body = lines if isinstance(lines, bytes) else ndjson(lines)
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
                context = self.ssl_context or tls_context()
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
