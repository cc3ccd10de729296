"""The feature-flag layer, end to end through the real UnleashClient (no mocks)."""
from __future__ import annotations

import asyncio
import json
import logging
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest
from UnleashClient import UnleashClient
from UnleashClient.utils import InstanceAllowType

from adapters.flag_schema import (
    DEFAULT_FLAGS,
    FlagsConfig,
    FlagsError,
    ServiceFlags,
    from_unleash_features,
    parse_flags,
    to_unleash_features,
)
from adapters.flag_schema import grpc_feature, shadow_feature
from adapters.flags import APP_NAME, Flags, Rollout, _context, _MemoryCache, local_rollouts

REPO_ROOT = Path(__file__).resolve().parents[1]
KEYS = [f"request-{n}" for n in range(1000)]


@pytest.fixture(autouse=True)
def _no_flag_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in ("UNLEASH_URL", "UNLEASH_API_TOKEN", "FXPLAT_FLAGS"):
        monkeypatch.delenv(name, raising=False)


def flags_from(tmp_path: Path, text: str) -> Flags:
    path = tmp_path / "flags.yaml"
    path.write_text(text)
    return Flags(path)


def grpc_share(flags: Flags, service: str = "market_analysis", method: str = "GetCandles", **kwargs: str) -> float:
    return sum(flags.use_grpc(service, method, key=key, **kwargs) for key in KEYS) / len(KEYS)


# --- schema -----------------------------------------------------------------------------------------------------------


def test_repo_flags_yaml_is_the_builtin_default() -> None:
    assert parse_flags((REPO_ROOT / "flags.yaml").read_text(), source="flags.yaml") == DEFAULT_FLAGS


@pytest.mark.parametrize(
    ("text", "message"),
    [
        (
            "services:\n  market_analysis:\n    grpc: 150\n",
            "flags.yaml: services.market_analysis.grpc: must be between 0 and 100, got 150 (line 3)",
        ),
        (
            "services:\n  market_analysis:\n    shadow: -1\n",
            "flags.yaml: services.market_analysis.shadow: must be between 0 and 100, got -1 (line 3)",
        ),
        (
            "services:\n  backtesting:\n    grpc: '25'\n",
            "flags.yaml: services.backtesting.grpc: must be a whole number between 0 and 100, got '25' (line 3)",
        ),
        ("kill_switch: on\n", "flags.yaml: kill_switch: must be true or false, got 'on' (line 1)"),
        (
            "services:\n  pricing: {grpc: 100}\n",
            "flags.yaml: services.pricing: unknown service; known services: market_analysis, causal_analysis, "
            "backtesting, analysis_coordinator (line 2)",
        ),
        (
            "services:\n  market_analysis:\n    stickyness: caller\n",
            "flags.yaml: services.market_analysis: unknown key 'stickyness'; allowed: grpc, stickiness, shadow, "
            "methods (line 2)",
        ),
        (
            "services:\n  market_analysis:\n    stickiness: user\n",
            "flags.yaml: services.market_analysis.stickiness: must be one of 'request_key', 'caller' or 'random', "
            "got 'user' (line 3)",
        ),
        (
            "services:\n  market_analysis:\n    methods:\n      get_candles: {grpc: 0}\n",
            "flags.yaml: services.market_analysis.methods.get_candles: not a gRPC method name: write it as in the "
            ".proto, UpperCamelCase (e.g. GetCandles) (line 4)",
        ),
        ("extra: 1\n", "flags.yaml: unknown key 'extra'; allowed: kill_switch, services"),
        ("kill_switch: false\nkill_switch: true\n", 'flags.yaml: not valid YAML: found duplicate key "kill_switch"'),
        ("services: [market_analysis\n", "flags.yaml: not valid YAML:"),
        ("", "flags.yaml: the file is empty"),
    ],
)
def test_invalid_flags_name_the_path_and_the_problem(text: str, message: str) -> None:
    with pytest.raises(FlagsError) as caught:
        parse_flags(text, source="flags.yaml")
    assert str(caught.value).startswith(message)


def test_every_problem_is_reported_at_once() -> None:
    with pytest.raises(FlagsError) as caught:
        parse_flags("services:\n  market_analysis: {grpc: 101, shadow: 200}\n", source="flags.yaml")
    assert str(caught.value).splitlines() == [
        "flags.yaml: services.market_analysis.grpc: must be between 0 and 100, got 101 (line 2)",
        "flags.yaml: services.market_analysis.shadow: must be between 0 and 100, got 200 (line 2)",
    ]


def test_services_left_out_go_over_rest(tmp_path: Path) -> None:
    flags = flags_from(tmp_path, "services:\n  market_analysis: {grpc: 100}\n")
    assert flags.snapshot().flags.services["backtesting"] == ServiceFlags(grpc=0)
    assert grpc_share(flags, "backtesting", "RunBacktest") == 0
    assert grpc_share(flags, "market_analysis") == 1


# --- translation ------------------------------------------------------------------------------------------------------


def test_overrides_translate_to_excluding_and_including_strategies() -> None:
    flags = parse_flags(
        "services:\n  market_analysis:\n    grpc: 100\n    stickiness: caller\n"
        "    methods: {ComputeIndicators: {grpc: 0}}\n",
        source="test",
    )
    feature = next(f for f in to_unleash_features(flags)["features"] if f["name"] == "fxplat.grpc.market_analysis")
    assert feature["strategies"] == [
        {
            "name": "flexibleRollout",
            "parameters": {"rollout": "100", "stickiness": "caller", "groupId": "fxplat.grpc.market_analysis"},
            "constraints": [{"contextName": "method", "operator": "NOT_IN", "values": ["ComputeIndicators"]}],
        },
        {
            "name": "flexibleRollout",
            "parameters": {"rollout": "0", "stickiness": "caller", "groupId": "fxplat.grpc.market_analysis"},
            "constraints": [{"contextName": "method", "operator": "IN", "values": ["ComputeIndicators"]}],
        },
    ]
    assert feature["dependencies"] == [{"feature": "fxplat.kill_switch", "enabled": False}]


def test_unleash_features_translate_back() -> None:
    flags = parse_flags(
        "kill_switch: true\nservices:\n  backtesting:\n    grpc: 30\n    stickiness: random\n    shadow: 5\n"
        "    methods: {RunBacktest: {grpc: 0}, GetBacktest: {grpc: 100}}\n",
        source="test",
    )
    assert from_unleash_features(to_unleash_features(flags), source="test") == flags


def test_features_flags_yaml_cannot_express_are_reported() -> None:
    features = to_unleash_features(DEFAULT_FLAGS)
    features["features"][1]["strategies"].append({"name": "userWithId", "parameters": {"userIds": "42"}})
    with pytest.raises(FlagsError, match="unleash:x: cannot be shown as flags.yaml: fxplat.grpc.market_analysis: "):
        from_unleash_features(features, source="unleash:x")


@pytest.mark.parametrize(("strategy", "plain"), [
    # What unleash-server adds when the kill switch is turned on in its UI before it has a strategy.
    ({"name": "flexibleRollout", "parameters": {"rollout": "100", "stickiness": "default", "groupId": "k"}}, True),
    ({"name": "flexibleRollout", "parameters": {"rollout": "50", "stickiness": "default", "groupId": "k"}}, False),
    ({"name": "default", "constraints": [{"contextName": "method", "operator": "IN", "values": ["X"]}]}, False),
])
def test_a_kill_switch_on_for_everyone_is_shown_as_on(strategy: dict, plain: bool) -> None:
    features = to_unleash_features(DEFAULT_FLAGS)
    features["features"][0] = {"name": "fxplat.kill_switch", "enabled": True, "strategies": [strategy]}
    if plain:
        assert from_unleash_features(features, source="unleash:x").kill_switch is True
    else:
        with pytest.raises(FlagsError, match="fxplat.kill_switch: must be plain on/off"):
            from_unleash_features(features, source="unleash:x")


# --- evaluation -------------------------------------------------------------------------------------------------------


def test_zero_and_hundred_percent(tmp_path: Path) -> None:
    flags = flags_from(tmp_path, "services:\n  market_analysis: {grpc: 100}\n  backtesting: {grpc: 0, shadow: 0}\n")
    assert grpc_share(flags, "market_analysis") == 1
    assert grpc_share(flags, "backtesting", "RunBacktest") == 0
    assert not any(flags.shadow("backtesting", "GetBacktest") for _ in range(200))
    assert not flags.may_shadow()  # a service process then does not start its shadow worker


def test_request_key_rollout_is_a_share_of_keys_and_sticks_per_key(tmp_path: Path) -> None:
    flags = flags_from(tmp_path, "services:\n  market_analysis: {grpc: 25, stickiness: request_key}\n")
    answers = {key: flags.use_grpc("market_analysis", "GetCandles", key=key) for key in KEYS}
    assert 0.20 <= sum(answers.values()) / len(KEYS) <= 0.30
    assert all(flags.use_grpc("market_analysis", "ListSymbols", key=key) == answers[key] for key in KEYS)


def test_raising_the_percent_only_adds_keys(tmp_path: Path) -> None:
    def keys_on_grpc(percent: int) -> set[str]:
        flags = flags_from(tmp_path, f"services:\n  market_analysis: {{grpc: {percent}}}\n")
        return {key for key in KEYS if flags.use_grpc("market_analysis", "GetCandles", key=key)}

    assert keys_on_grpc(25) < keys_on_grpc(50)


def test_without_a_key_the_rollout_is_a_share_of_calls(tmp_path: Path) -> None:
    flags = flags_from(tmp_path, "services:\n  market_analysis: {grpc: 25}\n")
    calls = 2000
    assert 0.20 <= sum(flags.use_grpc("market_analysis", "GetCandles") for _ in range(calls)) / calls <= 0.30


def test_caller_stickiness_keeps_each_caller_on_one_transport(tmp_path: Path) -> None:
    flags = flags_from(tmp_path, "services:\n  market_analysis: {grpc: 25, stickiness: caller}\n")
    callers = [f"caller-{n}" for n in range(1000)]
    answers = [{flags.use_grpc("market_analysis", "GetCandles", caller=c, key=k) for k in KEYS[:5]} for c in callers]
    assert all(len(answer) == 1 for answer in answers)
    assert 0.20 <= sum(answer == {True} for answer in answers) / len(callers) <= 0.30


def test_a_method_can_stay_on_rest_while_its_service_moves(tmp_path: Path) -> None:
    flags = flags_from(
        tmp_path, "services:\n  market_analysis:\n    grpc: 100\n    methods: {ComputeIndicators: {grpc: 0}}\n"
    )
    assert grpc_share(flags, "market_analysis", "ComputeIndicators") == 0
    assert grpc_share(flags, "market_analysis", "GetCandles") == 1


def test_a_method_can_move_ahead_of_its_service(tmp_path: Path) -> None:
    flags = flags_from(tmp_path, "services:\n  market_analysis:\n    grpc: 0\n    methods: {GetCandles: {grpc: 100}}\n")
    assert grpc_share(flags, "market_analysis", "GetCandles") == 1
    assert grpc_share(flags, "market_analysis", "ComputeIndicators") == 0


def test_kill_switch_sends_everything_over_rest_and_stops_shadowing(tmp_path: Path) -> None:
    flags = flags_from(
        tmp_path,
        "kill_switch: true\nservices:\n  market_analysis:\n    grpc: 100\n    shadow: 100\n"
        "    methods: {GetCandles: {grpc: 100}}\n",
    )
    assert grpc_share(flags, "market_analysis", "GetCandles") == 0
    assert grpc_share(flags, "market_analysis", "ComputeIndicators") == 0
    assert not any(flags.shadow("market_analysis", "GetCandles") for _ in range(200))
    assert not flags.may_shadow()


def test_shadow_share_follows_its_percent(tmp_path: Path) -> None:
    flags = flags_from(tmp_path, "services:\n  market_analysis: {grpc: 100, shadow: 10}\n")
    assert flags.may_shadow()
    calls = 2000
    assert 0.07 <= sum(flags.shadow("market_analysis", "GetCandles") for _ in range(calls)) / calls <= 0.13


def unleash_of(flags: FlagsConfig) -> UnleashClient:
    """The reference: an UnleashClient bootstrapped with the features the file translates to (never initialized:
    it evaluates at once, with no thread and no network)."""
    return UnleashClient(url="http://offline.invalid", app_name=APP_NAME, cache=_MemoryCache(to_unleash_features(flags)),
                         disable_metrics=True, disable_registration=True,
                         multiple_instance_mode=InstanceAllowType.SILENTLY_ALLOW)


@pytest.mark.parametrize("kill_switch", [False, True])
@pytest.mark.parametrize("stickiness", ["request_key", "caller"])
@pytest.mark.parametrize("service_pct, method_pct, shadow_pct", [
    (0, None, 0), (100, None, 100), (100, 0, 0), (0, 100, 100), (25, 100, 1), (100, 40, 60), (50, 99, 10), (1, 73, 99),
])
def test_the_files_shares_decided_in_process_agree_with_unleash_key_by_key(
        kill_switch, stickiness, service_pct, method_pct, shadow_pct) -> None:
    methods = {} if method_pct is None else {"GetCandles": {"grpc": method_pct}}
    flags = FlagsConfig(kill_switch=kill_switch, services={"market_analysis": ServiceFlags(
        grpc=service_pct, shadow=shadow_pct, stickiness=stickiness, methods=methods)})
    local = local_rollouts(flags)
    unleash = unleash_of(flags)
    default, by_method = local.grpc["market_analysis"]
    for method in ("GetCandles", "ListSymbols"):
        rollout = by_method.get(method, default)
        for key in KEYS:
            caller = f"svc-{key}"
            assert rollout.enabled(caller, key) == unleash.is_enabled(
                grpc_feature("market_analysis"), _context("market_analysis", method, caller, key)), (method, key)
    for key in KEYS:
        assert local.shadow["market_analysis"].enabled("", key) == unleash.is_enabled(
            shadow_feature("market_analysis"), _context("market_analysis", "GetCandles", "", key)), key


def test_a_random_stickiness_share_is_a_share_of_calls() -> None:
    rollout = Rollout("fxplat.grpc.market_analysis", 30, "random")
    share = sum(rollout.enabled("caller", "same-key") for _ in range(4000)) / 4000
    assert 0.26 <= share <= 0.34


def test_unknown_service_is_a_programming_error(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="unknown service 'pricing'"):
        flags_from(tmp_path, "kill_switch: false\n").use_grpc("pricing", "GetPrice")


# --- where the flags come from ----------------------------------------------------------------------------------------


def test_flags_file_lookup_order(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    (tmp_path / "flags.yaml").write_text("kill_switch: true\n")
    (tmp_path / "env.yaml").write_text("kill_switch: false\n")
    (tmp_path / "explicit.yaml").write_text("kill_switch: false\n")
    monkeypatch.chdir(tmp_path)
    assert Flags().snapshot().source == f"file:{tmp_path / 'flags.yaml'}"
    monkeypatch.setenv("FXPLAT_FLAGS", str(tmp_path / "env.yaml"))
    assert Flags().snapshot().source == f"file:{tmp_path / 'env.yaml'}"
    assert Flags(tmp_path / "explicit.yaml").snapshot().source == f"file:{tmp_path / 'explicit.yaml'}"


def test_without_a_flags_file_the_builtin_defaults_apply(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    snapshot = Flags().snapshot()
    assert (snapshot.source, snapshot.flags) == ("builtin", DEFAULT_FLAGS)


def test_a_named_flags_file_must_exist(tmp_path: Path) -> None:
    with pytest.raises(FlagsError, match="missing.yaml: cannot read"):
        Flags(tmp_path / "missing.yaml")


# --- live reload ------------------------------------------------------------------------------------------------------


async def wait_for(condition, timeout: float = 3.0) -> float:
    """Seconds until `condition()` held; awaits in between, as code inside an asyncio server would."""
    started = time.monotonic()
    while not condition():
        assert time.monotonic() - started < timeout, "condition not met in time"
        await asyncio.sleep(0.05)
    return time.monotonic() - started


async def test_an_edit_applies_within_two_seconds(tmp_path: Path) -> None:
    flags = flags_from(tmp_path, "services:\n  market_analysis: {grpc: 0}\n")
    before = flags.snapshot()
    with flags:
        (tmp_path / "flags.yaml").write_text("services:\n  market_analysis: {grpc: 100}\n")
        elapsed = await wait_for(lambda: flags.use_grpc("market_analysis", "GetCandles"))
    assert elapsed < 2.0
    after = flags.snapshot()
    assert after.flags.services["market_analysis"].grpc == 100
    assert after.loaded_at > before.loaded_at and after.error is None


async def test_an_invalid_edit_keeps_the_last_good_flags(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    path = tmp_path / "flags.yaml"
    flags = flags_from(tmp_path, "services:\n  market_analysis: {grpc: 100}\n")
    with caplog.at_level(logging.WARNING, logger="adapters.flags"), flags:
        path.write_text("services:\n  market_analysis: {grpc: 150}\n")
        await wait_for(lambda: flags.snapshot().error is not None)
        assert grpc_share(flags) == 1
        assert flags.snapshot().flags.services["market_analysis"].grpc == 100
        expected = f"{path}: services.market_analysis.grpc: must be between 0 and 100, got 150 (line 2)"
        assert flags.snapshot().error == expected
        assert expected in caplog.text

        path.write_text("services:\n  market_analysis: {grpc: 0}\n")
        await wait_for(lambda: flags.snapshot().error is None)
        assert grpc_share(flags) == 0

        path.unlink()
        await wait_for(lambda: flags.snapshot().error is not None)
        assert flags.snapshot().error == f"{path}: cannot read: No such file or directory"
        assert grpc_share(flags) == 0
        path.write_text("services:\n  market_analysis: {grpc: 0}\n")
        await wait_for(lambda: flags.snapshot().error is None)


# --- Unleash server mode ----------------------------------------------------------------------------------------------


def test_server_mode_with_the_server_down_evaluates_from_the_bootstrap(tmp_path: Path) -> None:
    path = tmp_path / "flags.yaml"
    path.write_text("services:\n  market_analysis:\n    grpc: 100\n    methods: {ComputeIndicators: {grpc: 0}}\n")
    with Flags(path, unleash_url="http://127.0.0.1:1/api") as flags:
        assert grpc_share(flags, "market_analysis", "GetCandles") == 1
        assert grpc_share(flags, "market_analysis", "ComputeIndicators") == 0
        assert flags.snapshot().source == f"file:{path}"


class _FakeUnleashServer(ThreadingHTTPServer):
    """Serves the client API endpoints an Unleash server would, from `features`."""

    def __init__(self, features: dict) -> None:
        super().__init__(("127.0.0.1", 0), _FakeUnleashHandler)
        self.features = features

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server_address[1]}/api"


class _FakeUnleashHandler(BaseHTTPRequestHandler):
    server: _FakeUnleashServer

    def do_GET(self) -> None:
        body = json.dumps(self.server.features).encode()
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def do_POST(self) -> None:  # registration and metrics
        self.rfile.read(int(self.headers.get("Content-Length", 0)))
        self.send_response(202)
        self.send_header("Content-Length", "0")
        self.end_headers()

    def log_message(self, *args: object) -> None:
        pass


async def test_server_mode_follows_the_server() -> None:
    served = FlagsConfig(services={"market_analysis": ServiceFlags(grpc=0)})
    server = _FakeUnleashServer(to_unleash_features(served))
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        # Bootstrapped with everything on gRPC; the server says REST for market_analysis.
        with Flags(REPO_ROOT / "flags.yaml", unleash_url=server.url) as flags:
            assert flags.snapshot().source == f"unleash:{server.url}"
            assert flags.snapshot().flags == served
            assert grpc_share(flags) == 0

            server.features = to_unleash_features(DEFAULT_FLAGS)
            await wait_for(lambda: flags.snapshot().flags == DEFAULT_FLAGS)
            assert grpc_share(flags) == 1
    finally:
        server.shutdown()
        server.server_close()
