"""Bearer tokens and what the server writes about them, tried as an attacker would (issue 21, auth and logs): a JWT
without `exp` or living too long, an HMAC key short enough to guess, a tokens file that goes missing or breaks, a
token in the access log, and /metrics without a token."""

from __future__ import annotations

import logging
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import jwt
import pytest
import requests
import yaml

from ades.config import Settings
from tests.e2e.conftest import LiveServer, serve_app
from tests.helpers import assert_problem
from tests.security.serving import cleanup, served

pytestmark = pytest.mark.integration

KEY = "a-shared-hs256-secret-that-is-long-enough-" + "x" * 8
TOKENS = {"alice-token-0123456789": {"user": "alice"}}
ALICE = {"Authorization": "Bearer alice-token-0123456789"}
METRICS_TOKEN = "scraper-token-0123456789"
DAY = 86_400


def hs256(claims: dict[str, Any], key: str = KEY) -> dict[str, str]:
    return {"Authorization": "Bearer " + jwt.encode({"sub": "carol", **claims}, key, algorithm="HS256")}


@pytest.fixture(scope="module")
def tokens_file(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("auth") / "tokens.yaml"
    path.write_text(yaml.safe_dump(TOKENS), encoding="utf-8")
    return path


@pytest.fixture(scope="module")
def secured(es_url: str, tokens_file: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[LiveServer]:
    settings = Settings(_env_file=None, es_url=es_url, index_prefix=f"sec-{uuid.uuid4().hex[:8]}-",
                        data_dir=tmp_path_factory.mktemp("secured") / "data", event_sink="direct",
                        auth_tokens_file=tokens_file, auth_jwt_key=KEY, metrics_token=METRICS_TOKEN)
    yield from serve_app(settings, workers=1)


def test_a_jwt_without_exp_is_refused(secured: LiveServer) -> None:
    now = int(time.time())
    assert secured.get("/jobs", headers=hs256({"exp": now + 600})).status_code == 200
    body = assert_problem(secured.get("/jobs", headers=hs256({"iat": now})), 401, "unauthorized")
    assert "exp" in body["detail"]


def test_a_jwt_living_longer_than_the_maximum_age_is_refused(secured: LiveServer) -> None:
    now = int(time.time())
    assert secured.get("/jobs", headers=hs256({"iat": now, "exp": now + DAY})).status_code == 200
    for claims in ({"iat": now, "exp": now + 30 * DAY}, {"exp": now + 30 * DAY},
                   {"iat": now - 300 * DAY, "exp": now + 600}):
        body = assert_problem(secured.get("/jobs", headers=hs256(claims)), 401, "unauthorized")
        assert "ADES_AUTH_JWT_MAX_AGE" in body["detail"], claims


def test_a_short_hmac_key_stops_the_start(es_url: str, tmp_path: Path) -> None:
    short = "guessable-12"
    server = served(es_url, tmp_path, ADES_AUTH_JWT_KEY=short)
    try:
        code = server.start().outcome()
        if code is None:  # what it did before: a key anyone can brute-force signs tokens the server accepts
            token = hs256({"exp": int(time.time()) + 600, "roles": ["admin"]}, short)
            answer = requests.get(server.url + "/jobs", headers=token, timeout=30).status_code
            pytest.fail(f"ades serve started with a {len(short)}-byte HMAC key; a token signed with it got {answer}")
        output = server.output()
        assert code == 1, output
        assert "ADES_AUTH_JWT_KEY" in output and "32 bytes" in output, output
        assert short not in output and "Traceback" not in output, output
    finally:
        cleanup(server)


def test_a_missing_or_broken_tokens_file_denies_every_request(secured: LiveServer, tokens_file: Path,
                                                               caplog: pytest.LogCaptureFixture) -> None:
    assert secured.get("/jobs", headers=ALICE).status_code == 200
    good = tokens_file.read_text()
    try:
        with caplog.at_level(logging.ERROR, logger="ades.api.auth"):
            tokens_file.unlink()
            body = assert_problem(secured.get("/jobs", headers=ALICE), 503, "service-unavailable")
            assert "tokens file" in body["detail"] and str(tokens_file) not in body["detail"]
            assert any(str(tokens_file) in r.getMessage() for r in caplog.records), caplog.text
            caplog.clear()
            # a broken edit (the parser's message would quote the line, token included)
            tokens_file.write_text("eve-token-0123456789: {user: eve, roles: [admin]\n", encoding="utf-8")
            assert_problem(secured.get("/jobs", headers=ALICE), 503, "service-unavailable")
            assert_problem(secured.get("/jobs", headers={"Authorization": "Bearer eve-token-0123456789"}), 503,
                           "service-unavailable")
            assert any(str(tokens_file) in r.getMessage() for r in caplog.records), caplog.text
            assert "eve-token" not in caplog.text
        tokens_file.write_text(good, encoding="utf-8")
        assert secured.get("/jobs", headers=ALICE).status_code == 200
    finally:
        tokens_file.write_text(good, encoding="utf-8")


def test_metrics_need_a_token_when_auth_is_on(secured: LiveServer) -> None:
    assert_problem(secured.get("/metrics"), 401, "unauthorized")
    assert_problem(secured.get("/metrics", headers={"Authorization": "Bearer wrong"}), 401, "unauthorized")
    assert "ades_jobs" in secured.get("/metrics", headers=ALICE).text
    scraper = {"Authorization": f"Bearer {METRICS_TOKEN}"}
    assert "ades_jobs" in secured.get("/metrics", headers=scraper).text
    assert_problem(secured.get("/jobs", headers=scraper), 401, "unauthorized")  # the scraper's token opens nothing else
    document = secured.get("/openapi").json()
    assert document["paths"]["/metrics"]["get"].get("security") != []
    assert "401" in document["paths"]["/metrics"]["get"]["responses"]


def test_no_credential_in_any_log_line(es_url: str, tmp_path: Path) -> None:
    """`ades serve` with its access log on, as it ships: credentials sent every way a client might."""
    tokens = tmp_path / "tokens.yaml"
    tokens.write_text(yaml.safe_dump({"alice-token-0123456789": {"user": "alice"}}), encoding="utf-8")
    server = served(es_url, tmp_path, ADES_AUTH_TOKENS_FILE=str(tokens))
    secrets = ["alice-token-0123456789", "basic-password-secret", "query-token-secret", "referer-token-secret"]
    try:
        assert server.start().outcome() is None, server.output()
        http = requests.Session()
        http.trust_env = False
        url = server.url + "/jobs"
        assert http.get(url, headers=ALICE, timeout=30).status_code == 200
        http.get(url, auth=("alice-token-0123456789", ""), timeout=30)  # the token as a Basic user name
        http.get(url, auth=("alice", "basic-password-secret"), timeout=30)
        http.get(url, params={"access_token": "query-token-secret", "token": "query-token-secret"}, timeout=30)
        http.get(url + "?query-token-secret", timeout=30)
        http.get(url, headers={**ALICE, "Referer": "https://user:referer-token-secret@elsewhere.example/"
                                                   "?token=referer-token-secret"}, timeout=30)
        http.get(url, headers={"Authorization": "Bearer alice-token-0123456789.x.y"}, timeout=30)  # a bad "JWT"
    finally:
        server.stop()
        cleanup(server)
    output = server.output()
    assert output.count('"GET /jobs') >= 7, output  # the access log is on, and wrote every request
    leaked = [secret for secret in secrets if secret in output]
    assert not leaked, f"{leaked} in the server's output:\n{output[-3000:]}"
