"""The rollout commands as a person types them: start, pause, resume, abort, status, history; refusals that say what
to do; and the audit log of every flag change made with `fxplat flags set` / `kill-switch`."""
from __future__ import annotations

import json

import pytest

from typer.testing import CliRunner

from adapters.flag_schema import parse_flags
from fxplat.cli import app
from transport.config import SERVICES


def fxplat(env: dict[str, str], *args: str) -> tuple[int, str, str]:
    """The CLI in this process (a subprocess per command costs seconds here), with `env` as its environment."""
    result = CliRunner().invoke(app, list(args), env=env)
    if result.exception and not isinstance(result.exception, SystemExit):
        raise result.exception
    return result.exit_code, result.stdout, result.stderr


@pytest.fixture
def env(tmp_path):
    flags = tmp_path / "flags.yaml"
    flags.write_text("services:\n  backtesting: {grpc: 0}\n  market_analysis: {grpc: 100}\n")
    e = {"FXPLAT_DATA_DIR": str(tmp_path / "data"), "FXPLAT_FLAGS": str(flags), "FXPLAT_ACTOR": "alice",
         "PROMETHEUS_URL": None, "UNLEASH_ADMIN_URL": None, "UNLEASH_URL": None}  # None: unset while invoked
    for service in SERVICES:  # nothing listens here: no metrics to read, which these commands do not need
        e[f"FXPLAT_{service.upper()}_REST_URL"] = "http://127.0.0.1:9"
    return e


def grpc_share(env, service: str) -> int:
    return parse_flags(open(env["FXPLAT_FLAGS"]).read(), "f").services[service].grpc


def test_a_person_starts_pauses_resumes_and_aborts_a_rollout(env):
    code, out, err = fxplat(env, "rollout", "start", "backtesting", "--steps", "10,100", "--interval", "1h")
    assert code == 0, err
    assert grpc_share(env, "backtesting") == 10 and "fxplat rollout run" in out
    code, out, err = fxplat(env, "rollout", "start", "backtesting")
    assert code == 2 and "already has rollout 1" in err and "abort" in err
    assert (fxplat(env, "rollout", "pause", "backtesting", "--reason", "lunch"))[0] == 0
    code, out, err = fxplat(env, "rollout", "pause", "backtesting")
    assert code == 2 and "already paused" in err
    assert (fxplat(env, "rollout", "resume", "backtesting"))[0] == 0
    code, out, err = fxplat(env, "rollout", "abort", "backtesting", "--reason", "pager went off")
    assert code == 0 and "aborted, 0 % on gRPC" in out, err
    assert grpc_share(env, "backtesting") == 0
    code, out, err = fxplat(env, "rollout", "abort", "backtesting")
    assert code == 2 and "no active rollout" in err and "aborted" in err

    code, out, err = fxplat(env, "rollout", "history", "backtesting", "--json")
    shown = json.loads(out)
    assert [e["kind"] for e in shown["events"]] == ["started", "paused", "resumed", "aborted"]
    assert all(e["actor"] == "alice" for e in shown["events"]) and "pager went off" in shown["events"][-1]["message"]
    assert [(a["old"], a["new"], a["why"].split(":")[0]) for a in shown["audit"]] == [
        ("0", "10", "rollout 1 of backtesting started"), ("10", "0", "rollout 1")]
    code, out, err = fxplat(env, "rollout", "status", "--json")
    assert [(r["service"], r["state"], r["percent"]) for r in json.loads(out)] == [("backtesting", "aborted", 0)]


def test_a_promoted_method_rollout_moves_only_that_method(env):
    code, out, err = fxplat(env, "rollout", "start", "backtesting", "--method", "GetBacktest", "--steps",
                                  "5,100", "--interval", "1h")
    assert code == 0, err
    code, out, err = fxplat(env, "rollout", "promote", "backtesting")
    assert code == 0 and "promoted, 100 %" in out, err
    flags = parse_flags(open(env["FXPLAT_FLAGS"]).read(), "f").services["backtesting"]
    assert flags.grpc == 0 and flags.methods["GetBacktest"].grpc == 100


@pytest.mark.parametrize("args, says", [
    (("rollout", "start", "nosuch"), "unknown service 'nosuch'"),
    (("rollout", "start", "backtesting", "--method", "Nope"), "has no method 'Nope'"),
    (("rollout", "start", "backtesting", "--steps", "50,10"), "--steps must increase"),
    (("rollout", "start", "backtesting", "--interval", "later"), "--interval must be a positive duration"),
    (("rollout", "pause", "backtesting"), "backtesting has no active rollout"),
])
def test_bad_commands_are_refused_with_what_to_do(env, args, says):
    code, out, err = fxplat(env, *args)
    assert code == 2 and says in err, (out, err)
    assert grpc_share(env, "backtesting") == 0


def test_every_flag_change_a_person_makes_is_audited(env):
    assert (fxplat(env, "flags", "set", "market_analysis", "--grpc", "25", "--shadow", "10", "--reason",
                         "canary"))[0] == 0
    assert (fxplat(env, "flags", "kill-switch", "on", "--reason", "incident 42"))[0] == 0
    code, out, err = fxplat(env, "rollout", "history", "--json")
    assert code == 0, err
    audit = [(a["actor"], a["flag"], a["old"], a["new"], a["why"]) for a in json.loads(out)["audit"]]
    assert audit == [("alice", "market_analysis.grpc", "100", "25", "canary"),
                     ("alice", "market_analysis.shadow", "0", "10", "canary"),
                     ("alice", "kill_switch", "off", "on", "incident 42")]
    code, out, err = fxplat(env, "rollout", "history")
    assert code == 0 and "kill_switch" in out and "off -> on" in out, err
