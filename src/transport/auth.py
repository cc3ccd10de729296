"""Authentication and authorization, written once for every service on both transports.

Callers send a bearer JWT (`authorization: Bearer <token>`, a header on REST, metadata on gRPC) whose space-separated
`scope` claim must hold the scope the RPC declares in its service's method table (GrpcMethod.scope). One verifier checks
it for both servers, so a bad token is the same domain error on both: Unauthenticated (missing, expired, forged) or
PermissionDenied (valid, without the scope). Clients attach tokens from a token source through the client factory.
Health, reflection, /healthz, metrics and the OpenAPI docs are not RPCs of a method table, so they stay open.

Configuration (AuthConfig.from_env): FXPLAT_AUTH = dev (default) | on | off; FXPLAT_AUTH_SECRET (HS256) or
FXPLAT_AUTH_PUBLIC_KEY (RS256, a PEM file) to verify; FXPLAT_AUTH_PRIVATE_KEY (PEM file) to mint RS256 tokens;
FXPLAT_SERVICE_TOKEN, a ready token for calls between services when they cannot mint their own;
FXPLAT_AUTH_ACCEPT_SECRET, a second HS256 secret whose tokens are accepted too (never used to sign), for rotating the
secret without a failed call (docs/deployment.md).
"""
from __future__ import annotations

import os
import re
import secrets
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field, replace
from pathlib import Path

import grpc
import httpx
import jwt
from fastapi import APIRouter, FastAPI, Request, Security
from fastapi.security import HTTPBearer

from services.common import errors as E

MODES = ("dev", "on", "off")
SECRET_FILE = "auth-secret"  # dev mode's generated secret, in the data directory
MIN_SECRET_CHARS = 32  # HS256 with a short secret can be brute-forced offline from any token
LEEWAY_S = 10  # clock skew tolerated between the minting and the verifying host
SERVICE_SUBJECT = "fxplat-service"

TokenSource = Callable[[], str]  # returns the bearer token to send now


class AuthConfigError(ValueError):
    """Auth cannot be set up as configured; the message says what to set."""


# --- tokens ----------------------------------------------------------------------------------------------------------

@dataclass(frozen=True)
class Signer:
    key: str = field(repr=False)  # HS256 secret or RS256 private key (PEM); never in a log line or traceback
    algorithm: str

    def mint(self, *, sub: str, scopes: list[str] | tuple[str, ...], ttl_s: float) -> str:
        now = int(time.time())
        claims = {"sub": sub, "scope": " ".join(scopes), "iat": now, "exp": now + max(1, int(ttl_s))}
        return jwt.encode(claims, self.key, algorithm=self.algorithm)


class MintedTokens:
    """A token source that holds the signing key: one token, re-minted when a fifth of its life remains."""

    def __init__(self, signer: Signer, *, sub: str, scopes: list[str], ttl_s: float = 3600.0) -> None:
        self._signer, self._sub, self._scopes, self._ttl = signer, sub, list(scopes), ttl_s
        self._token, self._renew_at = "", 0.0

    def __call__(self) -> str:
        now = time.monotonic()
        if now >= self._renew_at:
            self._token = self._signer.mint(sub=self._sub, scopes=self._scopes, ttl_s=self._ttl)
            self._renew_at = now + 0.8 * self._ttl
        return self._token


def static_token(token: str) -> TokenSource:
    return lambda: token


def parse_ttl(text: str) -> int:
    """'90' or '90s', '15m', '1h', '7d' -> seconds; ValueError with an example otherwise."""
    match = re.fullmatch(r"\s*(\d+)\s*([smhd]?)\s*", text)
    seconds = int(match[1]) * {"": 1, "s": 1, "m": 60, "h": 3600, "d": 86400}[match[2]] if match else 0
    if seconds <= 0:
        raise ValueError(f"bad ttl {text!r}: expected a positive duration such as 30s, 15m, 1h or 7d")
    return seconds


# --- verifying -------------------------------------------------------------------------------------------------------

class TokenVerifier:
    """Checks the `authorization` value of one call against the scope its RPC requires.

    Each distinct token is verified once and its verdict kept (services resend the same token on every call, and a
    signature check costs ~35 µs with HS256, ~100 µs with RS256): a good token as (exp, scopes), with expiry still
    checked on every call; a bad one (forged, malformed, expired) as its error, which cannot change for this key.
    Tokens not valid yet (nbf/iat ahead) are never kept. The oldest verdicts go first when the table is full."""

    _CACHE_MAX = 1024

    def __init__(self, key: object, algorithm: str, *, also: object = None) -> None:
        self._key, self._algorithm = key, algorithm
        self._also = also  # a second key tokens may be signed with (key rotation)
        self._verdicts: dict[str, tuple[float, frozenset[str]] | E.Unauthenticated] = {}

    def check(self, authorization: str | None, scope: str) -> None:
        if not authorization:
            raise E.Unauthenticated(f"missing bearer token (requires scope {scope})", reason="TOKEN_MISSING")
        kind, _, token = authorization.partition(" ")
        if kind.lower() != "bearer" or not token.strip():
            raise E.Unauthenticated("authorization must be 'Bearer <token>'", reason="TOKEN_MALFORMED")
        exp, scopes = self._verify(token.strip())
        if time.time() > exp + LEEWAY_S:
            raise E.Unauthenticated("token expired", reason="TOKEN_EXPIRED")
        if scope not in scopes:
            raise E.PermissionDenied(f"requires scope {scope}", reason="SCOPE_MISSING", metadata={"scope": scope})

    def _verify(self, token: str) -> tuple[float, frozenset[str]]:
        verdict = self._verdicts.get(token)
        if verdict is None:
            verdict = self._judge(token)
            if not isinstance(verdict, _NotYet):
                if len(self._verdicts) >= self._CACHE_MAX:
                    del self._verdicts[next(iter(self._verdicts))]  # the oldest
                self._verdicts[token] = verdict
        if isinstance(verdict, E.Unauthenticated):
            raise E.Unauthenticated(verdict.message, reason=verdict.reason)  # a fresh error per call
        return verdict

    def _judge(self, token: str) -> tuple[float, frozenset[str]] | E.Unauthenticated:
        try:
            claims = self._decode(token)
        except jwt.ExpiredSignatureError:
            return E.Unauthenticated("token expired", reason="TOKEN_EXPIRED")
        except jwt.ImmatureSignatureError as exc:
            return _NotYet(f"invalid token: {exc}", reason="TOKEN_INVALID")
        except jwt.InvalidTokenError as exc:
            return E.Unauthenticated(f"invalid token: {exc}", reason="TOKEN_INVALID")
        if isinstance(claims["exp"], bool) or not isinstance(claims["exp"], (int, float)):  # PyJWT takes "123" too
            return E.Unauthenticated("invalid token: exp must be a number (RFC 7519 NumericDate)",
                                     reason="TOKEN_INVALID")
        return float(claims["exp"]), frozenset(str(claims.get("scope", "")).split())

    def _decode(self, token: str) -> dict:
        def decode(key: object) -> dict:
            return jwt.decode(token, key, algorithms=[self._algorithm], leeway=LEEWAY_S,
                              options={"require": ["exp", "sub"]})

        try:
            return decode(self._key)
        except jwt.InvalidSignatureError:
            if self._also is None:
                raise
        return decode(self._also)  # signed with the other key of a rotation, or forged


class _NotYet(E.Unauthenticated):
    """A token whose nbf/iat lies ahead: refused now, but it may become valid, so its verdict is not kept."""


# --- configuration ---------------------------------------------------------------------------------------------------

def _read_pem(variable: str, env: Mapping[str, str]) -> str | None:
    path = env.get(variable)
    if not path:
        return None
    try:
        return Path(path).expanduser().read_text()
    except OSError as exc:
        raise AuthConfigError(f"{variable}: cannot read {path}: {exc.strerror}") from None


@dataclass(frozen=True)
class AuthConfig:
    mode: str = "dev"
    secret: str | None = field(default=None, repr=False)  # HS256 shared secret
    public_key: str | None = field(default=None, repr=False)  # RS256 verification key (PEM)
    private_key: str | None = field(default=None, repr=False)  # RS256 signing key (PEM)
    service_token: str | None = field(default=None, repr=False)  # a ready token for calls between services
    accept_secret: str | None = field(default=None, repr=False)  # HS256: also accepted, never signs (rotation)
    secret_file: Path | None = None  # where dev mode's secret came from

    @classmethod
    def from_env(cls, mode: str | None = None, env: Mapping[str, str] = os.environ) -> "AuthConfig":
        mode = (mode or env.get("FXPLAT_AUTH") or "dev").strip().lower()
        if mode not in MODES:
            raise AuthConfigError(f"FXPLAT_AUTH must be one of {', '.join(MODES)}, not {mode!r}")
        config = cls(mode, env.get("FXPLAT_AUTH_SECRET") or None, _read_pem("FXPLAT_AUTH_PUBLIC_KEY", env),
                     _read_pem("FXPLAT_AUTH_PRIVATE_KEY", env), env.get("FXPLAT_SERVICE_TOKEN") or None,
                     env.get("FXPLAT_AUTH_ACCEPT_SECRET") or None)
        if config.accept_secret is not None and (len(config.accept_secret) < MIN_SECRET_CHARS or not config.secret):
            raise AuthConfigError("FXPLAT_AUTH_ACCEPT_SECRET (a second HS256 secret, accepted while rotating) needs "
                                  f"FXPLAT_AUTH_SECRET beside it, and at least {MIN_SECRET_CHARS} characters")
        if config.secret is not None and len(config.secret) < MIN_SECRET_CHARS:
            raise AuthConfigError(f"FXPLAT_AUTH_SECRET must be at least {MIN_SECRET_CHARS} characters "
                                  "(e.g. `python -c 'import secrets; print(secrets.token_hex(32))'`)")
        if config.secret is not None and (config.public_key or config.private_key):
            raise AuthConfigError("set FXPLAT_AUTH_SECRET (HS256) or an RS256 key pair, not both")
        return config

    @property
    def enabled(self) -> bool:
        return self.mode != "off"

    def with_dev_secret(self, data_dir: Path, *, create: bool) -> "AuthConfig":
        """Dev mode without a configured key: the secret in `<data_dir>/auth-secret`, generated (mode 0600) on first
        use when `create` (services starting), only read otherwise (the CLI minting its tokens)."""
        if self.mode != "dev" or self.secret or self.public_key or self.private_key:
            return self
        path = Path(data_dir) / SECRET_FILE
        if create:
            try:
                fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
            except FileExistsError:
                pass
            else:
                with os.fdopen(fd, "w") as out:
                    out.write(secrets.token_hex(32) + "\n")
        try:
            return replace(self, secret=path.read_text().strip(), secret_file=path)
        except FileNotFoundError:
            return self

    def for_serving(self, data_dir: Path) -> "AuthConfig":
        """The config services start with, or AuthConfigError saying what is missing."""
        config = self.with_dev_secret(data_dir, create=True)
        if not config.enabled:
            return config
        if not (config.secret or config.public_key or config.private_key):
            raise AuthConfigError("FXPLAT_AUTH=on needs FXPLAT_AUTH_SECRET (HS256) or FXPLAT_AUTH_PUBLIC_KEY (RS256 "
                                  "PEM file) to verify tokens; FXPLAT_AUTH=dev generates a secret, =off disables auth")
        if config.signer() is None and not config.service_token:
            raise AuthConfigError("with only FXPLAT_AUTH_PUBLIC_KEY, services cannot sign their calls to each other: "
                                  "set FXPLAT_SERVICE_TOKEN, or FXPLAT_AUTH_PRIVATE_KEY to mint")
        return config

    def verifier(self) -> TokenVerifier | None:
        """None when auth is off."""
        if not self.enabled:
            return None
        if self.secret:
            return TokenVerifier(self.secret, "HS256", also=self.accept_secret)
        if self.public_key:
            return TokenVerifier(self.public_key, "RS256")
        if self.private_key:
            from cryptography.hazmat.primitives import serialization

            return TokenVerifier(serialization.load_pem_private_key(self.private_key.encode(), None).public_key(),
                                 "RS256")
        raise AuthConfigError("auth is on but no key is configured (see AuthConfig.for_serving)")

    def signer(self) -> Signer | None:
        if self.secret:
            return Signer(self.secret, "HS256")
        if self.private_key:
            return Signer(self.private_key, "RS256")
        return None

    def service_tokens(self, scopes: list[str]) -> TokenSource | None:
        """What services send on their calls to each other: FXPLAT_SERVICE_TOKEN, else a token they mint with
        `scopes`; None when auth is off."""
        if not self.enabled:
            return None
        if self.service_token:
            return static_token(self.service_token)
        signer = self.signer()
        return MintedTokens(signer, sub=SERVICE_SUBJECT, scopes=scopes) if signer else None

    def describe(self) -> str:
        """One line for the startup log."""
        if not self.enabled:
            return "auth OFF (FXPLAT_AUTH=off): every call is accepted without a token"
        how = "HS256 shared secret" if self.secret else "RS256 key"
        if self.mode == "dev" and self.secret_file:
            return (f"auth dev mode: tokens signed with the secret in {self.secret_file}; get one with "
                    "`fxplat token --scope market:read` (the fxplat CLI mints its own)")
        return f"auth {self.mode}: bearer tokens verified with the {how}"


# --- the two servers -------------------------------------------------------------------------------------------------

def scope_table(methods) -> dict[str, str]:
    """RPC name -> required scope, from a service's method table."""
    return {m.name: m.scope for m in methods}


def include_guarded(app: FastAPI, router: APIRouter, verifier: TokenVerifier | None, scopes: Mapping[str, str]) -> None:
    """Mount a service's REST router with every route checked against the scope of its RPC (each route is named
    after its gRPC method), and document the bearer scheme, the scopes and the 401/403 answers in OpenAPI."""
    from transport.rest_app import Problem

    unscoped = [route.name for route in router.routes if not scopes.get(route.name)]
    if unscoped:  # fail at startup rather than serve a route nobody declared a scope for
        raise RuntimeError(f"REST routes without an RPC, so without a scope: {', '.join(unscoped)}")
    description = ("A JWT in `Authorization: Bearer <token>`; its space-separated `scope` claim must include the "
                   "operation's scope: " + ", ".join(f"{name} `{scope}`" for name, scope in scopes.items()) + ".")

    class ScopedBearer(HTTPBearer):
        """The bearer scheme as OpenAPI documents it, checking the token against the route's scope itself: one
        dependency per request rather than a scope check depending on the scheme (FastAPI's dependency solving was
        the largest part of a small REST call; see docs/benchmarks.md)."""

        async def __call__(self, request: Request) -> None:  # type: ignore[override]
            if verifier is not None:
                verifier.check(request.headers.get("authorization"), scopes[request.scope["route"].name])

    require_scope = ScopedBearer(scheme_name="bearerAuth", bearerFormat="JWT", auto_error=False,
                                 description=description)

    responses = {status: {"model": Problem, "description": text, "content": {"application/problem+json": {}}}
                 for status, text in ((401, "Missing, expired or invalid bearer token"),
                                      (403, "The token lacks the scope this operation requires"))}
    app.include_router(router, dependencies=[Security(require_scope)], responses=responses)


# --- the client side -------------------------------------------------------------------------------------------------

def _bearer(tokens: TokenSource) -> str:
    return f"Bearer {tokens()}"


class BearerChannel:
    """A grpc.aio channel whose unary and server-streaming calls carry the bearer token in `authorization`, unless a
    call brings its own. Not a grpc.aio interceptor: grpc.aio runs an intercepted call through a second call object
    with its own callbacks, ~70 µs of the caller's CPU per call (measured: 523 vs 449 µs per small call, p50 +60 µs),
    to add one metadata pair. Everything else is the channel's own (close, get_state, channel_ready, ...)."""

    def __init__(self, channel: grpc.aio.Channel, tokens: TokenSource) -> None:
        self._channel, self._tokens = channel, tokens

    def unary_unary(self, *args, **kwargs) -> "_Bearing":
        return _Bearing(self._channel.unary_unary(*args, **kwargs), self._tokens)

    def unary_stream(self, *args, **kwargs) -> "_Bearing":
        return _Bearing(self._channel.unary_stream(*args, **kwargs), self._tokens)

    def __getattr__(self, name: str):
        return getattr(self._channel, name)

    async def __aenter__(self) -> "BearerChannel":
        return self

    async def __aexit__(self, *exc) -> None:
        await self._channel.close()


class _Bearing:
    """A stub's callable for one method, adding the token (see BearerChannel)."""

    __slots__ = ("_call", "_tokens")

    def __init__(self, call, tokens: TokenSource) -> None:
        self._call, self._tokens = call, tokens

    def __call__(self, request, *, metadata=None, **kwargs):
        if not metadata:
            metadata = (("authorization", _bearer(self._tokens)),)
        elif not any(key == "authorization" for key, _ in metadata):
            metadata = (*metadata, ("authorization", _bearer(self._tokens)))
        return self._call(request, metadata=metadata, **kwargs)


class BearerAuth(httpx.Auth):
    """Adds the `authorization` header to every request, unless the request brings its own."""

    def __init__(self, tokens: TokenSource) -> None:
        self._tokens = tokens

    def auth_flow(self, request: httpx.Request):
        if "authorization" not in request.headers:
            request.headers["authorization"] = _bearer(self._tokens)
        yield request
