"""The one way ades reaches out of its host on someone's behalf: http(s) inputs of jobs, an `executionUnit.href`,
the `$include`/`$import` references of a deployed package, and the callbacks a job's `subscriber` asked for (a POST,
`Fetcher.post`).

A URL is only fetched from an address that is public, or that the operator allowed (ADES_FETCH_ALLOW): a name is
resolved, and every address it resolves to must pass, else the fetch is refused before any connection is made. The
connection then goes to one of the addresses that passed (not to a second resolution of the name, which a hostile
DNS server could answer differently). Every redirect is a new URL that passes the same checks; there are at most
MAX_REDIRECTS. The bytes and the time of a fetch are capped (the body is read in chunks, the clock runs across
redirects), and what is fetched goes where the caller says: a job's inputs into its own folder, gone with it.

Proxies from the environment are not used: the address connected to is the address checked.
"""

from __future__ import annotations

import contextlib
import http.client
import ipaddress
import os
import re
import socket
import ssl
import time
import urllib.parse
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ConfigDict, Field

MAX_REDIRECTS = 5
CHUNK_BYTES = 256 * 1024
REDIRECTS = (301, 302, 303, 307, 308)
ANSWER_BYTES = 64 * 1024
"""The most of an answer to a POST (a callback) that is read; a longer one fails the delivery."""
METADATA = (ipaddress.ip_network("169.254.169.254/32"), ipaddress.ip_network("fd00:ec2::254/128"))
"""Cloud instance metadata (AWS's IPv4 and IPv6 endpoints; GCP and Azure use the same IPv4 one): credentials."""
NAT64 = ipaddress.ip_network("64:ff9b::/96")
Address = ipaddress.IPv4Address | ipaddress.IPv6Address
Network = ipaddress.IPv4Network | ipaddress.IPv6Network


class FetchError(ValueError):
    """A URL cannot be fetched; the message names it and says why, for the person who gave it."""


class Refused(FetchError):
    """The URL leads to an address this server does not reach on anyone's behalf."""


class FetchPolicy(BaseModel):
    """What may be fetched, and how much. Plain JSON: it travels with a job to the process that runs it."""

    model_config = ConfigDict(extra="forbid")

    allow: list[str] = Field(default_factory=list, description="host names, addresses or networks (CIDR) that may "
                             "be reached although they are not public")
    max_bytes: int = Field(default=4 * 1024**3, ge=1, description="largest body of one fetch")
    timeout: float = Field(default=600.0, gt=0, description="seconds one fetch may take, redirects included")

    @classmethod
    def from_settings(cls, settings: Any) -> FetchPolicy:
        return cls(allow=list(settings.fetch_allow), max_bytes=settings.fetch_max_bytes,
                   timeout=settings.fetch_timeout)


def _networks(entries: list[str]) -> tuple[list[Network], set[str]]:
    networks, names = [], set()
    for entry in entries:
        try:
            networks.append(ipaddress.ip_network(entry.strip(), strict=False))
        except ValueError:
            names.add(entry.strip().lower().rstrip("."))
    return networks, names


def why_not_public(address: Address) -> str | None:
    """Why an address is not one the server reaches on anyone's behalf, or None for a public one."""
    if isinstance(address, ipaddress.IPv6Address):
        embedded = address.ipv4_mapped or (ipaddress.IPv4Address(int(address) & 0xFFFFFFFF)
                                           if address in NAT64 else None)
        if embedded is not None:
            return why_not_public(embedded)
    if any(address in network for network in METADATA):
        return "a cloud metadata address"
    for test, what in (("is_loopback", "a loopback address"), ("is_link_local", "a link-local address"),
                       ("is_multicast", "a multicast address"), ("is_unspecified", "an unspecified address"),
                       ("is_private", "a private address")):
        if getattr(address, test):
            return what
    return None if address.is_global else "not a public address"


@dataclass(frozen=True)
class Target:
    """A URL that passed the checks: where to connect (the checked addresses) and what to ask for."""

    url: str
    scheme: str
    host: str
    port: int
    path: str
    addresses: tuple[str, ...]


class Fetcher:
    """Checks and fetches URLs under one policy. Thread-safe: it holds no state between fetches."""

    def __init__(self, policy: FetchPolicy | None = None) -> None:
        self.policy = policy or FetchPolicy()
        self._networks, self._names = _networks(self.policy.allow)

    # --- checking ------------------------------------------------------------------------------------------
    def check(self, url: str) -> Target:
        """The URL's target, once its scheme, host and every address its host resolves to are acceptable.
        Raises Refused (an address not reached) or FetchError (not a usable http(s) URL, a name that does not
        resolve)."""
        try:
            parts = urllib.parse.urlsplit(url)
        except ValueError as err:  # a broken [IPv6] host
            raise FetchError(f"{url}: {err}") from None
        if parts.scheme not in ("http", "https"):
            raise FetchError(f"{url}: only http:// and https:// URLs are fetched")
        try:
            host, port = parts.hostname, parts.port
        except ValueError as err:
            raise FetchError(f"{url}: {err}") from None
        if not host:
            raise FetchError(f"{url}: no host")
        try:
            host = host.encode("idna").decode("ascii")
        except UnicodeError:
            raise FetchError(f"{url}: {host!r} is not a usable host name") from None
        port = port or (443 if parts.scheme == "https" else 80)
        # what is not ASCII is sent %-encoded (an HTTP request line is ASCII); escapes already there stay
        path = urllib.parse.quote(urllib.parse.urlunsplit(("", "", parts.path or "/", parts.query, "")),
                                  safe="/?&=%:@!$'()*+,;~")
        return Target(url, parts.scheme, host, port, path, self._addresses(url, host, port))

    def _addresses(self, url: str, host: str, port: int) -> tuple[str, ...]:
        try:
            literal: Address | None = ipaddress.ip_address(host)
        except ValueError:
            literal = None
        try:
            found = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
        except (OSError, UnicodeError) as err:
            raise FetchError(f"{url}: the host {host} cannot be resolved ({err})") from None
        addresses = list(dict.fromkeys(ipaddress.ip_address(str(info[4][0]).split("%")[0]) for info in found))
        if host.lower().rstrip(".") in self._names:
            return tuple(str(a) for a in addresses)
        for address in addresses:
            why = why_not_public(address)
            if why is not None and not any(address in network for network in self._networks):
                # a name's addresses are not told: they would map the server's private DNS for whoever asks
                shown = f"{address} is" if literal is not None else f"{host} resolves to"
                raise Refused(f"{url}: {shown} {why}, which this server does not reach on anyone's behalf "
                              "(ADES_FETCH_ALLOW)")
        return tuple(str(a) for a in addresses)

    # --- fetching -------------------------------------------------------------------------------------------
    def fetch_bytes(self, url: str, max_bytes: int | None = None, timeout: float | None = None) -> bytes:
        """The body at `url` (redirects followed, each one checked), within `max_bytes` and `timeout` seconds (by
        default the policy's). Raises FetchError."""
        return b"".join(self._body(url, _Budget.of(self.policy, max_bytes, timeout)))

    def fetch_to(self, url: str, directory: Path, name: str | None = None) -> Path:
        """Fetch `url` into a new file in `directory` (made if missing), named `name` or after the URL's last
        path segment; the file appears whole or not at all. Raises FetchError."""
        directory.mkdir(parents=True, exist_ok=True)
        target = directory / safe_name(name or urllib.parse.urlsplit(url).path.rsplit("/", 1)[-1])
        partial = directory / f".partial-{uuid.uuid4().hex}"
        try:
            fd = os.open(partial, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
            with os.fdopen(fd, "wb") as out:
                for chunk in self._body(url, _Budget.of(self.policy, None, None)):
                    out.write(chunk)
            os.replace(partial, target)
        finally:
            with contextlib.suppress(FileNotFoundError):
                partial.unlink()
        return target

    def post(self, url: str, body: bytes, headers: dict[str, str], timeout: float) -> int:
        """POST `body` to `url` (checked as any fetch, connecting to the checked address) within `timeout` seconds;
        the HTTP status of a 2xx answer. A redirect is not followed (a POST does not survive one, and its target would
        be an address nobody checked); it, any other answer and a failure to connect raise FetchError."""
        target = self.check(url)
        budget = _Budget(ANSWER_BYTES, timeout, time.monotonic() + timeout, False)
        connection, response = _request(target, budget, "POST", body, headers)
        try:
            if 200 <= response.status < 300:
                for _ in _read(response, connection, budget, url):
                    pass  # read to its end (at most ANSWER_BYTES, in the time left) and dropped: nothing is kept
                return response.status
        finally:
            connection.close()
        moved = " (redirects are not followed)" if response.status in REDIRECTS else ""
        raise FetchError(f"{url}: answered {response.status} {response.reason}{moved}")

    def _body(self, url: str, budget: _Budget) -> Iterator[bytes]:
        current = url
        for _ in range(MAX_REDIRECTS + 1):
            try:
                target = self.check(current)
            except FetchError as err:
                if current == url:
                    raise
                raise type(err)(f"{url}: redirected to {err}") from None
            connection, response = _request(target, budget)
            try:
                if response.status in REDIRECTS and response.getheader("Location"):
                    current = urllib.parse.urljoin(current, response.getheader("Location", ""))
                    continue
                if not 200 <= response.status < 300:
                    raise FetchError(f"{_shown(url, current)}answered {response.status} {response.reason}")
                declared = response.getheader("Content-Length")
                if declared and declared.isdigit() and int(declared) > budget.max_bytes:
                    raise FetchError(f"{_shown(url, current)}is {declared} bytes, {budget.too_large()}")
                yield from _read(response, connection, budget, url)
                if response.length:  # the server closed before the end it announced
                    raise FetchError(f"{url}: the download broke off ({response.length} bytes missing)")
                return
            finally:
                connection.close()
        raise FetchError(f"{url}: more than {MAX_REDIRECTS} redirects")


def _shown(url: str, current: str) -> str:
    return f"{url}: " if current == url else f"{url}: redirected to {current}, which "


@dataclass(frozen=True)
class _Budget:
    """The bytes and the time one fetch may take, redirects included; `settings`: they are the policy's (the
    operator's settings), which a refusal then names."""

    max_bytes: int
    seconds: float
    deadline: float
    settings: bool

    @classmethod
    def of(cls, policy: FetchPolicy, max_bytes: int | None, timeout: float | None) -> _Budget:
        seconds = timeout or policy.timeout
        return cls(max_bytes or policy.max_bytes, seconds, time.monotonic() + seconds,
                   max_bytes is None and timeout is None)

    def too_large(self) -> str:
        return f"more than the {self.max_bytes} bytes allowed" + (" (ADES_FETCH_MAX_BYTES)" if self.settings else "")

    def too_slow(self, url: str) -> FetchError:
        named = " (ADES_FETCH_TIMEOUT)" if self.settings else ""
        return FetchError(f"{url}: took longer than the {self.seconds:g} s allowed{named}")

    def left(self, url: str) -> float:
        seconds = self.deadline - time.monotonic()
        if seconds <= 0:
            raise self.too_slow(url)
        return seconds


class _PinnedHTTP(http.client.HTTPConnection):
    """An HTTP connection to the checked addresses of its host (the Host header still names the host)."""

    def __init__(self, target: Target, timeout: float) -> None:
        super().__init__(target.host, target.port, timeout=timeout)
        self.target = target

    def connect(self) -> None:
        self.sock = _connect(self.target, self.timeout)


class _PinnedHTTPS(http.client.HTTPSConnection):
    """The same over TLS: the certificate is verified for the host name, as for any https client."""

    def __init__(self, target: Target, timeout: float) -> None:
        super().__init__(target.host, target.port, timeout=timeout, context=ssl.create_default_context())
        self.target = target

    def connect(self) -> None:
        self.sock = self._context.wrap_socket(_connect(self.target, self.timeout),  # type: ignore[attr-defined]
                                              server_hostname=self.target.host)


def _connect(target: Target, timeout: float | None) -> socket.socket:
    error: OSError | None = None
    for address in target.addresses:
        try:
            return socket.create_connection((address, target.port), timeout)
        except OSError as err:
            error = err
    raise error or OSError("no address")


def _request(target: Target, budget: _Budget, method: str = "GET", body: bytes | None = None,
             headers: dict[str, str] | None = None) -> tuple[http.client.HTTPConnection, http.client.HTTPResponse]:
    kind = _PinnedHTTPS if target.scheme == "https" else _PinnedHTTP
    connection = kind(target, budget.left(target.url))
    try:
        connection.request(method, target.path, body=body,
                           headers={"User-Agent": "ades", "Accept-Encoding": "identity", **(headers or {})})
        return connection, connection.getresponse()
    except TimeoutError:
        connection.close()
        raise budget.too_slow(target.url) from None
    except (OSError, http.client.HTTPException, ValueError) as err:
        connection.close()
        raise FetchError(f"{target.url}: {err}") from None


def _read(response: http.client.HTTPResponse, connection: http.client.HTTPConnection, budget: _Budget,
          url: str) -> Iterator[bytes]:
    total = 0
    while True:
        if connection.sock is not None:
            connection.sock.settimeout(budget.left(url))
        try:
            chunk = response.read1(CHUNK_BYTES)
        except TimeoutError:
            raise budget.too_slow(url) from None
        except (OSError, http.client.HTTPException) as err:
            raise FetchError(f"{url}: the download broke off: {err}") from None
        if not chunk:
            return
        total += len(chunk)
        if total > budget.max_bytes:
            raise FetchError(f"{url}: {budget.too_large()}")
        yield chunk


def safe_name(name: str) -> str:
    """A file name made of what a URL's last segment holds, safe on any file system: letters, digits, '.', '_'
    and '-' (anything else becomes '_'), not hidden, at most 128 characters; `download` when nothing is left."""
    cleaned = re.sub(r"[^A-Za-z0-9._-]", "_", urllib.parse.unquote(name)).lstrip(".")[:128]
    return cleaned or "download"
