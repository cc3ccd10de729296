"""The CLI's credentials: the CA it trusts (FXPLAT_TLS_CA) and the bearer token it sends — FXPLAT_TOKEN if set, else,
in dev mode, a token it mints with every scope from the services' secret (FXPLAT_AUTH_SECRET or the file `fxplat up`
keeps in the data directory). `fxplat token` mints one for other clients (curl, buf, scripts)."""
from __future__ import annotations

import os
from pathlib import Path

from transport import config
from fxplat.catalog import scopes
from services.common.errors import InvalidArgument
from transport.auth import SECRET_FILE, AuthConfig, AuthConfigError, MintedTokens, TokenSource, parse_ttl, static_token
from transport.client_factory import ClientFactory

CLI_SUBJECT = "fxplat-cli"


def _auth(data_dir: Path | None = None) -> AuthConfig:
    return AuthConfig.from_env().with_dev_secret(config.data_dir(data_dir), create=False)


def token_source() -> TokenSource | None:
    if token := os.environ.get("FXPLAT_TOKEN"):
        return static_token(token)
    try:
        auth = _auth()
    except AuthConfigError as exc:
        raise InvalidArgument(str(exc), field="FXPLAT_AUTH") from None
    signer = auth.signer() if auth.mode == "dev" else None
    return MintedTokens(signer, sub=CLI_SUBJECT, scopes=scopes()) if signer else None


def client_factory() -> ClientFactory:
    """What `fxplat call`, `analyze` and `status` reach the services through."""
    return ClientFactory(ca_file=config.tls_ca(), tls=config.tls_on(), token_source=token_source())


def mint(scope: list[str], *, ttl: str, sub: str, data_dir: Path | None = None) -> str:
    """`fxplat token`: a token for `scope`, or ValueError saying what is wrong."""
    known = scopes()
    if unknown := [s for s in scope if s not in known]:
        raise ValueError(f"unknown scope {', '.join(unknown)}; scopes: {', '.join(known)}")
    seconds = parse_ttl(ttl)
    signer = _auth(data_dir).signer()
    if signer is None:
        raise ValueError(f"no key to sign with: set FXPLAT_AUTH_SECRET or FXPLAT_AUTH_PRIVATE_KEY, or (dev mode) run "
                         f"`fxplat up` once to create {config.data_dir(data_dir) / SECRET_FILE}")
    return signer.mint(sub=sub, scopes=scope, ttl_s=seconds)
