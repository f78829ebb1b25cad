"""`ades serve`: the app under gunicorn, started from Python (no gunicorn command line, no config file).

Each gunicorn worker process builds its own app, hence its own LocalExecutor with its own warm job workers; a job
can be cancelled only through the worker process that started it (see ades.api.context).

Before anything listens, the settings are checked where a mistake would leave the server open: with auth off it
listens on loopback only (every caller would act as `anonymous`), unless ADES_ALLOW_UNAUTHENTICATED_BIND says
something in front of it authenticates; auth settings that cannot work (a missing tokens file, a short HMAC key)
stop the start with the reason. The access log names no credential (RedactingLogger).
"""

from __future__ import annotations

import ipaddress
import json
import logging
import os
import select
import socket
from typing import Any
from urllib.parse import urlsplit, urlunsplit

from gunicorn import glogging
from gunicorn import util as gunicorn_util
from gunicorn.app.base import BaseApplication
from gunicorn.workers.gthread import ThreadWorker

from ades.api.auth import AuthConfigError, Authenticator
from ades.api.errors import OGC_EXCEPTIONS
from ades.config import Settings

log = logging.getLogger(__name__)

_GUNICORN_KINDS = {400: "invalid-parameter", 403: "forbidden", 414: "uri-too-long",
                   431: "request-header-fields-too-large", 500: "server-error", 501: "not-implemented"}


def _write_ogc_error(sock: Any, status_int: int, reason: str, mesg: str) -> None:
    """What gunicorn answers itself, before the app sees a request (a header with control characters, a request
    line over 4094 bytes), as the OGC exception every other error of this server is, not gunicorn's HTML page."""
    body = json.dumps({"type": OGC_EXCEPTIONS + _GUNICORN_KINDS.get(status_int, "client-error"), "title": reason,
                       "status": status_int, "detail": mesg or reason}).encode()
    head = (f"HTTP/1.1 {status_int} {reason}\r\nConnection: close\r\nContent-Type: application/json\r\n"
            f"Content-Length: {len(body)}\r\n\r\n")
    gunicorn_util.write_nonblock(sock, head.encode("latin1") + body)


KEEPALIVE_REQUESTS = 100
"""Requests one keep-alive connection may carry before the server closes it (like Apache's MaxKeepAliveRequests
or nginx's keepalive_requests; gunicorn has no such setting)."""


class BalancingWorker(ThreadWorker):  # type: ignore[misc]
    """gunicorn's gthread worker, closing a keep-alive connection after `requests_per_connection` requests (the
    last answer says `Connection: close`).

    Whichever worker process accepts a connection serves it for good, and clients that open their connections at
    once (a pool, a load test) often land mostly on one worker, whose GIL then caps the server while the other core
    idles. A client reconnecting every N requests lands on the worker that is quickest to accept, the less busy one,
    so the load evens out within seconds, for one reconnect per N requests.

    A request thread also keeps its connection for the next request when that comes within `linger` seconds, as
    long as the worker has no more connections than threads (so a connection waits for a thread another one holds
    only when a new one comes, and at most `linger`). gthread otherwise hands every keep-alive connection back to its
    main thread after each answer, which polls it and hands it to a request thread again: two more thread wake-ups
    per request, each a GIL hand-off among the request threads (benchmarks/README.md has the figures).
    """

    requests_per_connection = KEEPALIVE_REQUESTS
    linger = 0.02

    def handle(self, conn: Any) -> Any:
        keepalive = super().handle(conn)
        while keepalive is True and self.alive and self.nr_conns <= self.cfg.threads and self._next_comes(conn):
            keepalive = super().handle(conn)
        return keepalive

    def _next_comes(self, conn: Any) -> bool:
        """Whether the connection's next request is here (pipelined, already read) or arrives within `linger`."""
        if conn.parser.unreader.buf.getvalue():
            return True
        poll = select.poll()
        poll.register(conn.sock, select.POLLIN)
        return bool(poll.poll(self.linger * 1000))

    def handle_request(self, req: Any, conn: Any) -> Any:
        served = getattr(conn, "ades_served", 0) + 1
        conn.ades_served = served
        if served >= self.requests_per_connection:
            req.force_close()
        return super().handle_request(req, conn)


def elide_query(query: str) -> str:
    """A query string with the names of its parameters only (`a=1&secret` -> `a=*&*`): a value may be a credential
    whatever its name (`?access_token=`, `?key=`), so may an item without a name, and a log line must never hold one."""
    if not query:
        return ""
    return "&".join(f"{name}=*" if sep else "*" for name, sep, _ in (p.partition("=") for p in query.split("&")))


def redact_target(target: str) -> str:
    """A request target (path and query) as the access log may show it."""
    path, mark, query = target.partition("?")
    return path + mark + elide_query(query)


def redact_url(url: str) -> str:
    """An absolute URL (a Referer) without user info or fragment, and with its query elided."""
    try:
        parts = urlsplit(url)
    except ValueError:
        return "-"
    return urlunsplit(parts._replace(netloc=parts.netloc.rpartition("@")[2], query=elide_query(parts.query),
                                     fragment=""))


_CREDENTIAL_ATOMS = tuple(f"{{{name}}}i" for name in ("authorization", "proxy-authorization", "cookie", "referer")) \
    + tuple(f"{{{name}}}e" for name in ("http_authorization", "http_proxy_authorization", "http_cookie",
                                        "http_referer", "raw_uri", "query_string"))


class RedactingLogger(glogging.Logger):  # type: ignore[misc]
    """gunicorn's logger, writing no credential in the access log: no Basic-auth user name (a client that sends its
    token as Basic credentials would have it logged), no query values, no Referer user info or query, and no atom
    for the Authorization, Cookie or Referer headers, nor the raw URI or query, should a format ask for one."""

    def atoms(self, resp: Any, req: Any, environ: dict[str, Any], request_time: Any) -> dict[str, Any]:
        atoms = super().atoms(resp, req, environ, request_time)
        atoms["u"] = "-"
        atoms["r"] = (f"{environ.get('REQUEST_METHOD', '-')} {redact_target(str(environ.get('RAW_URI', '')))} "
                      f"{environ.get('SERVER_PROTOCOL', '-')}")
        atoms["q"] = elide_query(str(environ.get("QUERY_STRING") or ""))
        atoms["f"] = redact_url(str(atoms["f"])) if atoms.get("f") not in (None, "-") else "-"
        for key in _CREDENTIAL_ATOMS:
            if key in atoms:
                atoms[key] = "-"
        return atoms


class ServeRefused(RuntimeError):
    """The settings would start a server that is not safe to run (the message says why and what to set)."""


def is_loopback(host: str) -> bool:
    """Whether `host` (an address or a name, resolved) reaches this machine's loopback interface only."""
    host = host.strip().strip("[]")
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        pass
    try:
        addresses = {info[4][0] for info in socket.getaddrinfo(host, None, proto=socket.IPPROTO_TCP)}
    except (OSError, UnicodeError):
        return False
    return bool(addresses) and all(ipaddress.ip_address(a.partition("%")[0]).is_loopback for a in addresses)


def check_bind(settings: Settings, host: str) -> None:
    """Refuse to listen beyond loopback with auth off: anyone who reaches the address would act as `anonymous`."""
    if settings.auth_enabled or is_loopback(host):
        return
    if settings.allow_unauthenticated_bind:
        log.warning("listening on %s with authentication OFF (ADES_ALLOW_UNAUTHENTICATED_BIND=true): everyone who "
                    "reaches it acts as 'anonymous' with roles %s; only safe if something in front of this server "
                    "authenticates every request", host, settings.anonymous_roles)
        return
    raise ServeRefused(
        f"refusing to listen on {host or 'every interface'} with authentication off: anyone who reaches it would act "
        "as 'anonymous'. Require bearer tokens (ADES_AUTH_TOKENS_FILE or ADES_AUTH_JWT_KEY), listen on 127.0.0.1, "
        "or, only if something in front of the server authenticates every request, set "
        "ADES_ALLOW_UNAUTHENTICATED_BIND=true")


class _Gunicorn(BaseApplication):  # type: ignore[misc]
    def __init__(self, settings: Settings, options: dict[str, Any], app_kwargs: dict[str, Any]) -> None:
        self.settings = settings
        self.options = options
        self.app_kwargs = app_kwargs
        super().__init__()

    def load_config(self) -> None:
        for key, value in self.options.items():
            if key in self.cfg.settings and value is not None:
                self.cfg.set(key, value)

    def load(self) -> Any:
        # imported here, in the worker: each worker gets a fresh app and its own executor
        from ades.app import create_app

        return create_app(self.settings, **self.app_kwargs)


def serve(
    settings: Settings,
    host: str = "127.0.0.1",
    port: int = 5000,
    workers: int = 2,
    *,
    threads: int = 8,
    job_workers: int | None = None,
    public_url: str | None = None,
    timeout: int = 660,
    access_log: bool = True,
    keepalive_requests: int | None = None,
) -> None:
    """Run the server until interrupted. `workers`: gunicorn worker processes; `threads`: request threads in each
    (sync execution blocks one); `job_workers`: warm cwltool workers per gunicorn worker (default CPU count);
    `timeout` must exceed the sync-execute budget (600 s) or gunicorn kills a worker waiting on a sync job;
    `keepalive_requests`: requests per keep-alive connection before the server closes it (BalancingWorker; default
    KEEPALIVE_REQUESTS). Raises ServeRefused (before anything listens) on settings that are not safe to run."""
    check_bind(settings, host)
    try:  # here, not in a worker: a bad setting is then one clear line, not a worker that fails to boot
        Authenticator.from_settings(settings)
    except AuthConfigError as err:
        raise ServeRefused(str(err)) from None
    public_url = public_url or os.environ.get("ADES_PUBLIC_URL") or f"http://{host}:{port}"
    options = {
        "bind": f"{host}:{port}",
        "workers": workers,
        "threads": threads,
        "worker_class": f"{__name__}.{BalancingWorker.__name__}",
        "timeout": timeout,
        "graceful_timeout": 30,
        "accesslog": "-" if access_log else None,
        "errorlog": "-",
        "logger_class": f"{__name__}.{RedactingLogger.__name__}",
        # gunicorn 25+ opens a control socket at one path per user: a second server replaced the first one's and
        # deleted it on stop, and nothing here uses it (older gunicorn has no such setting, and no socket)
        "control_socket_disable": True,
    }
    # gunicorn's workers call util.write_error for the requests they refuse; there is no setting for its format
    gunicorn_util.write_error = _write_ogc_error
    # the workers are forked from here
    BalancingWorker.requests_per_connection = max(1, keepalive_requests or KEEPALIVE_REQUESTS)
    _Gunicorn(settings, options, {"public_url": public_url, "workers": job_workers, "bind_host": host}).run()
