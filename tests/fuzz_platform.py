"""The four services in an event loop of their own thread, for the fuzzers: schemathesis and hypothesis drive
synchronous clients, which would block the test session's loop if the servers ran on it."""
from __future__ import annotations

import asyncio
import os
import threading
from dataclasses import dataclass

import pytest

from adapters.flags import Flags
from platform_consts import ALL_GRPC, LOOPBACK
from fxplat.catalog import CATALOG, BuildContext, build_host, scopes
from transport.auth import AuthConfig, MintedTokens
from transport.client_factory import ClientFactory
from transport.config import Endpoint

# Examples per operation (REST) or per RPC (gRPC): a quick pass in the default run; scripts/fuzz_tier.sh sets 50+.
EXAMPLES = int(os.environ.get("FXPLAT_FUZZ_EXAMPLES", "6"))


@dataclass
class Platform:
    hosts: dict
    tokens: MintedTokens

    def bearer(self) -> str:
        return f"Bearer {self.tokens()}"


@pytest.fixture(scope="module")
def threaded_platform(tmp_path_factory, auth):
    data = tmp_path_factory.mktemp("fuzz-data")
    flags_file = data / "flags.yaml"
    flags_file.write_text(ALL_GRPC)
    tokens = MintedTokens(auth.signer(), sub="fuzzer", scopes=scopes())
    loop = asyncio.new_event_loop()
    thread = threading.Thread(target=loop.run_forever, name="fuzz-platform", daemon=True)
    thread.start()
    state: dict = {}

    async def start() -> dict:
        state["factory"] = ClientFactory(token_source=tokens)
        state["flags"] = Flags(flags_file, unleash_url="")
        ctx = BuildContext(data, state["factory"], state["flags"], auth=AuthConfig(mode="on", secret=auth.secret))
        hosts = {}
        for name in CATALOG:  # in dependency order: each registers its endpoints for the next
            hosts[name] = await (await build_host(name, ctx, LOOPBACK, 0, 0)).start()
            ctx.endpoints[name] = Endpoint(hosts[name].rest_url, hosts[name].grpc_target)
        return hosts

    async def stop(hosts: dict) -> None:
        for host in reversed(list(hosts.values())):
            await host.stop(grace=0)
        await state["factory"].close()
        state["flags"].close()

    hosts = asyncio.run_coroutine_threadsafe(start(), loop).result(120)
    try:
        yield Platform(hosts, tokens)
    finally:
        asyncio.run_coroutine_threadsafe(stop(hosts), loop).result(60)
        loop.call_soon_threadsafe(loop.stop)
        thread.join(10)
        loop.close()
