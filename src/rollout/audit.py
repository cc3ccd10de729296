"""The flag audit log: every change of a flag, by a person (`fxplat flags set`, `kill-switch`, a rollout command) or
by the rollout controller, stored as one row per flag that changed: who, when, where (file or Unleash), old -> new,
and why. Changes are found by comparing the flags before and after, so whatever an edit touched is recorded."""
from __future__ import annotations

import getpass
import os
import socket
from pathlib import Path
from typing import Any

from adapters.flag_schema import FlagsConfig
from rollout.store import AuditEntry, RolloutStore, now

ACTOR_ENV = "FXPLAT_ACTOR"


def person() -> str:
    """Who is at the keyboard: $FXPLAT_ACTOR, else the login name."""
    if os.environ.get(ACTOR_ENV):
        return os.environ[ACTOR_ENV]
    try:
        return getpass.getuser()
    except (KeyError, OSError):  # no passwd entry (some containers)
        return f"uid:{os.getuid()}"


def controller_id() -> str:
    return f"rollout-controller:{socket.gethostname()}:{os.getpid()}"


def flatten(flags: FlagsConfig) -> dict[str, str]:
    """Every flag as `name -> value`, e.g. backtesting.grpc -> "25", market_analysis.methods.GetCandles.grpc -> "0"."""
    out = {"kill_switch": "on" if flags.kill_switch else "off"}
    for name, svc in flags.services.items():
        out[f"{name}.grpc"] = str(svc.grpc)
        out[f"{name}.shadow"] = str(svc.shadow)
        out[f"{name}.stickiness"] = svc.stickiness
        for method, m in svc.methods.items():
            out[f"{name}.methods.{method}.grpc"] = str(m.grpc)
    return out


def changes(before: FlagsConfig, after: FlagsConfig, *, actor: str, target: str, why: str,
            rollout_id: int | None = None) -> list[AuditEntry]:
    old, new = flatten(before), flatten(after)
    at = now()
    return [AuditEntry(at, actor, target, name, old.get(name, "-"), new.get(name, "-"), why, rollout_id)
            for name in sorted(old.keys() | new.keys()) if old.get(name) != new.get(name)]


async def record(data_dir: Path | None, entries: list[AuditEntry]) -> None:
    store = RolloutStore.for_data_dir(data_dir)
    try:
        await store.audit(entries)
    finally:
        await store.close()


def describe(entry: AuditEntry) -> str:
    return f"{entry.at:%Y-%m-%d %H:%M:%S} {entry.actor}: {entry.flag} {entry.old} -> {entry.new} ({entry.why or '-'})"


def to_json(entry: AuditEntry) -> dict[str, Any]:
    return {"at": entry.at.isoformat(), "actor": entry.actor, "target": entry.target, "flag": entry.flag,
            "old": entry.old, "new": entry.new, "why": entry.why, "rollout_id": entry.rollout_id}
