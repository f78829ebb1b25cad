"""Who is asking: optional bearer tokens, from a tokens file or as JWTs verified with a configured key.

With neither `ADES_AUTH_TOKENS_FILE` nor `ADES_AUTH_JWT_KEY` set, the server is open: every request acts as the
single user `anonymous`, with the roles of ADES_ANONYMOUS_ROLES (none by default: it may run processes and see its
own jobs, not deploy nor see the jobs of others), and the server says so in a log line when it starts (`ades serve`
then listens on loopback only, ades.serve). Otherwise every route but the public ones (landing page, conformance,
OpenAPI) needs `Authorization: Bearer <token>` (/metrics also takes ADES_METRICS_TOKEN, which opens nothing else); a
missing or bad token is a 401 OGC exception with `WWW-Authenticate: Bearer`. A JWT must expire, within
ADES_AUTH_JWT_MAX_AGE; a tokens file that cannot be used refuses every request (503) until it is fixed.

Roles: `admin` sees and dismisses every job (others see only their own: a job of someone else is a 404, the same
answer as a job that does not exist, so ids cannot be probed); `deployer` may deploy, replace and undeploy
processes (an admin may too). Anyone authenticated may list processes and execute them.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import logging
import threading
import time
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import jwt
import yaml
from cryptography import x509
from cryptography.hazmat.primitives.asymmetric import ec, ed448, ed25519, rsa
from cryptography.hazmat.primitives.serialization import load_pem_public_key
from flask import Flask, current_app, g, request
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from ades.api.errors import ApiProblem
from ades.config import Settings

log = logging.getLogger(__name__)

ADMIN = "admin"
DEPLOYER = "deployer"
ANONYMOUS_USER = "anonymous"
PUBLIC_BLUEPRINTS = frozenset({"ades_core", "ades_assets"})
"""Blueprints served without a token: the discovery documents (landing, conformance, OpenAPI) and what the HTML
pages load (a browser sends no bearer token for a stylesheet)."""
METRICS_BLUEPRINT = "ades_metrics"
"""/metrics: counts of every user's jobs by process, so a token like any other route, or ADES_METRICS_TOKEN."""
JWT_LEEWAY = 30
"""Seconds of clock skew tolerated on exp/nbf/iat: token issuers and this server rarely share a clock exactly."""
MIN_HMAC_BYTES = 32
"""Shortest HMAC secret accepted: RFC 7518 (3.2) asks HS256 keys of at least 256 bits; shorter ones can be guessed
offline from any one token."""
REALM = 'Bearer realm="ades"'


class AuthConfigError(ValueError):
    """The auth settings cannot work (unreadable tokens file, unusable key): the server must not start open."""


class Principal(BaseModel):
    """The user a request acts for, and their roles."""

    model_config = ConfigDict(frozen=True)

    user: str = Field(min_length=1, max_length=256)
    roles: frozenset[str] = frozenset()

    @property
    def is_admin(self) -> bool:
        return ADMIN in self.roles

    def has(self, role: str) -> bool:
        return role in self.roles or self.is_admin

    def can_see(self, job: Mapping[str, Any]) -> bool:
        return self.is_admin or job.get("user-id") == self.user


class TokenEntry(BaseModel):
    model_config = ConfigDict(extra="forbid")

    user: str = Field(min_length=1, max_length=256)
    roles: list[str] = Field(default_factory=list)


def _unauthorized(detail: str, error: str | None = "invalid_token") -> ApiProblem:
    challenge = REALM + (f', error="{error}"' if error else "")
    return ApiProblem(401, "unauthorized", detail, "Unauthorized", {"WWW-Authenticate": challenge})


def _digest(token: str) -> bytes:
    # looked up by digest, not by the token itself: a dict probe on the secret would leak timing about it
    return hashlib.sha256(token.encode()).digest()


# --- tokens file -----------------------------------------------------------------------------------------------
class TokensFile:
    """`{token: {user, roles}}` in YAML or JSON, re-read when the file changes (tokens rotate without a restart).

    A file that goes missing, becomes unreadable or is saved broken fails closed: keeping the last good tokens would
    keep a token the operator just removed working. Until the file is good again every lookup raises ApiProblem 503
    (the server cannot tell who anyone is; a 401 would tell clients their token is wrong when it may not be), and
    the log says so, with the file and the reason, at least every REPORT_EVERY seconds."""

    REPORT_EVERY = 60.0

    def __init__(self, path: Path) -> None:
        self.path = path
        self._lock = threading.Lock()
        self._stamp: tuple[int, int] | None = None
        self._principals: dict[bytes, Principal] = {}
        self._broken: str | None = None
        self._reported = 0.0
        self._reload(strict=True)

    def _stat(self) -> tuple[int, int]:
        info = self.path.stat()
        return info.st_mtime_ns, info.st_size

    def _parse(self) -> dict[bytes, Principal]:
        try:
            text = self.path.read_text(encoding="utf-8")
        except UnicodeDecodeError:
            raise AuthConfigError(f"tokens file {self.path}: not UTF-8 text") from None
        try:
            raw = json.loads(text) if self.path.suffix.lower() == ".json" else yaml.safe_load(text)
        except (ValueError, yaml.YAMLError) as err:
            raise AuthConfigError(f"tokens file {self.path}: not valid YAML/JSON: {_where(err)}") from None
        if raw is None:
            raw = {}
        if not isinstance(raw, dict):
            raise AuthConfigError(f"tokens file {self.path}: must map each token to {{user, roles}}")
        principals: dict[bytes, Principal] = {}
        for token, value in raw.items():
            if not isinstance(token, str) or not token.strip():
                raise AuthConfigError(f"tokens file {self.path}: every token must be a non-empty string "
                                      f"(quote it in YAML), got a {type(token).__name__}")
            try:
                entry = TokenEntry.model_validate(value)
            except ValidationError as err:
                first = err.errors()[0]
                where = ".".join(str(p) for p in first["loc"]) or "entry"
                # the token itself is a secret: name the user or the position, never the key
                raise AuthConfigError(f"tokens file {self.path}: entry #{len(principals) + 1}: {where}: "
                                      f"{first['msg']}") from None
            principals[_digest(token)] = Principal(user=entry.user, roles=frozenset(entry.roles))
        return principals

    def _reload(self, strict: bool = False) -> None:
        stamp = None
        try:
            stamp = self._stat()
            if stamp == self._stamp:
                return
            principals = self._parse()
        except (OSError, AuthConfigError) as err:
            reason = (f"ADES_AUTH_TOKENS_FILE {self.path}: cannot be read ({err.strerror or err})"
                      if isinstance(err, OSError) else str(err))
            if strict:
                raise AuthConfigError(reason) from None
            # a file that cannot be read is tried again on the next request; a broken one once it changes
            self._principals, self._stamp = {}, (None if isinstance(err, OSError) else stamp)
            self._report(reason)
            return
        self._principals, self._stamp = principals, stamp
        if self._broken is not None:
            log.warning("tokens file %s is good again: %d tokens; requests are served again", self.path,
                        len(principals))
        elif not strict:
            log.info("tokens file %s reloaded: %d tokens", self.path, len(principals))
        self._broken = None

    def _report(self, reason: str) -> None:
        now = time.monotonic()
        if reason != self._broken or now - self._reported >= self.REPORT_EVERY:
            log.error("tokens file %s cannot be used, so EVERY request is refused (503) until it is fixed: %s",
                      self.path, reason)
            self._reported = now
        self._broken = reason

    def __len__(self) -> int:
        return len(self._principals)

    def lookup(self, token: str) -> Principal | None:
        """The principal of `token`, None if it is not in the file; ApiProblem 503 while the file is unusable."""
        with self._lock:
            self._reload()
            principals, broken = self._principals, self._broken
        if broken is not None:
            raise ApiProblem(503, "service-unavailable", "the server's tokens file cannot be read, so no token can be "
                             "checked: every request is refused until its operator fixes it", "Auth unavailable")
        return principals.get(_digest(token))


def _where(err: Exception) -> str:
    """Where a YAML/JSON parser stopped, without its excerpt of the text (which would quote a token)."""
    if isinstance(err, json.JSONDecodeError):
        return f"{err.msg} at line {err.lineno}, column {err.colno}"
    mark = getattr(err, "problem_mark", None)
    problem = getattr(err, "problem", None) or type(err).__name__
    return f"{problem} at line {mark.line + 1}, column {mark.column + 1}" if mark is not None else problem


# --- JWT -------------------------------------------------------------------------------------------------------
def _algorithm_family(key: Any) -> tuple[str, ...]:
    if isinstance(key, rsa.RSAPublicKey):
        return ("RS", "PS")
    if isinstance(key, ec.EllipticCurvePublicKey):
        return ("ES",)
    if isinstance(key, ed25519.Ed25519PublicKey | ed448.Ed448PublicKey):
        return ("EdDSA",)
    raise AuthConfigError(f"ADES_AUTH_JWT_KEY: unsupported public key type {type(key).__name__}")


def _read_key(value: str) -> str:
    if not value.startswith("@"):
        return value
    path = Path(value[1:]).expanduser()
    try:
        return path.read_text(encoding="utf-8").strip()
    except OSError as err:
        raise AuthConfigError(f"ADES_AUTH_JWT_KEY: cannot read {path}: {err.strerror or err}") from None


class JwtVerifier:
    """Verifies a JWT's signature with one key, then exp/nbf/iat (with leeway), the configured aud/iss, and that it
    expires and lives no longer than ADES_AUTH_JWT_MAX_AGE (a token without `exp` would work for ever once leaked).

    The accepted algorithms are narrowed to the key's kind, so a token signed with HS256 using the public key text
    as the HMAC secret (the classic algorithm confusion) is refused."""

    def __init__(self, settings: Settings) -> None:
        assert settings.auth_jwt_key is not None
        text = _read_key(settings.auth_jwt_key)
        if not text:
            raise AuthConfigError("ADES_AUTH_JWT_KEY is empty")
        self.key: Any
        if text.startswith("-----BEGIN"):
            self.key = self._public_key(text)
            families = _algorithm_family(self.key)
            self.kind = "public key"
        else:
            self.key = text
            families = ("HS",)
            self.kind = "shared secret"
        self.algorithms = [a for a in settings.auth_jwt_algorithms if a.startswith(families)]
        if not self.algorithms:
            raise AuthConfigError(f"ADES_AUTH_JWT_ALGORITHMS {settings.auth_jwt_algorithms} has none that fits a "
                                  f"{self.kind} ({'/'.join(families)}...)")
        if self.kind == "shared secret" and len(text.encode()) < MIN_HMAC_BYTES:
            raise AuthConfigError(f"ADES_AUTH_JWT_KEY: an HMAC secret must be at least {MIN_HMAC_BYTES} bytes (this "
                                  f"one has {len(text.encode())}): a shorter one can be guessed from any token it "
                                  "signed. Make one with `openssl rand -hex 32`, or give a PEM public key")
        self.max_age = settings.auth_jwt_max_age
        self.audience = settings.auth_jwt_audience
        self.issuer = settings.auth_jwt_issuer
        self.user_claim = settings.auth_user_claim
        self.roles_claim = settings.auth_roles_claim

    @staticmethod
    def _public_key(pem: str) -> Any:
        data = pem.encode()
        try:
            if "CERTIFICATE" in pem.split("\n", 1)[0]:
                return x509.load_pem_x509_certificate(data).public_key()
            return load_pem_public_key(data)
        except ValueError as err:
            raise AuthConfigError(f"ADES_AUTH_JWT_KEY: not a PEM public key or certificate ({err}); give the "
                                  "public half, never the private key") from None

    def verify(self, token: str) -> Principal:
        try:
            claims = jwt.decode(token, self.key, algorithms=self.algorithms, audience=self.audience,
                                issuer=self.issuer, leeway=JWT_LEEWAY, options={"require": [self.user_claim, "exp"]})
        except jwt.ExpiredSignatureError:
            raise _unauthorized("the token has expired") from None
        except jwt.PyJWTError as err:
            raise _unauthorized(f"the token was refused: {err}") from None
        issued = claims.get("iat")  # pyjwt checked that it is a number when present
        span = float(claims["exp"]) - (time.time() if issued is None else float(issued))
        if span > self.max_age + JWT_LEEWAY:
            raise _unauthorized(f"the token lives {span:.0f} s (exp - {'now' if issued is None else 'iat'}), longer "
                                f"than this server accepts (ADES_AUTH_JWT_MAX_AGE, {self.max_age:.0f} s)")
        user = claims.get(self.user_claim)
        if not isinstance(user, str) or not user.strip() or len(user) > 256:
            raise _unauthorized(f"the token's {self.user_claim!r} claim is not a user id")
        return Principal(user=user, roles=frozenset(roles_of(claims, self.roles_claim)))


def roles_of(claims: Mapping[str, Any], claim: str) -> list[str]:
    """Roles under `claim` (dots walk into objects, as in Keycloak's realm_access.roles): a list of strings or one
    space-separated string (the OAuth `scope` style); anything else is no roles."""
    value: Any = claims
    for part in claim.split("."):
        value = value.get(part) if isinstance(value, Mapping) else None
    if isinstance(value, str):
        return value.split()
    if isinstance(value, list):
        return [v for v in value if isinstance(v, str)]
    return []


# --- the authenticator ---------------------------------------------------------------------------------------
class Authenticator:
    def __init__(self, tokens: TokensFile | None = None, verifier: JwtVerifier | None = None,
                 anonymous_roles: frozenset[str] = frozenset(), metrics_token: str | None = None) -> None:
        self.tokens = tokens
        self.verifier = verifier
        self.anonymous = Principal(user=ANONYMOUS_USER, roles=anonymous_roles)
        self.metrics_digest = _digest(metrics_token) if metrics_token else None

    @classmethod
    def from_settings(cls, settings: Settings) -> Authenticator:
        tokens = TokensFile(Path(settings.auth_tokens_file).expanduser()) if settings.auth_tokens_file else None
        verifier = JwtVerifier(settings) if settings.auth_jwt_key else None
        metrics = settings.metrics_token.get_secret_value() if settings.metrics_token else None
        return cls(tokens, verifier, frozenset(settings.anonymous_roles), metrics)

    @property
    def enabled(self) -> bool:
        return self.tokens is not None or self.verifier is not None

    def describe(self) -> str:
        if not self.enabled:
            roles = ", ".join(sorted(self.anonymous.roles)) or "no role"
            return (f"authentication is OFF: the server is open and every request acts as user {ANONYMOUS_USER!r} "
                    f"with {roles} (ADES_ANONYMOUS_ROLES; set ADES_AUTH_TOKENS_FILE or ADES_AUTH_JWT_KEY to require "
                    "bearer tokens)")
        ways = []
        if self.tokens is not None:
            ways.append(f"tokens file {self.tokens.path} ({len(self.tokens)} tokens)")
        if self.verifier is not None:
            ways.append(f"JWTs ({', '.join(self.verifier.algorithms)}, {self.verifier.kind}"
                        + (f", audience {self.verifier.audience!r}" if self.verifier.audience else "") + ")")
        return "authentication is on: bearer tokens from " + " and ".join(ways)

    def is_metrics_token(self, header: str | None) -> bool:
        """Whether `header` carries ADES_METRICS_TOKEN (compared by digest, in constant time)."""
        scheme, _, token = (header or "").strip().partition(" ")
        return (self.metrics_digest is not None and scheme.lower() == "bearer"
                and hmac.compare_digest(_digest(token.strip()), self.metrics_digest))

    def authenticate_header(self, header: str | None) -> Principal:
        if not self.enabled:
            return self.anonymous
        if not header:
            raise _unauthorized("this server needs a bearer token: send `Authorization: Bearer <token>`", None)
        scheme, _, token = header.strip().partition(" ")
        token = token.strip()
        if scheme.lower() != "bearer" or not token:
            raise _unauthorized("the Authorization header must be `Bearer <token>`", "invalid_request")
        if self.tokens is not None:
            principal = self.tokens.lookup(token)
            if principal is not None:
                return principal
        if self.verifier is not None and token.count(".") == 2:
            return self.verifier.verify(token)
        raise _unauthorized("unknown bearer token")


def authenticate(req: Any = None) -> Principal:
    """The principal of a request (the current one by default), or ApiProblem 401."""
    req = req if req is not None else request
    authenticator: Authenticator = current_app.extensions["ades_auth"]
    return authenticator.authenticate_header(req.headers.get("Authorization"))


def current_principal() -> Principal:
    """Who the current request acts for (authenticated once per request, by the guard or on first use)."""
    principal = g.get("principal")
    if principal is None:
        principal = g.principal = authenticate()
    return principal


def require_role(role: str, action: str) -> Principal:
    principal = current_principal()
    if not principal.has(role):
        raise ApiProblem(403, "forbidden", f"user {principal.user!r} may not {action}: that needs the {role!r} role",
                         "Forbidden")
    return principal


def owner_filter() -> str | None:
    """The user whose jobs the current request may list: None (all) for an admin."""
    principal = current_principal()
    return None if principal.is_admin else principal.user


def _guard() -> None:
    # unknown routes (endpoint None) answer 404/405 without a token: there is nothing behind them to protect
    if request.endpoint is None or request.endpoint == "static" or request.blueprint in PUBLIC_BLUEPRINTS:
        return
    if request.blueprint == METRICS_BLUEPRINT:
        authenticator: Authenticator = current_app.extensions["ades_auth"]
        if authenticator.is_metrics_token(request.headers.get("Authorization")):
            return
    g.principal = authenticate()


def install(app: Flask, settings: Settings) -> Authenticator:
    """Authenticate every non-public request before anything else runs (no store access for a bad token).
    Raises AuthConfigError on settings that cannot work: failing to start beats starting open."""
    authenticator = Authenticator.from_settings(settings)
    app.extensions["ades_auth"] = authenticator
    if authenticator.enabled:
        log.info(authenticator.describe())
        if authenticator.verifier is None and authenticator.tokens is not None and not len(authenticator.tokens):
            log.warning("tokens file %s holds no token and no JWT key is set: every request will be refused",
                        authenticator.tokens.path)
    else:
        log.warning(authenticator.describe())
    app.before_request(_guard)
    return authenticator
