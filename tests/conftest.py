"""Shared fixtures: real services on free loopback ports (port 0), real clients through the client factory.

The session's services call each other through the flagged adapters, with the flags of `platform_flags` (every
service 100 % gRPC); tests that need other flags start their own hosts. Auth is on for the whole session: every
service checks tokens, and `factory` (which the services share for their own calls) sends one with every scope."""
from __future__ import annotations

import secrets

import grpc
import pytest

from adapters.connect import KITS
from adapters.flags import Flags
from fxplat.catalog import BuildContext, build_host, scopes
from transport.config import Endpoint
from transport.auth import AuthConfig, MintedTokens
from transport.client_factory import ClientFactory
from transport import logs

from platform_consts import ALL_GRPC, LOOPBACK  # noqa: F401  (test modules take them from here too)


@pytest.fixture(scope="session", autouse=True)
def every_call_logged():
    """Servers in the test process log every call: tests that look for a call's line must find it, however many
    calls other tests made in the same second (tests/test_observability.py tests the sampling itself)."""
    logs.sample_calls(0)
    yield


@pytest.fixture(scope="session")
def data_dir(tmp_path_factory):
    return tmp_path_factory.mktemp("fxplat-data")


@pytest.fixture(scope="session")
def auth() -> AuthConfig:
    """Auth on, with a secret generated for the session."""
    return AuthConfig(mode="on", secret=secrets.token_hex(32))


@pytest.fixture(scope="session")
def tokens(auth) -> MintedTokens:
    """A token source with every scope, for clients the tests make (`tokens()` is the current token)."""
    return MintedTokens(auth.signer(), sub="tests", scopes=scopes())


@pytest.fixture(scope="session")
async def factory(tokens):
    f = ClientFactory(token_source=tokens)
    yield f
    await f.close()


@pytest.fixture(autouse=True)
def _no_channels_in_backoff(request):
    """Before and after each test that uses the session's `factory`: forget its channels in TRANSIENT_FAILURE.

    Such a channel failed to reach a server that has stopped, and retries with backoff (up to 3 s). A later test's
    server that gets the same port from the kernel would meet it in backoff: its first calls fail at once with the
    old server's "connection refused" (stop 27's CI failure). An idle channel to a stopped server is harmless: it
    connects on its next call. A module-scoped client made before this runs keeps what it took
    (tests/test_error_table.py takes a factory of its own). A forgotten channel is closed when nothing holds it any
    more (grpc.aio closes it on collection). Not async, so the session's sync fixtures keep their event loop; no
    probing connects, whose client ports in TIME_WAIT could take a port a test has just picked for a child server."""
    if "factory" not in request.fixturenames:
        yield
        return
    shared = request.getfixturevalue("factory")

    def forget() -> None:
        for key in [k for k, channel in shared._channels.items()
                    if channel.get_state() is grpc.ChannelConnectivity.TRANSIENT_FAILURE]:
            del shared._channels[key]

    forget()
    yield
    forget()


@pytest.fixture(scope="session")
def platform_flags(tmp_path_factory):
    path = tmp_path_factory.mktemp("flags") / "flags.yaml"
    path.write_text(ALL_GRPC)
    flags = Flags(path, unleash_url="")
    yield flags
    flags.close()


@pytest.fixture(scope="session")
def platform_ctx(data_dir, factory, platform_flags, auth):
    """The session services' BuildContext: each host started from it registers its endpoints for the next."""
    return BuildContext(data_dir, factory, platform_flags, auth=auth)


async def _start(name: str, ctx: BuildContext):
    svc = await build_host(name, ctx, LOOPBACK, 0, 0)
    await svc.start()
    ctx.endpoints[name] = Endpoint(svc.rest_url, svc.grpc_target)
    return svc


@pytest.fixture(scope="session")
async def market_host(platform_ctx):
    svc = await _start("market_analysis", platform_ctx)
    yield svc
    await svc.stop(grace=0)


@pytest.fixture(scope="session")
async def causal_host(platform_ctx, market_host):
    svc = await _start("causal_analysis", platform_ctx)
    yield svc
    await svc.stop(grace=0)


@pytest.fixture(scope="session")
async def backtesting_host(platform_ctx, market_host):
    svc = await _start("backtesting", platform_ctx)
    yield svc
    await svc.stop(grace=0)


@pytest.fixture(scope="session")
async def coordinator_host(platform_ctx, market_host, causal_host, backtesting_host):
    svc = await _start("analysis_coordinator", platform_ctx)
    yield svc
    await svc.stop(grace=0)


def implementations(host, factory) -> dict:
    """Every implementation of a service's interface, against one running service: its domain, and its gRPC and REST
    clients (made as the adapters make them)."""
    kit = KITS[host.name]
    return {"domain": host.impl, "grpc": kit.grpc_client(factory.channel(host.grpc_target)),
            "rest": kit.rest_client(factory.http(host.rest_url))}


@pytest.fixture(scope="session")
def market_clients(market_host, factory):
    return implementations(market_host, factory)


@pytest.fixture(scope="session")
def causal_clients(causal_host, factory):
    return implementations(causal_host, factory)


@pytest.fixture(scope="session")
def backtesting_clients(backtesting_host, factory):
    return implementations(backtesting_host, factory)


@pytest.fixture(scope="session")
def coordinator_clients(coordinator_host, factory):
    return implementations(coordinator_host, factory)
