"""Who may reach a server: the bind check of `ades serve` and the Host allow-list (the live refusals are in
tests/security/test_exposure.py)."""

from __future__ import annotations

import pytest

from ades.api.hosts import HostPolicy, host_name
from ades.config import Settings
from ades.serve import ServeRefused, check_bind, is_loopback


def settings(**values: object) -> Settings:
    return Settings(_env_file=None, **values)


@pytest.mark.parametrize("host", ["127.0.0.1", "127.8.9.10", "::1", "[::1]", "localhost"])
def test_loopback_addresses(host: str) -> None:
    assert is_loopback(host)


@pytest.mark.parametrize("host", ["0.0.0.0", "::", "", "10.1.2.3", "192.168.0.1", "no-such-host.invalid"])
def test_other_addresses(host: str) -> None:
    assert not is_loopback(host)


def test_an_open_server_listens_on_loopback_only() -> None:
    check_bind(settings(), "127.0.0.1")
    with pytest.raises(ServeRefused, match="ADES_ALLOW_UNAUTHENTICATED_BIND"):
        check_bind(settings(), "0.0.0.0")
    check_bind(settings(allow_unauthenticated_bind=True), "0.0.0.0")
    check_bind(settings(auth_tokens_file="/etc/ades/tokens.yaml"), "0.0.0.0")
    check_bind(settings(auth_jwt_key="k" * 32), "::")


@pytest.mark.parametrize(("header", "name"), [("Example.COM.:8080", "example.com"), ("[::1]:5000", "::1"),
                                              ("127.0.0.1", "127.0.0.1"), ("::1", "::1")])
def test_host_names(header: str, name: str) -> None:
    assert host_name(header) == name


def test_the_default_names() -> None:
    policy = HostPolicy.for_server(settings(), "https://ades.example.org/", "127.0.0.1")
    for header in ("localhost:5000", "127.0.0.1:5000", "[::1]:5000", "ades.example.org", "ADES.example.org:443",
                   None):
        assert policy.allows(header), header
    for header in ("evil.example", "10.0.0.5:5000", "ades.example.org.evil.example", ""):
        assert not policy.allows(header), header


def test_every_interface_serves_any_ip_address_but_no_other_name() -> None:
    policy = HostPolicy.for_server(settings(), "http://0.0.0.0:5000", "0.0.0.0")
    assert policy.allows("10.0.0.5:5000") and policy.allows("[fe80::1]:5000")
    assert not policy.allows("evil.example:5000")


def test_more_names_and_any() -> None:
    more = HostPolicy.for_server(settings(allowed_hosts=["ades.internal"]), "http://127.0.0.1:5000", "127.0.0.1")
    assert more.allows("ades.internal:5000") and not more.allows("other.internal")
    assert HostPolicy.for_server(settings(allowed_hosts=["*"]), "http://127.0.0.1:5000").allows("anything")
