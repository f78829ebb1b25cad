"""The Host a request names must be one of this server's names, else 400 before anything else runs.

A web page can make a browser talk to a server on the visitor's loopback or LAN by DNS rebinding: its own name first
resolves to the page's host, then to 127.0.0.1, and the browser, seeing the same origin, lets the page read the
answers. Such requests still carry the page's name in `Host`, which is how they are told apart. A Host that is an IP
address cannot come from rebinding (that needs a name), so when the server listens on every interface (and may be
reached at any of its addresses) any IP address is served too.

Names served: localhost, 127.0.0.1, ::1, the address the server binds, the host of its public URL, and
ADES_ALLOWED_HOSTS (`*` for any Host).
"""

from __future__ import annotations

import ipaddress
from collections.abc import Iterable
from urllib.parse import urlsplit

from flask import Flask, request

from ades.api.errors import ApiProblem
from ades.config import Settings

LOCAL_NAMES = ("localhost", "127.0.0.1", "::1")
EVERY_INTERFACE = frozenset({"", "0.0.0.0", "::"})


def host_name(value: str) -> str:
    """The name of a Host header without its port, lower case, without a final dot: `[::1]:5000` -> `::1`."""
    value = value.strip().lower()
    if value.startswith("["):
        value = value[1:].partition("]")[0]
    elif value.count(":") == 1:
        value = value.partition(":")[0]
    return value.rstrip(".")


def is_ip(name: str) -> bool:
    try:
        ipaddress.ip_address(name)
    except ValueError:
        return False
    return True


class HostPolicy:
    """Which Host headers a server answers."""

    def __init__(self, names: Iterable[str], any_ip: bool = False) -> None:
        self.names = frozenset(host_name(n) for n in names if n.strip())
        self.any_host = "*" in self.names
        self.any_ip = any_ip

    @classmethod
    def for_server(cls, settings: Settings, public_url: str, bind_host: str | None = None) -> HostPolicy:
        names = [*LOCAL_NAMES, urlsplit(public_url).hostname or "", *settings.allowed_hosts]
        if bind_host is not None:
            names.append(bind_host)
        return cls(names, any_ip=bind_host is not None and host_name(bind_host) in EVERY_INTERFACE)

    def allows(self, header: str | None) -> bool:
        if header is None or self.any_host:  # no Host at all: HTTP/1.0, not a browser
            return True
        name = host_name(header)
        return name in self.names or (self.any_ip and is_ip(name))


def install(app: Flask, policy: HostPolicy) -> None:
    """Refuse a request for another host before any other check (auth included) and before anything is written."""

    def _check_host() -> None:
        header = request.headers.get("Host")
        if not policy.allows(header):
            raise ApiProblem(400, "invalid-parameter",
                             f"Host: {host_name(header or '')!r} is not a name of this server (a web page rebinding "
                             "its DNS name to this server's address looks like this); the operator can add names "
                             "with ADES_ALLOWED_HOSTS", "Unknown host")

    app.before_request(_check_host)
