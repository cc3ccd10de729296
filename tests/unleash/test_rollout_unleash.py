"""Rollouts that set their shares on a real Unleash server (the Unleash tier): a person's rollout commands and the
controller write through the admin API, the audit log records old -> new per flag, and a client following the server
sees the share the rollout set."""
from __future__ import annotations

import asyncio
import os
from pathlib import Path

import pytest

from adapters.flag_schema import parse_flags
from adapters.flags import Flags
from adapters.unleash_admin import UnleashAdmin
from rollout import actions
from rollout.evidence import LocalSource
from adapters.canary import CanaryStore, database_url
from rollout.flag_writers import UnleashWriter, from_env, share_of
from rollout.model import Thresholds
from rollout.store import RolloutStore

REQUIRED_ENV = ("UNLEASH_URL", "UNLEASH_API_TOKEN", "UNLEASH_ADMIN_URL", "UNLEASH_ADMIN_TOKEN")
_MISSING = [name for name in REQUIRED_ENV if not os.environ.get(name)]
pytestmark = [
    pytest.mark.unleash,
    pytest.mark.skipif(bool(_MISSING), reason=f"needs a real Unleash server ({', '.join(_MISSING)} not set); "
                                              "`bash scripts/unleash_tier.sh` starts one and runs these tests"),
]
START = "kill_switch: false\nservices:\n  backtesting: {grpc: 0, shadow: 0}\n"


async def test_a_rollout_sets_and_audits_its_shares_on_the_unleash_server(tmp_path: Path):
    with UnleashAdmin.from_env() as admin:
        admin.push(parse_flags(START, "start"))
    writer = from_env(None)
    assert isinstance(writer, UnleashWriter) and writer.target == f"unleash:{os.environ['UNLEASH_ADMIN_URL']}"
    assert share_of(writer.read(), "backtesting", "") == 0
    store = RolloutStore.for_data_dir(tmp_path)
    source = LocalSource([], CanaryStore(database_url(tmp_path)))
    bootstrap = tmp_path / "flags.yaml"
    bootstrap.write_text(START)
    flags = Flags(bootstrap, unleash_url=os.environ["UNLEASH_URL"], unleash_token=os.environ["UNLEASH_API_TOKEN"],
                  refresh_interval=1)
    await asyncio.to_thread(flags.start)
    try:
        r = await actions.start(store, source, writer, service="backtesting", method="GetBacktest", steps=[30, 100],
                                interval_s=3600, max_failed_checks=2, thresholds=Thresholds(), actor="alice",
                                shadow=10)
        now = writer.read().services["backtesting"]
        assert (now.grpc, now.shadow, now.methods["GetBacktest"].grpc) == (0, 10, 30)
        for _ in range(100):  # bounded: the client polls every second
            if flags.snapshot().flags.services["backtesting"].methods.get("GetBacktest"):
                break
            await asyncio.sleep(0.1)
        assert flags.snapshot().flags.services["backtesting"].methods["GetBacktest"].grpc == 30
        await actions.abort(store, "backtesting", actor="bob", why="testing the way back")
        assert writer.read().services["backtesting"].methods["GetBacktest"].grpc == 0
        entries = await store.audit_log(flag_prefix="backtesting")
        assert [(a.actor, a.flag, a.old, a.new) for a in entries] == [
            ("alice", "backtesting.shadow", "0", "10"), ("alice", "backtesting.methods.GetBacktest.grpc", "-", "30"),
            ("bob", "backtesting.methods.GetBacktest.grpc", "30", "0")]
        assert all(a.target == writer.target for a in entries) and r.flag_target == writer.target
    finally:
        await asyncio.to_thread(flags.close)
        await source.close()
        await store.close()
