"""The platform's one feature-flag evaluator: should this call go over gRPC, and should it be shadowed?

Offline (the default), flags.yaml is the whole truth and each decision is made in-process, bucketed exactly as
Unleash buckets the features translated out of the file (`adapters.flag_schema`; `Rollout` says why). There is no
thread and no network until `start()`, which watches the file and puts a valid edit in force within about a second.
With UNLEASH_URL set, UnleashClient evaluates every decision, bootstrapped from the file's features, and `start()`
polls the server.
"""
from __future__ import annotations

import json
import logging
import os
import random
import threading
from dataclasses import dataclass, replace
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Callable

import mmh3
from UnleashClient import UnleashClient
from UnleashClient.cache import BaseCache
from UnleashClient.constants import FEATURES_URL
from UnleashClient.utils import InstanceAllowType

from adapters.flag_schema import (
    DEFAULT_FLAGS,
    SERVICES,
    STICKINESS_FIELD,
    FlagsConfig,
    FlagsError,
    from_unleash_features,
    grpc_feature,
    parse_flags,
    shadow_feature,
    to_unleash_features,
)

log = logging.getLogger(__name__)

FLAGS_PATH_ENV = "FXPLAT_FLAGS"
UNLEASH_URL_ENV = "UNLEASH_URL"
UNLEASH_TOKEN_ENV = "UNLEASH_API_TOKEN"
APP_NAME = "fxplat"


@dataclass(frozen=True)
class FlagsSnapshot:
    flags: FlagsConfig
    source: str  # "file:<path>", "builtin", or "unleash:<url>" once the server has delivered
    loaded_at: datetime  # when the source last delivered these flags, UTC
    error: str | None = None  # the latest rejected update, while no good one has followed it


def find_flags_file(path: str | os.PathLike[str] | None = None) -> Path | None:
    """The flags file to use: `path`, else $FXPLAT_FLAGS, else ./flags.yaml; None means the built-in defaults.

    A file named by `path` or $FXPLAT_FLAGS must exist: falling back silently would hide a deployment mistake.
    """
    named = path or os.environ.get(FLAGS_PATH_ENV)
    if named:
        return Path(named).absolute()
    local = Path("flags.yaml")
    return local.absolute() if local.is_file() else None


class Flags:
    """Answers, per call, "gRPC or REST?" and "shadow this call?". Thread-safe; one per process is enough."""

    def __init__(
        self,
        path: str | os.PathLike[str] | None = None,
        *,
        unleash_url: str | None = None,
        unleash_token: str | None = None,
        refresh_interval: int = 1,
        request_timeout: int = 3,
        poll_interval: float = 0.5,
    ) -> None:
        """`unleash_url` None reads $UNLEASH_URL ("" forces offline); `unleash_token` None reads $UNLEASH_API_TOKEN.

        `refresh_interval` is the server poll period in whole seconds (UnleashClient's scheduler turns 0 into 1).
        Raises FlagsError if the flags file is unreadable or invalid: at startup there are no last good flags.
        """
        if refresh_interval < 1:
            raise ValueError(f"refresh_interval must be a whole number of seconds >= 1, got {refresh_interval!r}")
        self._path = find_flags_file(path)
        self._file_text = _read_text(self._path) if self._path else None
        flags = parse_flags(self._file_text, str(self._path)) if self._file_text is not None else DEFAULT_FLAGS
        self._snapshot = FlagsSnapshot(flags, f"file:{self._path}" if self._path else "builtin", _now())

        url = os.environ.get(UNLEASH_URL_ENV, "") if unleash_url is None else unleash_url
        self._server_url = url or None
        self._client: UnleashClient | None = None  # server mode only
        self._local = _NO_LOCAL_ROLLOUTS if self._server_url else local_rollouts(flags)
        if self._server_url:
            token = os.environ.get(UNLEASH_TOKEN_ENV) if unleash_token is None else unleash_token
            self._client = UnleashClient(
                url=self._server_url,
                app_name=APP_NAME,
                refresh_interval=refresh_interval,
                request_timeout=request_timeout,
                request_retries=0,  # the next poll, a second later, is the retry
                custom_headers={"Authorization": token} if token else None,
                cache=_MemoryCache(to_unleash_features(flags), on_features=self._on_server_features),
                multiple_instance_mode=InstanceAllowType.SILENTLY_ALLOW,
            )

        self._grpc_features = {service: grpc_feature(service) for service in SERVICES}
        self._shadow_features = {service: shadow_feature(service) for service in SERVICES}
        self._poll_interval = poll_interval
        self._stopping = threading.Event()
        self._watcher: threading.Thread | None = None

    # --- evaluation (hot path) ---

    def use_grpc(self, service: str, method: str, *, caller: str = "", key: str | None = None) -> bool:
        """True: make this call over gRPC; False: over REST.

        One decision covers the kill switch, the service percent and the method overrides. `key` keeps
        one request (or entity) on one transport under request_key stickiness; None decides each call afresh.
        """
        if (local := self._local.grpc.get(service)) is not None:
            return local[1].get(method, local[0]).enabled(caller, key)
        feature = _feature_of(self._grpc_features, service)
        return self._client.is_enabled(feature, _context(service, method, caller, key))

    def shadow(self, service: str, method: str, key: str | None = None) -> bool:
        """True: also send this call to the other transport and compare. Ask only for read calls, never writes."""
        if (local := self._local.shadow.get(service)) is not None:
            return local.enabled("", key)
        feature = _feature_of(self._shadow_features, service)
        return self._client.is_enabled(feature, _context(service, method, "", key))

    def may_shadow(self) -> bool:
        """False when flags.yaml shadows no service now; always True in server mode (the server may at any time)."""
        return bool(self._server_url) or any(r.percent > 0 for r in self._local.shadow.values())

    def snapshot(self) -> FlagsSnapshot:
        return self._snapshot

    @property
    def from_server(self) -> bool:
        """True when an Unleash server is the source (the file only bootstraps until its first answer)."""
        return self._server_url is not None

    # --- following the source ---

    def start(self) -> None:
        """Follow the source: watch the file (offline) or poll the server (server mode). Idempotent.

        In server mode this blocks for the first fetch (at most `request_timeout` s per request); a server that
        is down leaves the bootstrap flags in force and is retried every `refresh_interval` s.
        """
        if self._server_url:
            if not self._client.is_initialized:
                self._client.initialize_client()
        elif self._path and self._watcher is None:
            self._watcher = threading.Thread(target=self._watch_file, name="fxplat-flags-watch", daemon=True)
            self._watcher.start()

    def close(self) -> None:
        """Stop following the source, for good. Evaluation keeps answering from the flags in force."""
        self._stopping.set()
        if self._watcher is not None:
            self._watcher.join()
            self._watcher = None
        # Only a started client has a scheduler to stop; destroy() on any other just logs a warning.
        if self._client is not None and self._client.is_initialized:
            self._client.destroy()

    def __enter__(self) -> Flags:
        self.start()
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    def _watch_file(self) -> None:
        # Compares contents, not mtime: two same-size writes within one clock tick leave mtime and size unchanged.
        while not self._stopping.wait(self._poll_interval):
            try:
                text = _read_text(self._path)
            except FlagsError as exc:
                if self._file_text is not None:  # report a vanished file once, and reload when it is back
                    self._file_text = None
                    self._reject(str(exc))
                continue
            if text != self._file_text:
                self._file_text = text
                self._apply_file(text)

    def _apply_file(self, text: str) -> None:
        try:
            flags = parse_flags(text, str(self._path))
        except FlagsError as exc:
            self._reject(str(exc))
            return
        self._local = local_rollouts(flags)
        self._snapshot = FlagsSnapshot(flags, self._snapshot.source, _now())
        log.info("flags reloaded from %s", self._path)

    def _on_server_features(self, raw_features: str) -> None:
        # Runs on UnleashClient's polling thread, for each state the server sends (not for 304 Not Modified).
        source = f"unleash:{self._server_url}"
        try:
            flags = from_unleash_features(json.loads(raw_features), source)
        except ValueError as exc:  # FlagsError, or a body that is not JSON
            self._reject(f"{exc} (evaluation follows the server regardless)")
            return
        self._snapshot = FlagsSnapshot(flags, source, _now())

    def _reject(self, problem: str) -> None:
        log.warning("flags update rejected, the flags from %s stay in force: %s", self._snapshot.source, problem)
        self._snapshot = replace(self._snapshot, error=problem)


@dataclass(frozen=True)
class Rollout:
    """One of the file's shares (a `flexibleRollout` in the Unleash features built from it), decided in-process the
    way Unleash decides it: murmur3("<groupId>:<stickiness value>") % 100 + 1 <= percent. One hash instead of an
    Unleash evaluation, which costs 30 µs in a tight loop and about 300 µs amid live traffic (JSON and several FFI
    calls per decision). tests/test_flags.py checks both agree for every share and many keys."""

    group: str
    percent: int  # 0 under the kill switch
    field: str = "requestKey"  # the context field hashed (flag_schema.STICKINESS_FIELD)

    def enabled(self, caller: str, key: str | None) -> bool:
        if self.percent <= 0 or self.percent >= 100:
            return self.percent >= 100
        if self.field == "random":
            return random.randint(1, 100) <= self.percent
        context = _context("", "", caller, key)
        return mmh3.hash(f"{self.group}:{context[self.field]}", 0, signed=False) % 100 + 1 <= self.percent


@dataclass(frozen=True)
class LocalRollouts:
    """Offline, flags.yaml is the whole truth: per service, (its default, {overridden method: rollout}) for gRPC and
    its shadow rollout. Server mode has none and asks Unleash: the server may hold strategies flags.yaml cannot say."""

    grpc: dict[str, tuple[Rollout, dict[str, Rollout]]]
    shadow: dict[str, Rollout]


_NO_LOCAL_ROLLOUTS = LocalRollouts({}, {})


def local_rollouts(flags: FlagsConfig) -> LocalRollouts:
    def rollout(group: str, percent: int, stickiness: str = "request_key") -> Rollout:
        return Rollout(group, 0 if flags.kill_switch else percent, STICKINESS_FIELD[stickiness])

    grpc = {}
    for name, svc in flags.services.items():
        group = grpc_feature(name)
        grpc[name] = (rollout(group, svc.grpc, svc.stickiness),
                      {method: rollout(group, m.grpc, svc.stickiness) for method, m in svc.methods.items()})
    shadow = {name: rollout(shadow_feature(name), svc.shadow) for name, svc in flags.services.items()}
    return LocalRollouts(grpc, shadow)


def _context(service: str, method: str, caller: str, key: str | None) -> dict[str, str]:
    # Both stickiness fields are always filled: a rollout hashing a field missing from the context is off, even at
    # 100 %. With no key, a fresh one per call makes the percent a share of calls; an anonymous caller is
    # bucketed by that key too, rather than all anonymous calls sharing one bucket.
    key = key or f"{random.getrandbits(64):016x}"
    return {"requestKey": key, "caller": caller or key, "service": service, "method": method}


def _feature_of(features: dict[str, str], service: str) -> str:
    try:
        return features[service]
    except KeyError:
        raise ValueError(f"unknown service {service!r}; known services: {', '.join(SERVICES)}") from None


class _MemoryCache(BaseCache):
    """UnleashClient's state store, in memory (its FileCache writes to disk). Bootstrapped: the client evaluates
    these features from construction on. In server mode the client writes each fetched state here, which is how
    the snapshot learns about it."""

    def __init__(self, features: dict[str, Any], on_features: Callable[[str], None] | None = None) -> None:
        self._entries: dict[str, Any] = {FEATURES_URL: json.dumps(features)}
        self._on_features = on_features
        self.bootstrapped = True

    def set(self, key: str, value: Any) -> None:
        self._entries[key] = value
        if key == FEATURES_URL and self._on_features is not None:
            self._on_features(value)

    def mset(self, data: dict[str, Any]) -> None:
        self._entries.update(data)

    def get(self, key: str, default: Any = None) -> Any:
        return self._entries.get(key, default)

    def exists(self, key: str) -> bool:
        return key in self._entries

    def destroy(self) -> None:
        self._entries.clear()


def _read_text(path: Path) -> str:
    try:
        return path.read_text(encoding="utf-8")
    except OSError as exc:
        raise FlagsError(f"{path}: cannot read: {exc.strerror}") from None


def _now() -> datetime:
    return datetime.now(timezone.utc)
