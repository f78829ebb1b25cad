"""Bearer-token auth over HTTP against live servers: a tokens file plus HS256 JWTs (one server), RS256 JWTs verified
with a PEM public key read from a file (another). Two users and an admin on every job route, the deployer role on
deploy/replace/undeploy, 401 with `WWW-Authenticate: Bearer` for missing, unknown, forged and expired tokens, and
the open mode's log line."""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import logging
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import jwt
import pytest
import yaml
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa

from ades.api.auth import AuthConfigError, roles_of
from ades.app import close_app, create_app
from ades.config import Settings
from ades.jobs.folder import JobFolder
from ades.store import make_client
from ades.store.setup import drop_indexes
from tests.e2e.conftest import LiveServer, serve_app
from tests.helpers import EXAMPLES, assert_problem

pytestmark = pytest.mark.integration

SECRET = "e2e-hs256-shared-secret-" + "x" * 24
AUDIENCE = "ades-e2e"
TOKENS = {
    "alice-token": {"user": "alice"},
    "bob-token": {"user": "bob", "roles": []},
    "root-token": {"user": "root", "roles": ["admin"]},
    "dave-token": {"user": "dave", "roles": ["deployer"]},
}
ASYNC = {"Prefer": "respond-async"}
TWO_STEP = (EXAMPLES / "two-step" / "two-step.cwl").read_text()
CWL_YAML = {"Content-Type": "application/cwl+yaml"}


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


ALICE, BOB, ROOT, DAVE = (bearer(f"{name}-token") for name in ("alice", "bob", "root", "dave"))


def hs256(claims: dict[str, Any], secret: str = SECRET) -> str:
    return jwt.encode({"aud": AUDIENCE, "exp": int(time.time()) + 600, **claims}, secret, algorithm="HS256")


def assert_401(response: Any, error: str | None = "invalid_token") -> dict[str, Any]:
    body = assert_problem(response, 401, "unauthorized")
    challenge = response.headers.get("WWW-Authenticate", "")
    assert challenge.startswith("Bearer"), response.headers
    if error:
        assert f'error="{error}"' in challenge
    return body


def wait_done(server: LiveServer, job_id: str, headers: dict[str, str]) -> dict[str, Any]:
    return server.wait_status(job_id, headers=headers)


def run_echo(server: LiveServer, headers: dict[str, str], message: str, labels: list[str]) -> str:
    response = server.post("/processes/echo/execution", headers={**headers, **ASYNC},
                           json={"inputs": {"message": message}, "labels": labels})
    assert response.status_code == 201, response.text
    job_id = response.json()["jobID"]
    assert wait_done(server, job_id, headers)["status"] == "successful"
    return job_id


def stored(server: LiveServer, job_id: str) -> dict[str, Any]:
    return server.context.job_store.get(job_id)


def count_jobs(server: LiveServer) -> int:
    store = server.context.job_store
    store.refresh()
    return int(store.client.count(index=store.index)["count"])


def file_path_of(server: LiveServer, job_id: str) -> str:
    """The /files/ path of the echo job's output (relative to its outputs folder)."""
    folder = JobFolder(server.settings.data_dir, job_id)
    outputs = folder.saved_outputs()
    assert outputs is not None
    return str(Path(outputs["out"]["path"]).resolve().relative_to(folder.outputs.resolve()))


# --- servers ---------------------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def tokens_file(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("auth") / "tokens.yaml"
    path.write_text(yaml.safe_dump(TOKENS), encoding="utf-8")
    return path


@pytest.fixture(scope="module")
def secured(e2e_settings: Settings, tokens_file: Path) -> Iterator[LiveServer]:
    """Tokens file and HS256 JWTs with a required audience."""
    settings = e2e_settings.model_copy(update={
        "auth_tokens_file": tokens_file, "auth_jwt_key": SECRET, "auth_jwt_audience": AUDIENCE})
    yield from serve_app(settings)


@pytest.fixture(scope="module")
def rsa_keys(tmp_path_factory: pytest.TempPathFactory) -> tuple[Any, Path, Any]:
    """(private key, file holding the public key as PEM, another private key)."""
    private = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    other = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    pem = private.public_key().public_bytes(serialization.Encoding.PEM,
                                            serialization.PublicFormat.SubjectPublicKeyInfo)
    path = tmp_path_factory.mktemp("rsa") / "public.pem"
    path.write_bytes(pem)
    return private, path, other


@pytest.fixture(scope="module")
def rs_server(e2e_settings: Settings, rsa_keys: tuple[Any, Path, Any],
              tmp_path_factory: pytest.TempPathFactory) -> Iterator[LiveServer]:
    """JWTs only, RS256, the public key read from a file (`@path`), roles in a nested claim."""
    _, public_path, _ = rsa_keys
    settings = e2e_settings.model_copy(update={
        "index_prefix": f"e2e-{uuid.uuid4().hex[:10]}-", "data_dir": tmp_path_factory.mktemp("rs") / "data",
        "auth_jwt_key": f"@{public_path}", "auth_roles_claim": "realm_access.roles"})
    yield from serve_app(settings)


@pytest.fixture(scope="module")
def two_users(secured: LiveServer) -> dict[str, str]:
    """One finished echo job of alice and one of bob, both labelled `shared`."""
    return {"alice": run_echo(secured, ALICE, "from alice", ["shared", "alice"]),
            "bob": run_echo(secured, BOB, "from bob", ["shared", "bob"])}


# --- 401 and public routes -------------------------------------------------------------------------------------
def test_no_or_bad_token_is_401_and_writes_nothing(secured: LiveServer) -> None:
    before = count_jobs(secured)
    routes = [("get", "/jobs"), ("get", "/jobs/some-job"), ("get", "/processes"), ("get", "/processes/echo"),
              ("post", "/processes/echo/execution"), ("post", "/processes/echo/jobs"), ("delete", "/jobs/some-job")]
    for method, path in routes:
        call = getattr(secured, method)
        kwargs: dict[str, Any] = {"json": {"inputs": {"message": "x"}}} if method == "post" else {}
        body = assert_401(call(path, **kwargs), error=None)
        assert "Bearer" in body["detail"]
        assert_401(call(path, headers=bearer("no-such-token"), **kwargs))
        assert_401(call(path, headers={"Authorization": "Basic YWxpY2U6cHc="}, **kwargs), error="invalid_request")
    assert_401(secured.post("/processes", data=TWO_STEP, headers=CWL_YAML), error=None)
    assert count_jobs(secured) == before
    assert_problem(secured.get("/processes/two-step", headers=DAVE), 404, "no-such-process")


def test_public_routes_need_no_token(secured: LiveServer) -> None:
    for path in ("/", "/conformance", "/openapi"):
        assert secured.get(path).status_code == 200, path
    assert_401(secured.get("/metrics"), error=None)  # counts of every user's jobs: a token (tests/security)
    document = secured.get("/openapi").json()
    assert document["components"]["securitySchemes"]["bearer"] == {
        "type": "http", "scheme": "bearer", "description": document["components"]["securitySchemes"]["bearer"][
            "description"]}
    assert "401" in document["paths"]["/jobs"]["get"]["responses"]
    assert "403" in document["paths"]["/processes"]["post"]["responses"]
    assert document["paths"]["/conformance"]["get"]["security"] == []
    assert "security" not in document["paths"]["/metrics"]["get"]
    # an unknown route is a 404 (nothing behind it to protect), not a 401
    assert_problem(secured.get("/no/such/route"), 404, "not-found")


# --- job isolation ---------------------------------------------------------------------------------------------
def _job_routes(server: LiveServer, job_id: str) -> list[str]:
    return [f"/jobs/{job_id}", f"/jobs/{job_id}/results", f"/jobs/{job_id}/results?f=stac",
            f"/jobs/{job_id}/results/out", f"/jobs/{job_id}/files/{file_path_of(server, job_id)}",
            f"/jobs/{job_id}/logs"]


def test_user_id_is_recorded_on_every_job(secured: LiveServer, two_users: dict[str, str]) -> None:
    for user, job_id in two_users.items():
        assert stored(secured, job_id)["user-id"] == user


def test_every_job_route_shows_a_job_to_its_owner_and_admins_only(secured: LiveServer,
                                                                  two_users: dict[str, str]) -> None:
    for owner, other in ((ALICE, BOB), (BOB, ALICE)):
        job_id = two_users["alice" if owner is ALICE else "bob"]
        for path in _job_routes(secured, job_id):
            assert secured.get(path, headers=owner).status_code == 200, path
            assert secured.get(path, headers=ROOT).status_code == 200, path
            body = assert_problem(secured.get(path, headers=other), 404, "no-such-job")
            # the same answer as for a job that does not exist: ids cannot be probed
            missing = assert_problem(secured.get(path.replace(job_id, "no-such-job-id"), headers=other), 404,
                                     "no-such-job")
            assert body["detail"].replace(job_id, "ID") == missing["detail"].replace("no-such-job-id", "ID")
    # the content is the owner's: alice's log says what alice sent
    assert "from alice" in secured.get(f"/jobs/{two_users['alice']}/logs", headers=ALICE).text


def test_job_list_and_its_filters_show_only_own_jobs(secured: LiveServer, two_users: dict[str, str]) -> None:
    queries: list[dict[str, str]] = [{}, {"labels": "shared"}, {"status": "successful"}, {"processID": "echo"},
                                     {"labels": "shared", "status": "successful", "processID": "echo"},
                                     {"labels": "bob"}, {"labels": "alice"}]
    secured.context.job_store.refresh()  # search sees the jobs' last status updates (ES refreshes every second)
    for user, headers in (("alice", ALICE), ("bob", BOB)):
        mine, theirs = two_users[user], two_users["bob" if user == "alice" else "alice"]
        for params in queries:
            body = secured.get("/jobs", headers=headers, params=params).json()
            ids = {job["jobID"] for job in body["jobs"]}
            assert theirs not in ids, (user, params)
            assert (mine in ids) == (params.get("labels") in (None, "shared", user)), (user, params, ids)
            assert all(stored(secured, job_id)["user-id"] == user for job_id in ids)
            assert body["numberMatched"] == len(ids)  # the count, too, is of own jobs only
        paged = secured.get("/jobs", headers=headers, params={"limit": 1}).json()
        assert len(paged["jobs"]) == 1 and stored(secured, paged["jobs"][0]["jobID"])["user-id"] == user
        html = secured.get("/jobs", headers=headers, params={"f": "html"}).text
        assert mine in html and theirs not in html
    everyone = {job["jobID"] for job in secured.get("/jobs", headers=ROOT, params={"labels": "shared"}).json()["jobs"]}
    assert set(two_users.values()) <= everyone


def test_dismiss_only_own_jobs(secured: LiveServer) -> None:
    alices = run_echo(secured, ALICE, "to dismiss", ["dismiss"])
    bobs = run_echo(secured, BOB, "to keep", ["dismiss"])
    files = file_path_of(secured, bobs)
    assert_problem(secured.delete(f"/jobs/{bobs}", headers=ALICE), 404, "no-such-job")
    # nothing happened to bob's job: same status, files still there
    assert secured.get(f"/jobs/{bobs}/files/{files}", headers=BOB).status_code == 200
    assert secured.get(f"/jobs/{bobs}", headers=BOB).json()["message"] == stored(secured, bobs)["message"]
    assert "files removed" not in secured.get(f"/jobs/{bobs}", headers=BOB).json()["message"]
    own = secured.delete(f"/jobs/{alices}", headers=ALICE)
    assert own.status_code == 200 and "files removed" in own.json()["message"]
    by_admin = secured.delete(f"/jobs/{bobs}", headers=ROOT)
    assert by_admin.status_code == 200 and "files removed" in by_admin.json()["message"]
    assert secured.get(f"/jobs/{bobs}/files/{files}", headers=BOB).status_code == 404


# --- the deployer role -----------------------------------------------------------------------------------------
def test_deploy_replace_undeploy_need_the_deployer_role(secured: LiveServer) -> None:
    body = assert_problem(secured.post("/processes", data=TWO_STEP, headers={**ALICE, **CWL_YAML}), 403, "forbidden")
    assert "alice" in body["detail"] and "deployer" in body["detail"]
    assert_problem(secured.get("/processes/two-step", headers=ALICE), 404, "no-such-process")  # nothing written
    assert secured.post("/processes", data=TWO_STEP, headers={**DAVE, **CWL_YAML}).status_code == 201
    assert_problem(secured.put("/processes/two-step", data=TWO_STEP, headers={**ALICE, **CWL_YAML}), 403, "forbidden")
    assert_problem(secured.delete("/processes/two-step", headers=ALICE), 403, "forbidden")
    assert_problem(secured.delete("/processes/two-step", headers=BOB), 403, "forbidden")
    assert secured.get("/processes/two-step", headers=ALICE).status_code == 200  # still there, anyone may read it
    assert secured.put("/processes/two-step", data=TWO_STEP, headers={**DAVE, **CWL_YAML}).status_code == 204
    assert secured.put("/processes/two-step", data=TWO_STEP, headers={**ROOT, **CWL_YAML}).status_code == 204
    assert secured.delete("/processes/two-step", headers=DAVE).status_code == 204
    assert_problem(secured.get("/processes/two-step", headers=DAVE), 404, "no-such-process")


# --- JWTs --------------------------------------------------------------------------------------------------------
def test_hs256_jwt_user_and_roles(secured: LiveServer, two_users: dict[str, str]) -> None:
    carol = bearer(hs256({"sub": "carol"}))
    job_id = run_echo(secured, carol, "from carol", ["carol"])
    assert stored(secured, job_id)["user-id"] == "carol"
    assert {j["jobID"] for j in secured.get("/jobs", headers=carol).json()["jobs"]} == {job_id}
    assert_problem(secured.get(f"/jobs/{two_users['alice']}", headers=carol), 404, "no-such-job")
    assert_problem(secured.get(f"/jobs/{job_id}", headers=ALICE), 404, "no-such-job")
    assert_problem(secured.post("/processes", data=TWO_STEP, headers={**carol, **CWL_YAML}), 403, "forbidden")
    admin = bearer(hs256({"sub": "carol-admin", "roles": ["admin"]}))
    assert secured.get(f"/jobs/{job_id}", headers=admin).status_code == 200
    scoped = bearer(hs256({"sub": "erin", "roles": "deployer other"}))  # a space-separated string works too
    assert secured.post("/processes", data=TWO_STEP, headers={**scoped, **CWL_YAML}).status_code == 201
    assert secured.delete("/processes/two-step", headers=scoped).status_code == 204


def test_bad_hs256_jwts_are_401(secured: LiveServer) -> None:
    now = int(time.time())
    expired = assert_401(secured.get("/jobs", headers=bearer(hs256({"sub": "carol", "exp": now - 3600}))))
    assert "expired" in expired["detail"]
    cases = {
        "wrong secret": hs256({"sub": "carol"}, secret="not-the-secret-" + "y" * 24),
        "wrong audience": hs256({"sub": "carol", "aud": "someone-else"}),
        "no audience": jwt.encode({"sub": "carol", "exp": now + 600}, SECRET, algorithm="HS256"),
        "no subject": hs256({"name": "carol"}),
        "not yet valid": hs256({"sub": "carol", "nbf": now + 3600}),
        "unsigned": jwt.encode({"sub": "carol", "aud": AUDIENCE, "exp": now + 600}, None, algorithm="none"),
        "tampered": _tamper(hs256({"sub": "carol"}), {"sub": "root", "roles": ["admin"]}),
    }
    for case, token in cases.items():
        body = assert_401(secured.get("/jobs", headers=bearer(token)))
        assert token not in body["detail"], case


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).decode().rstrip("=")


def _tamper(token: str, claims: dict[str, Any]) -> str:
    header, _, signature = token.split(".")
    return ".".join([header, _b64(json.dumps({"aud": AUDIENCE, "exp": int(time.time()) + 600, **claims}).encode()),
                     signature])


def test_rs256_jwt_with_a_public_key_from_a_file(rs_server: LiveServer, rsa_keys: tuple[Any, Path, Any]) -> None:
    private, public_path, other = rsa_keys
    now = int(time.time())

    def rs256(claims: dict[str, Any], key: Any = private) -> dict[str, str]:
        return bearer(jwt.encode({"exp": now + 600, **claims}, key, algorithm="RS256"))

    assert rs_server.get("/jobs", headers=rs256({"sub": "frank"})).json()["jobs"] == []
    deployer = rs256({"sub": "frank", "realm_access": {"roles": ["deployer"]}})
    plain = rs256({"sub": "frank", "roles": ["deployer"]})  # the configured claim is realm_access.roles
    assert_problem(rs_server.post("/processes", data=TWO_STEP, headers={**plain, **CWL_YAML}), 403, "forbidden")
    assert rs_server.post("/processes", data=TWO_STEP, headers={**deployer, **CWL_YAML}).status_code == 201
    assert "expired" in assert_401(rs_server.get("/jobs", headers=rs256({"sub": "frank", "exp": now - 3600})))[
        "detail"]
    assert_401(rs_server.get("/jobs", headers=rs256({"sub": "frank"}, key=other)))
    # algorithm confusion: HS256 signed with the public key's PEM text as the HMAC secret must not pass
    pem = public_path.read_bytes()
    signing_input = _b64(b'{"alg":"HS256","typ":"JWT"}') + "." + _b64(json.dumps(
        {"sub": "mallory", "exp": now + 600, "realm_access": {"roles": ["admin"]}}).encode())
    forged = signing_input + "." + _b64(hmac.new(pem, signing_input.encode(), hashlib.sha256).digest())
    assert_401(rs_server.get("/jobs", headers=bearer(forged)))
    # a server with only JWTs configured has no tokens file: a plain token is simply unknown
    assert_401(rs_server.get("/jobs", headers=ALICE))


# --- configuration -----------------------------------------------------------------------------------------------
def test_tokens_file_changes_apply_without_restart(secured: LiveServer, tokens_file: Path) -> None:
    erin = bearer("erin-token")
    assert_401(secured.get("/jobs", headers=erin))
    tokens_file.write_text(yaml.safe_dump({**TOKENS, "erin-token": {"user": "erin", "roles": ["admin"]}}),
                           encoding="utf-8")
    assert secured.get("/jobs", headers=erin).status_code == 200
    tokens_file.write_text("this: [is not: a tokens file", encoding="utf-8")  # a broken edit fails closed
    assert_problem(secured.get("/jobs", headers=erin), 503, "service-unavailable")  # (tests/security/test_auth.py)
    tokens_file.write_text(yaml.safe_dump(TOKENS), encoding="utf-8")
    assert_401(secured.get("/jobs", headers=erin))
    assert secured.get("/jobs", headers=ALICE).status_code == 200


def test_open_server_says_so_and_acts_as_anonymous(es_url: str, tmp_path: Path,
                                                   caplog: pytest.LogCaptureFixture) -> None:
    settings = Settings(es_url=es_url, index_prefix=f"e2e-{uuid.uuid4().hex[:10]}-", data_dir=tmp_path / "data",
                        event_sink="direct", auth_tokens_file=None, auth_jwt_key=None)
    with caplog.at_level(logging.WARNING, logger="ades.api.auth"):
        app = create_app(settings, reconcile=False)
    try:
        assert any("authentication is OFF" in r.getMessage() and "'anonymous'" in r.getMessage()
                   for r in caplog.records), caplog.text
        client = app.test_client()
        assert client.get("/jobs").status_code == 200
        assert client.get("/jobs", headers=bearer("anything")).status_code == 200  # tokens are ignored
    finally:
        close_app(app)
        es = make_client(settings)
        drop_indexes(es, settings)
        es.close()


@pytest.mark.parametrize("update", [
    {"auth_tokens_file": "missing"},
    {"auth_tokens_file": "list"},
    {"auth_tokens_file": "numeric"},
    {"auth_jwt_key": "private"},
    {"auth_jwt_key": "@/no/such/key.pem"},
    {"auth_jwt_key": "secret", "auth_jwt_algorithms": ["RS256"]},
])
def test_unusable_auth_settings_stop_the_start(update: dict[str, Any], tmp_path: Path, es_url: str) -> None:
    """Failing to start beats starting open."""
    files = {"missing": tmp_path / "none.yaml", "list": tmp_path / "list.yaml", "numeric": tmp_path / "num.yaml"}
    (tmp_path / "list.yaml").write_text("- alice\n- bob\n")
    (tmp_path / "num.yaml").write_text("12345: {user: alice}\n")
    values = dict(update)
    if "auth_tokens_file" in values:
        values["auth_tokens_file"] = files[values["auth_tokens_file"]]
    if values.get("auth_jwt_key") == "private":
        key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
        values["auth_jwt_key"] = key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                                   serialization.NoEncryption()).decode()
    settings = Settings(es_url=es_url, index_prefix=f"e2e-{uuid.uuid4().hex[:10]}-", data_dir=tmp_path / "data",
                        event_sink="direct", **values)
    with pytest.raises(AuthConfigError) as err:
        create_app(settings, reconcile=False)
    assert "12345" not in str(err.value)  # never a token in the message


def test_roles_claim_shapes() -> None:
    assert roles_of({"roles": ["admin", 3, "deployer"]}, "roles") == ["admin", "deployer"]
    assert roles_of({"scope": "deployer read"}, "scope") == ["deployer", "read"]
    assert roles_of({"realm_access": {"roles": ["admin"]}}, "realm_access.roles") == ["admin"]
    assert roles_of({"realm_access": ["admin"]}, "realm_access.roles") == []
    assert roles_of({}, "roles") == []


def test_depends_on_another_users_job_is_no_such_job(secured: LiveServer, two_users: dict[str, str]) -> None:
    body = {"inputs": {"message": "after"}, "dependsOn": [two_users["alice"]]}
    before = count_jobs(secured)
    refused = secured.post("/processes/echo/execution", json=body, headers={**BOB, "Prefer": "respond-async"})
    assert refused.status_code == 400 and f"no job {two_users['alice']}" in refused.json()["detail"]
    assert count_jobs(secured) == before
    accepted = secured.post("/processes/echo/execution", json=body, headers={**ALICE, "Prefer": "respond-async"})
    assert accepted.status_code == 201, accepted.text
    assert wait_done(secured, accepted.json()["jobID"], ALICE)["status"] == "successful"
