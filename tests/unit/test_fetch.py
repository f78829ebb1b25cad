"""ades.fetch: which addresses are refused, what the allow-list lets through, and the fetches themselves (redirects,
caps) against a real HTTP server on 127.0.0.1, allowed by the test as the public host it plays."""

from __future__ import annotations

import http.server
import ipaddress
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from ades.fetch import MAX_REDIRECTS, Fetcher, FetchError, FetchPolicy, Refused, Target, safe_name, why_not_public

LOCAL = FetchPolicy(allow=["127.0.0.1/32"])


@pytest.mark.parametrize(("address", "why"), [
    ("127.0.0.1", "a loopback address"),
    ("127.8.9.10", "a loopback address"),
    ("::1", "a loopback address"),
    ("169.254.169.254", "a cloud metadata address"),
    ("fd00:ec2::254", "a cloud metadata address"),
    ("169.254.1.1", "a link-local address"),
    ("fe80::1", "a link-local address"),
    ("10.1.2.3", "a private address"),
    ("172.16.0.1", "a private address"),
    ("192.168.1.1", "a private address"),
    ("fd12::1", "a private address"),
    ("0.0.0.0", "an unspecified address"),
    ("::", "an unspecified address"),
    ("224.0.0.1", "a multicast address"),
    ("100.64.0.1", "not a public address"),
    ("::ffff:127.0.0.1", "a loopback address"),
    ("::ffff:169.254.169.254", "a cloud metadata address"),
    ("64:ff9b::a00:1", "a private address"),
    ("93.184.215.14", None),
    ("2606:2800:21f:cb07:6820:80da:af6b:8b2c", None),
])
def test_addresses_that_are_not_public_are_told_why(address: str, why: str | None) -> None:
    assert why_not_public(ipaddress.ip_address(address)) == why


@pytest.mark.parametrize("url", ["http://127.0.0.1:9200/jobs/_search", "http://[::1]/", "http://169.254.169.254/",
                                 "http://[fd00:ec2::254]/", "https://10.0.0.1/x", "http://0.0.0.0:80/",
                                 "http://localhost:9200/"])
def test_internal_urls_are_refused_by_default(url: str) -> None:
    with pytest.raises(Refused, match="ADES_FETCH_ALLOW"):
        Fetcher().check(url)


def test_a_name_is_refused_without_telling_its_addresses() -> None:
    with pytest.raises(Refused) as err:
        Fetcher().check("http://localhost:1/")
    assert "localhost resolves to a loopback address" in str(err.value) and "127.0.0.1" not in str(err.value)


def test_the_allow_list_takes_networks_addresses_and_names() -> None:
    assert Fetcher(FetchPolicy(allow=["10.0.0.0/8"])).check("http://10.9.8.7/a?b=c").path == "/a?b=c"
    assert Fetcher(FetchPolicy(allow=["127.0.0.1"])).check("http://127.0.0.1:9/").addresses == ("127.0.0.1",)
    assert Fetcher(FetchPolicy(allow=["LOCALHOST."])).check("http://localhost:9/").port == 9
    with pytest.raises(Refused):  # a name allowed is not its address allowed, nor the other way round
        Fetcher(FetchPolicy(allow=["localhost"])).check("http://127.0.0.1:9/")
    with pytest.raises(Refused):
        Fetcher(FetchPolicy(allow=["10.0.0.0/8"])).check("http://169.254.169.254/")


@pytest.mark.parametrize(("url", "problem"), [("ftp://example.org/x", "only http:// and https://"),
                                              ("file:///etc/passwd", "only http:// and https://"),
                                              ("http:///x", "no host"), ("http://h:99999/", "out of range"),
                                              ("http://[::1/", "Invalid IPv6 URL")])
def test_unusable_urls(url: str, problem: str) -> None:
    with pytest.raises(FetchError, match=problem):
        Fetcher().check(url)


def test_the_request_path_is_ascii() -> None:
    target = Fetcher(LOCAL).check("http://127.0.0.1/b\u00e4nder/a%20b.tif?x=\u00e9&y=1")
    assert target.path == "/b%C3%A4nder/a%20b.tif?x=%C3%A9&y=1"


def test_safe_names() -> None:
    assert safe_name("scene%20B04.tif") == "scene_B04.tif"
    assert safe_name("..%2F..%2Fetc%2Fpasswd") == "_.._etc_passwd"
    assert safe_name("") == safe_name("...") == "download"
    assert len(safe_name("a" * 500)) == 128


class _Site:
    """A small real web site on 127.0.0.1: files, redirects, and a response that stops after its headers."""

    def __init__(self) -> None:
        self.files: dict[str, bytes] = {"/a.txt": b"hello"}
        self.release = threading.Event()
        site = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                if self.path.startswith("/hop/"):
                    left = int(self.path.rsplit("/", 1)[1])
                    self.send_response(302)
                    self.send_header("Location", f"/hop/{left - 1}" if left > 0 else "/a.txt")
                    self.end_headers()
                elif self.path.startswith("/to?"):
                    self.send_response(307)
                    self.send_header("Location", self.path.split("?", 1)[1])
                    self.end_headers()
                elif self.path == "/host":
                    body = self.headers["Host"].encode()
                    self.send_response(200)
                    self.send_header("Content-Length", str(len(body)))
                    self.end_headers()
                    self.wfile.write(body)
                elif self.path == "/short":
                    self.send_response(200)
                    self.send_header("Content-Length", "100")
                    self.end_headers()
                    self.wfile.write(b"only this")
                elif self.path == "/slow":
                    self.send_response(200)
                    self.send_header("Content-Length", "1")
                    self.end_headers()
                    self.wfile.flush()
                    site.release.wait(30)
                elif self.path in site.files:
                    body = site.files[self.path]
                    self.send_response(200)
                    if self.path != "/chunked":
                        self.send_header("Content-Length", str(len(body)))
                    self.end_headers()
                    self.wfile.write(body)
                else:
                    self.send_error(404)

            def log_message(self, *args: Any) -> None:
                pass

        self.server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"


@pytest.fixture(scope="module")
def site() -> Iterator[_Site]:
    site = _Site()
    threading.Thread(target=site.server.serve_forever, daemon=True).start()
    try:
        yield site
    finally:
        site.release.set()
        site.server.shutdown()


def test_a_fetch_writes_a_whole_file_named_after_the_url(site: _Site, tmp_path: Path) -> None:
    path = Fetcher(LOCAL).fetch_to(f"{site.url}/a.txt", tmp_path / "in")
    assert path == tmp_path / "in" / "a.txt" and path.read_bytes() == b"hello"
    assert path.stat().st_mode & 0o777 == 0o600
    assert sorted(p.name for p in (tmp_path / "in").iterdir()) == ["a.txt"]


def test_redirects_are_followed_and_counted(site: _Site) -> None:
    fetcher = Fetcher(LOCAL)
    assert fetcher.fetch_bytes(f"{site.url}/hop/{MAX_REDIRECTS - 1}") == b"hello"
    with pytest.raises(FetchError, match=f"more than {MAX_REDIRECTS} redirects"):
        fetcher.fetch_bytes(f"{site.url}/hop/{MAX_REDIRECTS}")


def test_each_redirect_is_checked_again(site: _Site) -> None:
    url = f"{site.url}/to?http://169.254.169.254/latest/meta-data/"
    with pytest.raises(Refused, match=r"redirected to http://169.254.169.254/.* a cloud metadata address"):
        Fetcher(LOCAL).fetch_bytes(url)
    with pytest.raises(FetchError, match=r"redirected to file:///etc/passwd.*only http"):
        Fetcher(LOCAL).fetch_bytes(f"{site.url}/to?file:///etc/passwd")


def test_bytes_are_capped_whether_announced_or_not(site: _Site, tmp_path: Path) -> None:
    site.files["/ten"] = b"0123456789"
    site.files["/chunked"] = b"0123456789"  # sent without Content-Length: counted as it arrives
    small = Fetcher(FetchPolicy(allow=["127.0.0.1"], max_bytes=9))
    with pytest.raises(FetchError, match="is 10 bytes, more than the 9 bytes allowed"):
        small.fetch_to(f"{site.url}/ten", tmp_path)
    with pytest.raises(FetchError, match="more than the 9 bytes allowed"):
        small.fetch_to(f"{site.url}/chunked", tmp_path)
    assert list(tmp_path.iterdir()) == []  # no partial file


def test_a_download_that_breaks_off_or_stalls_fails(site: _Site) -> None:
    with pytest.raises(FetchError, match="broke off"):
        Fetcher(LOCAL).fetch_bytes(f"{site.url}/short")
    site.release.clear()
    with pytest.raises(FetchError, match=r"took longer than the 0.5 s allowed \(ADES_FETCH_TIMEOUT\)"):
        Fetcher(FetchPolicy(allow=["127.0.0.1"], timeout=0.5)).fetch_bytes(f"{site.url}/slow")
    site.release.set()


def test_a_callers_own_caps_are_not_told_as_settings(site: _Site) -> None:
    site.files["/ten"] = b"0123456789"
    with pytest.raises(FetchError, match=r"more than the 5 bytes allowed$"):
        Fetcher(LOCAL).fetch_bytes(f"{site.url}/ten", max_bytes=5)


def test_http_errors_are_reported(site: _Site) -> None:
    with pytest.raises(FetchError, match="answered 404"):
        Fetcher(LOCAL).fetch_bytes(f"{site.url}/missing")


def test_the_connection_goes_to_the_checked_address_not_to_a_second_lookup(site: _Site) -> None:
    """What defeats DNS rebinding: the name is never resolved again after the check. Here the check's answer for a
    name that resolves nowhere is the test server's address; the fetch reaches it, asking for the name."""
    port = int(site.url.rsplit(":", 1)[1])

    class Checked(Fetcher):
        def check(self, url: str) -> Target:
            return Target(url, "http", "rebound.invalid", port, "/host", ("127.0.0.1",))

    assert Checked().fetch_bytes("http://rebound.invalid/host") == f"rebound.invalid:{port}".encode()
