"""The Unleash tier: the platform's flags served by a real Unleash server (unleash-server from npm on PostgreSQL).

`bash scripts/unleash_tier.sh` starts both on loopback and runs this file with UNLEASH_URL / UNLEASH_API_TOKEN (a client
token) and UNLEASH_ADMIN_URL / UNLEASH_ADMIN_TOKEN (an admin token) set; without them every test here is skipped (the
tier script fails on any skip). The features are created through the admin API exactly as `flag_schema` defines them,
flips are made there as an operator would, and the adapters' traffic is counted by the servers that received it.
"""
from __future__ import annotations

import asyncio
import os
import time
from pathlib import Path

import httpx
import pytest
from prometheus_client import REGISTRY

from adapters.connect import connect
from adapters.core import last_call
from adapters.flag_schema import (
    KILL_SWITCH_FEATURE,
    FlagsConfig,
    FlagsError,
    from_unleash_features,
    grpc_feature,
    parse_flags,
    to_unleash_features,
)
from adapters.flags import Flags
from adapters.unleash_admin import UnleashAdmin
from transport.config import Endpoint
from services.market_analysis.models import CandlesQuery

REQUIRED_ENV = ("UNLEASH_URL", "UNLEASH_API_TOKEN", "UNLEASH_ADMIN_URL", "UNLEASH_ADMIN_TOKEN")
_MISSING = [name for name in REQUIRED_ENV if not os.environ.get(name)]

pytestmark = [
    pytest.mark.unleash,
    pytest.mark.skipif(bool(_MISSING), reason=f"needs a real Unleash server ({', '.join(_MISSING)} not set); "
                                             "`bash scripts/unleash_tier.sh` starts one and runs these tests"),
]

SERVICE = "market_analysis"
QUERY = CandlesQuery("EURUSD", limit=20)
CALLS = 20
REFRESH_S = 1
# A flip reaches the adapters after the server's revision tick (1 s in unleash-server) and the client's next poll
# (REFRESH_S): about 2 s at worst. The bound leaves room for a loaded CI machine.
BOUND_S = 5.0
KEYS = [f"request-{n}" for n in range(400)]

SERVER_SAYS_GRPC = "kill_switch: false\nservices:\n  market_analysis: {grpc: 100}\n"
BOOTSTRAP_SAYS_REST = "kill_switch: false\nservices:\n  market_analysis: {grpc: 0}\n"


def flags_of(text: str) -> FlagsConfig:
    return parse_flags(text, "test")


def served(transport: str, method: str = "GetCandles") -> float:
    """Calls the Market Analysis servers answered OK on this transport: what reached them, not what the adapter says."""
    return REGISTRY.get_sample_value("fxplat_server_requests_total", {
        "service": SERVICE, "method": method, "transport": transport, "code": "OK"}) or 0.0


def client_features() -> dict:
    """What the server serves SDKs: `GET /api/client/features` with the client token."""
    response = httpx.get(f"{os.environ['UNLEASH_URL']}/client/features",
                         headers={"Authorization": os.environ["UNLEASH_API_TOKEN"]}, timeout=5)
    response.raise_for_status()
    return response.json()


def served_flags() -> FlagsConfig | None:
    """The served state in flags.yaml terms; None while it cannot be (a revision taken in the middle of a push)."""
    try:
        return from_unleash_features(client_features(), "server")
    except FlagsError:
        return None


def _shape(feature: dict) -> dict:
    """The parts of a feature that decide its evaluation, in the form to_unleash_features writes them."""
    return {
        "enabled": feature["enabled"],
        # A set: unleash-server 7.5 repeats a feature's dependency once per strategy on /api/client/features.
        "dependencies": {(d["feature"], d["enabled"]) for d in feature.get("dependencies", [])},
        "strategies": [
            {"name": s["name"], "parameters": s.get("parameters", {}),
             "constraints": [{"contextName": c["contextName"], "operator": c["operator"], "values": c["values"]}
                             for c in s.get("constraints", [])]}
            for s in feature["strategies"]
        ],
    }


async def eventually(check, what: str, bound_s: float = BOUND_S) -> float:
    """Seconds until `check()` holds; fails after `bound_s`."""
    start = time.monotonic()
    while not check():
        elapsed = time.monotonic() - start
        assert elapsed < bound_s, f"{what}: not within {bound_s} s"
        await asyncio.sleep(0.05)
    return time.monotonic() - start


@pytest.fixture(scope="module")
def admin():
    with UnleashAdmin.from_env() as client:
        yield client


@pytest.fixture
async def server_flags(tmp_path: Path):
    """A Flags following the server every REFRESH_S s, bootstrapped from a file that says the opposite (REST), so
    whatever goes over gRPC was decided by the server."""
    bootstrap = tmp_path / "flags.yaml"
    bootstrap.write_text(BOOTSTRAP_SAYS_REST)
    flags = Flags(bootstrap, unleash_url=os.environ["UNLEASH_URL"], unleash_token=os.environ["UNLEASH_API_TOKEN"],
                  refresh_interval=REFRESH_S)
    await asyncio.to_thread(flags.start)  # blocks for the first fetch
    yield flags
    await asyncio.to_thread(flags.close)


@pytest.fixture
def adapter(market_host, factory, server_flags):
    return connect(SERVICE, Endpoint(market_host.rest_url, market_host.grpc_target), factory=factory,
                   flags=server_flags)


async def push_and_settle(admin: UnleashAdmin, flags: Flags, text: str) -> None:
    """Push `text` to the server and wait until `flags` has it (whatever the previous test left there)."""
    admin.push(flags_of(text))
    await eventually(lambda: flags.snapshot().flags == flags_of(text), "the pushed flags in the snapshot")


async def traffic_moves_to(adapter, transport: str) -> float:
    """Calls until one goes over `transport` (bounded); returns the seconds it took."""
    start = time.monotonic()
    while True:
        await adapter.get_candles(QUERY)
        record = last_call.get()
        if (record.transport, record.fell_back) == (transport, False):
            return time.monotonic() - start
        assert time.monotonic() - start < BOUND_S, f"traffic did not move to {transport} within {BOUND_S} s"
        await asyncio.sleep(0.05)


async def all_calls_go_over(adapter, transport: str) -> None:
    """CALLS calls: the adapter says `transport` for each, and only that transport's server saw them."""
    other = "rest" if transport == "grpc" else "grpc"
    before, other_before = served(transport), served(other)
    for _ in range(CALLS):
        await adapter.get_candles(QUERY)
        record = last_call.get()
        assert (record.transport, record.fell_back) == (transport, False)
    assert served(transport) - before == CALLS
    assert served(other) == other_before


def default_strategy(admin: UnleashAdmin, feature: str) -> dict:
    """The feature's service-wide rollout (the one strategy without a `method` constraint)."""
    [strategy] = [s for s in admin.strategies(feature) if not s.get("constraints")]
    return strategy


def set_rollout(admin: UnleashAdmin, percent: int) -> None:
    """Edit the service's rollout percentage in place, as an operator does in the Unleash UI."""
    strategy = default_strategy(admin, grpc_feature(SERVICE))
    parameters = {**strategy["parameters"], "rollout": str(percent)}
    admin.update_strategy(grpc_feature(SERVICE), strategy["id"],
                          {"name": strategy["name"], "parameters": parameters, "constraints": strategy["constraints"]})


# --- the features on the server ----------------------------------------------------------------------------------------


async def test_the_server_serves_the_features_flag_schema_defines(admin):
    flags = flags_of("kill_switch: false\nservices:\n"
                     "  market_analysis:\n    grpc: 100\n    stickiness: caller\n    shadow: 10\n"
                     "    methods: {ComputeIndicators: {grpc: 0}, AnalyzeMarket: {grpc: 50}}\n"
                     "  backtesting: {grpc: 25}\n")
    admin.push(flags)
    await eventually(lambda: served_flags() == flags, "the pushed flags served on /api/client/features")
    await asyncio.sleep(1.5)  # past the server's revision tick
    revision = client_features()["meta"]["revisionId"]
    admin.push(flags)  # idempotent: pushing the same flags again changes nothing on the server
    await asyncio.sleep(1.5)
    assert client_features()["meta"]["revisionId"] == revision

    served_features = {f["name"]: f for f in client_features()["features"]}
    for feature in to_unleash_features(flags)["features"]:
        assert _shape(served_features[feature["name"]]) == _shape(feature), feature["name"]


async def test_flags_follow_the_server_and_evaluate_as_offline(admin, server_flags, tmp_path):
    text = ("kill_switch: false\nservices:\n  market_analysis:\n    grpc: 50\n    stickiness: request_key\n"
            "    methods: {ComputeIndicators: {grpc: 0}}\n")
    await push_and_settle(admin, server_flags, text)
    snapshot = server_flags.snapshot()
    assert snapshot.source == f"unleash:{os.environ['UNLEASH_URL']}"
    assert snapshot.error is None

    # Key for key, the server's features bucket requests exactly as the offline evaluator does with the same flags.
    offline_path = tmp_path / "offline.yaml"
    offline_path.write_text(text)
    offline = Flags(offline_path, unleash_url="")  # never started: no thread, nothing to close
    from_offline = [offline.use_grpc(SERVICE, "GetCandles", key=key) for key in KEYS]
    # (eventually: the engine takes a state a moment after the snapshot shows it)
    await eventually(lambda: [server_flags.use_grpc(SERVICE, "GetCandles", key=key) for key in KEYS] == from_offline,
                     "server-fed evaluation equal to offline evaluation, key for key")
    from_server = [server_flags.use_grpc(SERVICE, "GetCandles", key=key) for key in KEYS]
    assert from_server == from_offline
    assert 0.35 < sum(from_server) / len(KEYS) < 0.65
    assert from_server == [server_flags.use_grpc(SERVICE, "GetCandles", key=key) for key in KEYS]  # sticky
    assert not any(server_flags.use_grpc(SERVICE, "ComputeIndicators", key=key) for key in KEYS)  # the override


# --- flips on the server move the adapters' traffic ------------------------------------------------------------------


async def test_a_rollout_flip_on_the_server_moves_the_traffic(admin, server_flags, adapter):
    await push_and_settle(admin, server_flags, SERVER_SAYS_GRPC)
    await traffic_moves_to(adapter, "grpc")  # the engine takes a state just after the snapshot shows it
    await all_calls_go_over(adapter, "grpc")

    set_rollout(admin, 0)
    took = await traffic_moves_to(adapter, "rest")
    print(f"rollout 100 -> 0: traffic on REST after {took:.2f} s")
    await all_calls_go_over(adapter, "rest")
    await eventually(lambda: server_flags.snapshot().flags.services[SERVICE].grpc == 0, "the snapshot shows 0 %")

    set_rollout(admin, 100)
    took = await traffic_moves_to(adapter, "grpc")
    print(f"rollout 0 -> 100: traffic on gRPC after {took:.2f} s")
    await all_calls_go_over(adapter, "grpc")
    assert server_flags.snapshot().source == f"unleash:{os.environ['UNLEASH_URL']}"


async def test_the_kill_switch_on_the_server_sends_everything_to_rest(admin, server_flags, adapter):
    await push_and_settle(admin, server_flags, SERVER_SAYS_GRPC)
    await traffic_moves_to(adapter, "grpc")  # the engine takes a state just after the snapshot shows it

    admin.set_enabled(KILL_SWITCH_FEATURE, True)
    took = await traffic_moves_to(adapter, "rest")
    print(f"kill switch on: traffic on REST after {took:.2f} s")
    await all_calls_go_over(adapter, "rest")
    await eventually(lambda: server_flags.snapshot().flags.kill_switch, "the snapshot shows the kill switch")
    assert server_flags.snapshot().flags.services[SERVICE].grpc == 100  # the rollout itself is untouched

    admin.set_enabled(KILL_SWITCH_FEATURE, False)
    took = await traffic_moves_to(adapter, "grpc")
    print(f"kill switch off: traffic on gRPC after {took:.2f} s")
    await all_calls_go_over(adapter, "grpc")


async def test_a_kill_switch_turned_on_as_in_the_unleash_ui_is_understood(admin, server_flags, adapter):
    """Turned on with no strategy, the server gives the kill switch a 100 % flexibleRollout of its own."""
    await push_and_settle(admin, server_flags, SERVER_SAYS_GRPC)
    await traffic_moves_to(adapter, "grpc")
    for strategy in admin.strategies(KILL_SWITCH_FEATURE):
        admin.delete_strategy(KILL_SWITCH_FEATURE, strategy["id"])

    admin.set_enabled(KILL_SWITCH_FEATURE, True)
    [added] = admin.strategies(KILL_SWITCH_FEATURE)
    assert (added["name"], added["parameters"]["rollout"]) == ("flexibleRollout", "100")
    await traffic_moves_to(adapter, "rest")
    await all_calls_go_over(adapter, "rest")
    await eventually(lambda: server_flags.snapshot().flags.kill_switch, "the snapshot shows the kill switch")
    assert server_flags.snapshot().error is None

    await push_and_settle(admin, server_flags, SERVER_SAYS_GRPC)  # back to flag_schema's own shape
    await traffic_moves_to(adapter, "grpc")
