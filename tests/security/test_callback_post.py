"""A callback's POST (ades.fetch.Fetcher.post) against a real server on 127.0.0.1: refused by address unless allowed
(a name that resolved to a public address at submission may resolve to an internal one at delivery), a redirect not
followed (its target was never checked, and it would carry the signed body elsewhere), a slow answer cut at the
time limit, an error answer a failure."""

from __future__ import annotations

import http.server
import re
import threading
import time
from collections.abc import Iterator
from typing import Any

import pytest

from ades.fetch import Fetcher, FetchError, FetchPolicy, Refused

BODY = b'{"jobID":"j","status":"successful"}'


@pytest.fixture(scope="module")
def port() -> Iterator[int]:
    got: list[bytes] = []

    class Handler(http.server.BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            got.append(self.rfile.read(int(self.headers["Content-Length"])))
            if self.path == "/slow":
                time.sleep(2)
            status = {"/moved": 307, "/broken": 500}.get(self.path, 204)
            self.send_response(status)
            if status == 307:
                self.send_header("Location", "http://127.0.0.1:9200/jobs/_doc/x")
            self.send_header("Content-Length", "0")
            self.end_headers()

        def log_message(self, *args: Any) -> None:
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield server.server_port
    server.shutdown()
    thread.join(5)


def test_a_callback_to_a_loopback_address_is_refused_unless_allowed(port: int) -> None:
    with pytest.raises(Refused, match=re.escape("127.0.0.1 is a loopback address")):
        Fetcher().post(f"http://127.0.0.1:{port}/ok", BODY, {}, 5)
    with pytest.raises(Refused, match="localhost resolves to a loopback address"):
        Fetcher().post(f"http://localhost:{port}/ok", BODY, {}, 5)
    assert Fetcher(FetchPolicy(allow=["localhost"])).post(f"http://localhost:{port}/ok", BODY, {}, 5) == 204


def test_a_redirect_is_not_followed_and_an_error_answer_fails(port: int) -> None:
    fetcher = Fetcher(FetchPolicy(allow=["localhost"]))
    with pytest.raises(FetchError, match=r"answered 307 .*redirects are not followed"):
        fetcher.post(f"http://localhost:{port}/moved", BODY, {}, 5)
    with pytest.raises(FetchError, match="answered 500"):
        fetcher.post(f"http://localhost:{port}/broken", BODY, {}, 5)


def test_a_slow_subscriber_is_cut_at_the_time_limit(port: int) -> None:
    started = time.monotonic()
    with pytest.raises(FetchError, match=re.escape("took longer than the 0.5 s allowed")):
        Fetcher(FetchPolicy(allow=["localhost"])).post(f"http://localhost:{port}/slow", BODY, {}, 0.5)
    assert time.monotonic() - started < 1.5
