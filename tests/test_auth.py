"""Bearer tokens on both transports, checked once for every service (transport.auth): a missing, malformed, expired or
forged token is UNAUTHENTICATED / 401, a valid one without the RPC's scope PERMISSION_DENIED / 403, the same domain
exception whichever transport carried it; probes, docs and reflection stay open; service tokens carry an analysis
across every hop; RS256 tokens verify with the public key; configuration fails with a clear message."""
from __future__ import annotations

import asyncio
import base64
import hashlib
import hmac
import json
import os
import secrets
import stat
import time
from datetime import datetime, timezone

import grpc
import jwt
import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from grpc_health.v1 import health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha import reflection_pb2, reflection_pb2_grpc

from adapters.connect import connect
from adapters.core import last_call
from adapters.flags import Flags
from forex.market_analysis.v1 import market_analysis_pb2 as pb
from forex.market_analysis.v1 import market_analysis_pb2_grpc as pb_grpc
from fxplat import credentials
from fxplat.catalog import BuildContext, build_host, scopes
from transport.config import Endpoint
from fxplat.runner import start_services
from services.analysis_coordinator.models import AnalysisRequest
from services.backtesting.grpc import BacktestingGrpcClient
from services.backtesting.models import ListBacktestsQuery
from services.backtesting.rest import BacktestingRestClient
from services.causal_analysis.models import LeadLagRequest, SymbolPair
from services.common.errors import PermissionDenied, Unauthenticated
from services.common.market_types import TimeRange, Timeframe
from services.market_analysis.grpc import MarketAnalysisGrpcClient
from services.market_analysis.models import CandlesQuery
from services.market_analysis.rest import MarketAnalysisRestClient
from transport import errors
from transport.auth import AuthConfig, AuthConfigError, MintedTokens, static_token
from transport.client_factory import ClientFactory
from test_cli import run

QUERY = CandlesQuery("EURUSD", limit=5)
MARCH = TimeRange(datetime(2025, 3, 3, tzinfo=timezone.utc), datetime(2025, 4, 1, tzinfo=timezone.utc))


@pytest.fixture(scope="module")
async def bare():
    """Clients that send no token of their own: each test says exactly what goes in `authorization`."""
    f = ClientFactory()
    yield f
    await f.close()


def market_clients(host, factory, authorization: str | None) -> dict:
    md = (("authorization", authorization),) if authorization else ()
    return {"grpc": MarketAnalysisGrpcClient(factory.channel(host.grpc_target), metadata=md),
            "rest": MarketAnalysisRestClient(factory.http(host.rest_url), headers=dict(md))}


def bad_tokens(auth: AuthConfig) -> dict[str, tuple[str | None, type, str, str]]:
    """case -> (authorization, the error, its message, its reason), for a GetCandles call (scope market:read)."""
    now = int(time.time())
    expired = jwt.encode({"sub": "t", "scope": "market:read", "exp": now - 3600}, auth.secret, algorithm="HS256")
    forged = jwt.encode({"sub": "t", "scope": "market:read", "exp": now + 3600}, secrets.token_hex(32),
                        algorithm="HS256")
    other_scopes = auth.signer().mint(sub="t", scopes=["causal:read", "backtest:read"], ttl_s=60)
    return {
        "missing": (None, Unauthenticated, "missing bearer token (requires scope market:read)", "TOKEN_MISSING"),
        "malformed": ("Basic dXNlcjpwdw==", Unauthenticated, "authorization must be 'Bearer <token>'",
                      "TOKEN_MALFORMED"),
        "expired": (f"Bearer {expired}", Unauthenticated, "token expired", "TOKEN_EXPIRED"),
        "forged": (f"Bearer {forged}", Unauthenticated, "invalid token: Signature verification failed",
                   "TOKEN_INVALID"),
        "wrong scope": (f"Bearer {other_scopes}", PermissionDenied, "requires scope market:read", "SCOPE_MISSING"),
    }


@pytest.mark.parametrize("case", ["missing", "malformed", "expired", "forged", "wrong scope"])
async def test_a_bad_token_is_the_same_error_on_both_transports(market_host, bare, auth, case):
    authorization, error, message, reason = bad_tokens(auth)[case]
    clients = market_clients(market_host, bare, authorization)
    for wire in ("grpc", "rest"):
        with pytest.raises(error) as raised:
            await clients[wire].get_candles(QUERY)
        assert (raised.value.message, raised.value.reason) == (message, reason), wire

    # Raw: the gRPC status code, and the HTTP status with a problem+json body of the same code.
    mapping = errors.TABLE[error.code]
    md = (("authorization", authorization),) if authorization else ()
    stub = pb_grpc.MarketAnalysisServiceStub(bare.channel(market_host.grpc_target))
    with pytest.raises(grpc.aio.AioRpcError) as status:
        await stub.GetCandles(pb.GetCandlesRequest(symbol="EURUSD", limit=5), metadata=md, timeout=5)
    assert status.value.code() == mapping.grpc_code and status.value.details() == message
    resp = await bare.http(market_host.rest_url).get("/v1/candles/EURUSD", params={"limit": 5}, headers=dict(md))
    assert resp.status_code == mapping.http_status
    assert resp.headers["content-type"] == errors.PROBLEM_CONTENT_TYPE
    assert (resp.json()["code"], resp.json()["detail"], resp.json()["reason"]) == (error.code, message, reason)


async def test_the_right_scope_is_enough(market_host, bare, auth):
    token = auth.signer().mint(sub="reader", scopes=["market:read"], ttl_s=60)
    clients = market_clients(market_host, bare, f"Bearer {token}")
    pages = [await clients[wire].get_candles(QUERY) for wire in ("grpc", "rest")]
    assert len(pages[0].series) == len(pages[1].series) == 5


async def test_each_rpc_requires_its_own_scope(backtesting_host, bare, auth):
    """Backtesting reads need backtest:read, writes backtest:write: a read-only token lists but cannot delete."""
    md = (("authorization", f"Bearer {auth.signer().mint(sub='r', scopes=['backtest:read'], ttl_s=60)}"),)
    for client in (BacktestingGrpcClient(bare.channel(backtesting_host.grpc_target), metadata=md),
                   BacktestingRestClient(bare.http(backtesting_host.rest_url), headers=dict(md))):
        await client.list_backtests(ListBacktestsQuery(page_size=1))
        with pytest.raises(PermissionDenied) as raised:
            await client.delete_backtest("no-such-id")  # refused before the domain could say NOT_FOUND
        assert raised.value.message == "requires scope backtest:write"


async def test_the_factory_sends_its_token_on_both_transports(market_host, causal_host, auth, platform_flags):
    """No client class knows about tokens: the factory's token source is what every call sends."""
    token = auth.signer().mint(sub="reader", scopes=["market:read"], ttl_s=60)
    async with ClientFactory(token_source=static_token(token)) as factory:
        for wire in ("grpc", "rest"):
            market = connect("market_analysis", Endpoint(market_host.rest_url, market_host.grpc_target),
                             factory=factory, flags=platform_flags, force=wire)
            assert len((await market.get_candles(QUERY)).series) == 5
            causal = connect("causal_analysis", Endpoint(causal_host.rest_url, causal_host.grpc_target),
                             factory=factory, flags=platform_flags, force=wire)
            with pytest.raises(PermissionDenied, match="requires scope causal:read"):
                await causal.lead_lag(LeadLagRequest(SymbolPair("EURUSD", "GBPUSD")))
            assert last_call.get().transport == wire


async def test_a_factory_channel_adds_its_token_beside_a_calls_metadata_and_never_over_its_own(market_host, auth):
    """gRPC, unary and server-streaming: a call with other metadata gets the factory's token too; a call that brings
    its own `authorization` is sent with that one alone (here a token without the scope: refused)."""
    reader = auth.signer().mint(sub="reader", scopes=["market:read"], ttl_s=60)
    other = auth.signer().mint(sub="other", scopes=["backtest:read"], ttl_s=60)
    async with ClientFactory(token_source=static_token(reader)) as factory:
        stub = pb_grpc.MarketAnalysisServiceStub(factory.channel(market_host.grpc_target))
        request = pb.GetCandlesRequest(symbol="EURUSD", limit=5)
        page = await stub.GetCandles(request, metadata=(("x-request-id", "r-1"),), timeout=5)
        assert len(page.candles.time) == 5
        with pytest.raises(grpc.aio.AioRpcError) as refused:
            await stub.GetCandles(request, metadata=(("authorization", f"Bearer {other}"),), timeout=5)
        assert refused.value.code() == grpc.StatusCode.PERMISSION_DENIED
        stream = stub.StreamQuotes(pb.StreamQuotesRequest(symbols=["EURUSD"]),
                                   metadata=(("authorization", f"Bearer {other}"),), timeout=5)
        with pytest.raises(grpc.aio.AioRpcError) as refused:
            await stream.read()
        assert refused.value.code() == grpc.StatusCode.PERMISSION_DENIED
        stream = stub.StreamQuotes(pb.StreamQuotesRequest(symbols=["EURUSD"]), timeout=5)
        assert (await stream.read()).quotes  # the factory's token: served
        stream.cancel()


async def test_probes_docs_and_reflection_need_no_token(market_host, bare):
    http = bare.http(market_host.rest_url)
    for path in ("/healthz", "/readyz", "/metrics", "/openapi.json", "/docs"):
        assert (await http.get(path)).status_code == 200, path
    channel = bare.channel(market_host.grpc_target)
    health = await health_pb2_grpc.HealthStub(channel).Check(health_pb2.HealthCheckRequest(service=""), timeout=5)
    assert health.status == health_pb2.HealthCheckResponse.SERVING
    reflection = reflection_pb2_grpc.ServerReflectionStub(channel).ServerReflectionInfo(
        iter([reflection_pb2.ServerReflectionRequest(list_services="")]), timeout=5)
    listed = [s.name async for answer in reflection for s in answer.list_services_response.service]
    assert "forex.market_analysis.v1.MarketAnalysisService" in listed


ALL = "services:\n" + "".join(f"  {name}: {{grpc: {pct}}}\n" for name, pct in (
    ("market_analysis", 100), ("causal_analysis", 0), ("backtesting", 100), ("analysis_coordinator", 0)))


async def test_an_analysis_runs_end_to_end_on_service_tokens(data_dir, auth, tmp_path):
    """Four services whose calls to each other carry only their service token, reached by a caller whose token can
    run analyses and nothing else: every component call succeeds, over gRPC (market, backtesting) and REST (causal),
    so the caller's token was not what the services sent on."""
    path = tmp_path / "flags.yaml"
    path.write_text(ALL)
    flags = Flags(path, unleash_url="")
    names = ["market_analysis", "causal_analysis", "backtesting", "analysis_coordinator"]
    async with ClientFactory(token_source=auth.service_tokens(scopes())) as services_factory:
        hosts = await start_services(names, BuildContext(data_dir, services_factory, flags, auth=auth),
                                     host="127.0.0.1", ports={name: (0, 0) for name in names})
        try:
            caller = MintedTokens(auth.signer(), sub="analyst", scopes=["analysis:run"])
            async with ClientFactory(token_source=caller) as factory:
                coordinator = connect("analysis_coordinator", Endpoint(hosts[-1].rest_url, hosts[-1].grpc_target),
                                      factory=factory, flags=flags)
                analysis = await coordinator.run_analysis(AnalysisRequest(("EURUSD", "GBPUSD"), Timeframe.H1, MARCH))
                assert last_call.get().transport == "rest"
                with pytest.raises(PermissionDenied, match="requires scope analysis:read"):
                    await coordinator.get_analysis(analysis.id)
        finally:
            for svc in reversed(hosts):
                await svc.stop(grace=0)
            flags.close()
    assert analysis.failed_calls == 0 and len(analysis.calls) == 6
    assert {(c.service, c.transport) for c in analysis.calls} == {
        ("market_analysis", "grpc"), ("causal_analysis", "rest"), ("backtesting", "grpc")}


@pytest.fixture(scope="module")
def rsa_keys(tmp_path_factory) -> tuple[str, str]:
    """An RS256 key pair as PEM files: (private, public)."""
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    folder = tmp_path_factory.mktemp("rsa")
    private, public = folder / "private.pem", folder / "public.pem"
    private.write_bytes(key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                          serialization.NoEncryption()))
    public.write_bytes(key.public_key().public_bytes(serialization.Encoding.PEM,
                                                     serialization.PublicFormat.SubjectPublicKeyInfo))
    return str(private), str(public)


async def test_rs256_tokens_verify_with_the_public_key(data_dir, rsa_keys, tmp_path):
    private, public = rsa_keys
    signing = AuthConfig.from_env(env={"FXPLAT_AUTH": "on", "FXPLAT_AUTH_PRIVATE_KEY": private})
    token = signing.signer().mint(sub="rs", scopes=["market:read"], ttl_s=60)
    # The services hold only the public key, and a token minted elsewhere for their own calls.
    serving = AuthConfig.from_env(env={"FXPLAT_AUTH": "on", "FXPLAT_AUTH_PUBLIC_KEY": public,
                                       "FXPLAT_SERVICE_TOKEN": token}).for_serving(tmp_path)
    host = await build_host("market_analysis", BuildContext(data_dir, auth=serving), "127.0.0.1", 0, 0)
    await host.start()
    other = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    try:
        async with ClientFactory() as bare:
            for authorization in (f"Bearer {token}", f"Bearer {serving.service_tokens(scopes())()}"):
                for wire, client in market_clients(host, bare, authorization).items():
                    assert len((await client.get_candles(QUERY)).series) == 5, wire
            claims = {"sub": "x", "scope": "market:read", "exp": int(time.time()) + 60}
            for bad in (jwt.encode(claims, other, algorithm="RS256"),  # another key pair
                        _hs256(claims, open(public, "rb").read())):  # algorithm confusion: HMAC keyed by the public key
                for client in market_clients(host, bare, f"Bearer {bad}").values():
                    with pytest.raises(Unauthenticated, match="invalid token"):
                        await client.get_candles(QUERY)
    finally:
        await host.stop(grace=0)


def _hs256(claims: dict, key: bytes) -> str:
    """An HS256 JWT built by hand (PyJWT refuses PEM text as an HMAC key, as an attacker would not)."""
    def b64(data: bytes) -> str:
        return base64.urlsafe_b64encode(data).rstrip(b"=").decode()

    signing_input = f"{b64(json.dumps({'alg': 'HS256', 'typ': 'JWT'}).encode())}.{b64(json.dumps(claims).encode())}"
    return f"{signing_input}.{b64(hmac.new(key, signing_input.encode(), hashlib.sha256).digest())}"


def test_configuration_errors_say_what_to_set(tmp_path, rsa_keys):
    with pytest.raises(AuthConfigError, match="FXPLAT_AUTH must be one of dev, on, off"):
        AuthConfig.from_env(env={"FXPLAT_AUTH": "maybe"})
    with pytest.raises(AuthConfigError, match="at least 32 characters"):
        AuthConfig.from_env(env={"FXPLAT_AUTH_SECRET": "hunter2"})
    with pytest.raises(AuthConfigError, match="FXPLAT_AUTH=on needs FXPLAT_AUTH_SECRET"):
        AuthConfig.from_env(env={"FXPLAT_AUTH": "on"}).for_serving(tmp_path)
    with pytest.raises(AuthConfigError, match="set FXPLAT_SERVICE_TOKEN, or FXPLAT_AUTH_PRIVATE_KEY"):
        AuthConfig.from_env(env={"FXPLAT_AUTH": "on", "FXPLAT_AUTH_PUBLIC_KEY": rsa_keys[1]}).for_serving(tmp_path)
    with pytest.raises(AuthConfigError, match="FXPLAT_AUTH_PUBLIC_KEY: cannot read"):
        AuthConfig.from_env(env={"FXPLAT_AUTH_PUBLIC_KEY": str(tmp_path / "nope.pem")})
    assert not (tmp_path / "auth-secret").exists()  # only dev mode writes a secret
    off = AuthConfig.from_env(env={"FXPLAT_AUTH": "off"}).for_serving(tmp_path)
    assert off.verifier() is None and off.service_tokens(scopes()) is None


def test_dev_mode_generates_a_private_secret_once(tmp_path):
    first = AuthConfig.from_env(env={}).for_serving(tmp_path)
    path = tmp_path / "auth-secret"
    assert first.mode == "dev" and first.secret_file == path and len(first.secret) == 64
    assert stat.S_IMODE(os.stat(path).st_mode) == 0o600
    again = AuthConfig.from_env(env={}).for_serving(tmp_path)
    assert again.secret == first.secret  # reused on the next start: tokens minted before stay valid
    assert "fxplat token --scope market:read" in again.describe()
    assert AuthConfig.from_env(env={}).with_dev_secret(tmp_path / "elsewhere", create=False).secret is None


async def test_off_means_no_checks(data_dir, bare):
    host = await build_host("market_analysis", BuildContext(data_dir, auth=AuthConfig(mode="off")), "127.0.0.1", 0, 0)
    await host.start()
    try:
        for client in market_clients(host, bare, None).values():
            assert len((await client.get_candles(QUERY)).series) == 5
    finally:
        await host.stop(grace=0)


# --- the CLI ---------------------------------------------------------------------------------------------------------

def _cli_env(**env: str) -> dict[str, str]:
    """Nothing of the caller's own auth settings leaks into the CLI under test."""
    return {"FXPLAT_AUTH": "dev", "FXPLAT_AUTH_SECRET": "", "FXPLAT_TOKEN": "", **env}


async def test_fxplat_token_mints_what_the_services_accept(market_host, bare, auth):
    code, out, err = await run("token", "--scope", "market:read", "--scope", "causal:read", "--ttl", "5m", "--sub",
                               "alice", env=_cli_env(FXPLAT_AUTH_SECRET=auth.secret))
    assert code == 0, err
    claims = jwt.decode(out.strip(), auth.secret, algorithms=["HS256"])
    assert (claims["sub"], claims["scope"], claims["exp"] - claims["iat"]) == ("alice", "market:read causal:read", 300)
    for client in market_clients(market_host, bare, f"Bearer {out.strip()}").values():
        assert len((await client.get_candles(QUERY)).series) == 5


async def test_cli_auth_errors_say_what_to_set(auth, tmp_path, monkeypatch):
    no_key, up_without_key = await asyncio.gather(
        run("token", "--scope", "market:read", env=_cli_env(FXPLAT_DATA_DIR=str(tmp_path))),
        run("up", "--service", "market_analysis", "--data-dir", str(tmp_path), env=_cli_env(FXPLAT_AUTH="on")))
    no_key_message = ("no key to sign with: set FXPLAT_AUTH_SECRET or FXPLAT_AUTH_PRIVATE_KEY, or (dev mode) run "
                      f"`fxplat up` once to create {tmp_path / 'auth-secret'}")
    for (code, out, err), message in ((no_key, no_key_message),
                                      (up_without_key, "FXPLAT_AUTH=on needs FXPLAT_AUTH_SECRET")):
        assert code == 2 and out == "" and message in err and "Traceback" not in err, err
    # What `fxplat token` checks before signing (the same function, in-process).
    monkeypatch.setenv("FXPLAT_AUTH_SECRET", auth.secret)
    with pytest.raises(ValueError, match="bad ttl '1 fortnight': expected a positive duration such as 30s"):
        credentials.mint(["market:read"], ttl="1 fortnight", sub="x", data_dir=tmp_path)
    with pytest.raises(ValueError, match="unknown scope market:write; scopes: analysis:read, analysis:run"):
        credentials.mint(["market:write"], ttl="1h", sub="x", data_dir=tmp_path)


async def test_the_cli_mints_its_own_token_in_dev_mode(data_dir, tmp_path):
    """`fxplat up` in dev mode keeps its secret in the data directory; the CLI, pointed at the same directory, signs
    with it. Pointed elsewhere it has no token, and the error says how to get one."""
    served_from, elsewhere = tmp_path / "served", tmp_path / "elsewhere"
    served_from.mkdir()
    elsewhere.mkdir()
    dev = AuthConfig.from_env(env={}).for_serving(served_from)
    host = await build_host("market_analysis", BuildContext(data_dir, auth=dev), "127.0.0.1", 0, 0)
    await host.start()
    try:
        flags = tmp_path / "flags.yaml"
        flags.write_text("services:\n  market_analysis: {grpc: 100}\n")
        reach = {"FXPLAT_MARKET_ANALYSIS_REST_URL": host.rest_url,
                 "FXPLAT_MARKET_ANALYSIS_GRPC_TARGET": host.grpc_target, "FXPLAT_FLAGS": str(flags)}
        signed, without = await asyncio.gather(*(
            run("call", "market_analysis", "ListSymbols", "--transport", transport,
                env=_cli_env(FXPLAT_DATA_DIR=str(folder), **reach))
            for transport, folder in (("grpc", served_from), ("rest", elsewhere))))
    finally:
        await host.stop(grace=0)
    code, out, err = signed
    assert code == 0 and "EURUSD" in out, err
    code, out, err = without
    assert code == 1 and "UNAUTHENTICATED: missing bearer token (requires scope market:read)" in err
    assert "set FXPLAT_TOKEN" in err and out == ""


def test_cached_verdicts_keep_every_auth_semantic(monkeypatch):
    """Each token is verified once and its verdict kept: a good token still expires on time and still needs the scope;
    a forged one stays refused with the same error, call after call; one not valid yet is not kept."""
    import time as _time

    import transport.auth as auth_mod
    from transport.auth import LEEWAY_S, Signer, TokenVerifier

    secret = secrets.token_hex(32)
    verifier = TokenVerifier(secret, "HS256")
    good = Signer(secret, "HS256").mint(sub="t", scopes=["market:read"], ttl_s=60)
    for _ in range(3):
        verifier.check(f"Bearer {good}", "market:read")
        with pytest.raises(PermissionDenied):
            verifier.check(f"Bearer {good}", "backtest:write")
    now = _time.time()
    monkeypatch.setattr(auth_mod.time, "time", lambda: now + 60 + LEEWAY_S + 1)  # past exp: the cached verdict expires
    with pytest.raises(Unauthenticated, match="expired"):
        verifier.check(f"Bearer {good}", "market:read")
    monkeypatch.undo()

    forged = Signer(secrets.token_hex(32), "HS256").mint(sub="t", scopes=["market:read"], ttl_s=60)
    errors = []
    for _ in range(2):
        with pytest.raises(Unauthenticated) as caught:
            verifier.check(f"Bearer {forged}", "market:read")
        errors.append(caught.value)
    assert errors[0] == errors[1] and errors[0] is not errors[1] and errors[0].reason == "TOKEN_INVALID"

    soon = jwt.encode({"sub": "t", "scope": "market:read", "nbf": int(_time.time()) + LEEWAY_S + 30,
                       "exp": int(_time.time()) + 3600}, secret, algorithm="HS256")
    with pytest.raises(Unauthenticated, match="not yet valid"):
        verifier.check(f"Bearer {soon}", "market:read")
    assert soon not in verifier._verdicts  # refused now, checked again next time
