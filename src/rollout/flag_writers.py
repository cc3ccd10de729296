"""Where a rollout sets its shares: flags.yaml (through adapters.flag_edit: atomic, comments kept) or an Unleash
server (through adapters.unleash_admin). Both answer with the flags before and after the change, which the caller
turns into audit rows; both read the flags in force, so a controller can compare what it wants with what is there."""
from __future__ import annotations

import asyncio
import os
from pathlib import Path
from typing import Any, Protocol

from adapters import flag_edit
from adapters.flag_schema import (
    KILL_SWITCH_FEATURE,
    SERVICES,
    FlagsConfig,
    MethodFlags,
    from_unleash_features,
    grpc_feature,
    parse_flags,
    shadow_feature,
)
from adapters.unleash_admin import ADMIN_TOKEN_ENV, ADMIN_URL_ENV, UnleashAdmin


class FlagWriter(Protocol):
    target: str  # "file:/abs/flags.yaml" or "unleash:<admin url>"

    def read(self) -> FlagsConfig: ...

    def set_share(self, service: str, method: str, grpc: int | None = None,
                  shadow: int | None = None) -> tuple[FlagsConfig, FlagsConfig]: ...


def share_of(flags: FlagsConfig, service: str, method: str) -> int:
    """The gRPC percent the flags give `service` (or its `method`), the kill switch aside."""
    svc = flags.services[service]
    return svc.methods[method].grpc if method and method in svc.methods else svc.grpc


def with_share(flags: FlagsConfig, service: str, method: str, grpc: int | None = None,
               shadow: int | None = None) -> FlagsConfig:
    """`flags` with the service's (or its method's) gRPC share and/or shadow share changed."""
    svc = flags.services[service]
    update: dict[str, Any] = {}
    if grpc is not None and method:
        update["methods"] = {**svc.methods, method: MethodFlags(grpc=grpc)}
    elif grpc is not None:
        update["grpc"] = grpc
    if shadow is not None:
        update["shadow"] = shadow
    return FlagsConfig(kill_switch=flags.kill_switch, services={**flags.services, service: svc.model_copy(update=update)})


class FileWriter:
    def __init__(self, path: Path) -> None:
        self.path = Path(path).absolute()
        self.target = f"file:{self.path}"

    def read(self) -> FlagsConfig:
        return parse_flags(self.path.read_text(encoding="utf-8"), str(self.path))

    def set_share(self, service: str, method: str, grpc: int | None = None,
                  shadow: int | None = None) -> tuple[FlagsConfig, FlagsConfig]:
        before = self.read()
        after = flag_edit.edit(self.path, flag_edit.set_service(service, grpc=grpc, method=method or None,
                                                                shadow=shadow))
        return before, after


class UnleashWriter:
    """Reads the platform's features from the admin API, changes one share, pushes the whole state back (push is
    idempotent and only touches what differs)."""

    def __init__(self, url: str, token: str, project: str = "default", environment: str = "development") -> None:
        self.url, self._token, self._project, self._environment = url, token, project, environment
        self.target = f"unleash:{url}"

    def _admin(self) -> UnleashAdmin:
        return UnleashAdmin(self.url, self._token, project=self._project, environment=self._environment)

    def read(self) -> FlagsConfig:
        with self._admin() as admin:
            features = [_client_shape(admin, name) for name in _names()]
            return from_unleash_features({"features": [f for f in features if f is not None]}, self.target)

    def set_share(self, service: str, method: str, grpc: int | None = None,
                  shadow: int | None = None) -> tuple[FlagsConfig, FlagsConfig]:
        before = self.read()
        after = with_share(before, service, method, grpc, shadow)
        with self._admin() as admin:
            admin.push(after)
        return before, after


def _names() -> list[str]:
    return [KILL_SWITCH_FEATURE, *(grpc_feature(s) for s in SERVICES), *(shadow_feature(s) for s in SERVICES)]


def _client_shape(admin: UnleashAdmin, name: str) -> dict[str, Any] | None:
    """An admin-API feature in the client API's shape (what from_unleash_features reads)."""
    feature = admin.feature(name)
    if feature is None:
        return None
    environment = next((e for e in feature.get("environments", []) if e["name"] == admin.environment), {})
    return {"name": name, "enabled": bool(environment.get("enabled")),
            "strategies": environment.get("strategies", []),
            "dependencies": [{"feature": d["feature"], "enabled": d.get("enabled", True)}
                             for d in feature.get("dependencies", [])]}


def parse_target(target: str) -> FlagWriter:
    """The writer a stored rollout names. Unleash needs its admin token from UNLEASH_ADMIN_TOKEN."""
    kind, _, where = target.partition(":")
    if kind == "file":
        return FileWriter(Path(where))
    if kind == "unleash":
        token = os.environ.get(ADMIN_TOKEN_ENV)
        if not token:
            raise ValueError(f"this rollout sets flags on {where}: set {ADMIN_TOKEN_ENV}")
        return UnleashWriter(where, token, os.environ.get("UNLEASH_PROJECT", "default"),
                             os.environ.get("UNLEASH_ENVIRONMENT", "development"))
    raise ValueError(f"unknown flag target {target!r}")


def from_env(flags_path: Path | None) -> FlagWriter:
    """Unleash when UNLEASH_ADMIN_URL is set (with UNLEASH_ADMIN_TOKEN), else the flags file."""
    if os.environ.get(ADMIN_URL_ENV):
        return parse_target(f"unleash:{os.environ[ADMIN_URL_ENV]}")
    if os.environ.get("UNLEASH_URL"):  # the services follow the server: editing the file would change nothing
        raise ValueError(f"UNLEASH_URL is set, so the services follow the Unleash server: set {ADMIN_URL_ENV} and "
                         f"{ADMIN_TOKEN_ENV} for the rollout to set its shares there")
    if flags_path is None:
        raise ValueError("no flags file: pass --flags FILE or set FXPLAT_FLAGS (or run where flags.yaml is)")
    return FileWriter(flags_path)


async def set_share(writer: FlagWriter, *args: Any, **kwargs: Any) -> tuple[FlagsConfig, FlagsConfig]:
    """`writer.set_share` off the event loop (file I/O, or HTTP to Unleash)."""
    return await asyncio.to_thread(writer.set_share, *args, **kwargs)
