"""The platform's one feature-flag evaluator: should this call go over gRPC, and should it be shadowed?

UnleashClient evaluates every decision locally, from features translated out of flags.yaml (`adapters.flag_schema`).
Offline (the default) there is no thread and no network until `start()`, which watches the file and puts a valid edit
in force within about a second. With UNLEASH_URL set, the file's features are the bootstrap and `start()` polls the
server instead.
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

from UnleashClient import UnleashClient
from UnleashClient.cache import BaseCache
from UnleashClient.constants import FEATURES_URL
from UnleashClient.utils import InstanceAllowType

from adapters.flag_schema import (
    DEFAULT_FLAGS,
    SERVICES,
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
        else:
            self._client = _offline_client(flags)
        # Offline, flags.yaml is the whole truth, so answers that cannot vary are known up front. Server mode always
        # asks Unleash: the server may hold strategies that flags.yaml cannot express.
        self._fixed = _NOTHING_FIXED if self._server_url else fixed_answers(flags)

        self._grpc_features = {service: grpc_feature(service) for service in SERVICES}
        self._shadow_features = {service: shadow_feature(service) for service in SERVICES}
        self._poll_interval = poll_interval
        self._stopping = threading.Event()
        self._watcher: threading.Thread | None = None

    # --- evaluation (hot path) ---

    def use_grpc(self, service: str, method: str, *, caller: str = "", key: str | None = None) -> bool:
        """True: make this call over gRPC; False: over REST.

        One Unleash evaluation covers the kill switch, the service percent and the method overrides. `key` keeps
        one request (or entity) on one transport under request_key stickiness; None decides each call afresh.
        """
        fixed = self._fixed.grpc.get(service)
        if fixed is not None:
            answer = fixed[1].get(method, fixed[0])
            if answer is not None:
                return answer
        feature = _feature_of(self._grpc_features, service)
        return self._client.is_enabled(feature, _context(service, method, caller, key))

    def shadow(self, service: str, method: str, key: str | None = None) -> bool:
        """True: also send this call to the other transport and compare. Ask only for read calls, never writes."""
        answer = self._fixed.shadow.get(service)
        if answer is not None:
            return answer
        feature = _feature_of(self._shadow_features, service)
        return self._client.is_enabled(feature, _context(service, method, "", key))

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
        if self._client.is_initialized:
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
        # A new client rather than new state pushed into the old one: UnleashClient has no public way to do that.
        # Calls already holding the old client finish on it; an offline client owns no thread to stop.
        self._client = _offline_client(flags)
        self._fixed = fixed_answers(flags)  # a call between these two lines sees old or new flags: both were valid
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
class FixedAnswers:
    """Decisions that need no evaluation: per service, (its default, {overridden method: answer}) for gRPC, and its
    shadow answer. None marks a share strictly between 0 and 100 %, which Unleash must bucket per key."""

    grpc: dict[str, tuple[bool | None, dict[str, bool | None]]]
    shadow: dict[str, bool | None]


_NOTHING_FIXED = FixedAnswers({}, {})


def _fixed(percent: int, kill_switch: bool) -> bool | None:
    if kill_switch:
        return False
    return {0: False, 100: True}.get(percent)


def fixed_answers(flags: FlagsConfig) -> FixedAnswers:
    """What Unleash would answer for every 0 % / 100 % share (and everything under the kill switch), computed once per
    flags load: `is_enabled` costs 30-200 µs per call, the lookup under 1 µs. tests/test_flags.py checks the two agree."""
    grpc = {
        name: (_fixed(svc.grpc, flags.kill_switch),
               {method: _fixed(m.grpc, flags.kill_switch) for method, m in svc.methods.items()})
        for name, svc in flags.services.items()
    }
    shadow = {name: _fixed(svc.shadow, flags.kill_switch) for name, svc in flags.services.items()}
    return FixedAnswers(grpc, shadow)


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


def _offline_client(flags: FlagsConfig) -> UnleashClient:
    # Bootstrapped and never initialized: is_enabled() works at once, with no thread and no network.
    return UnleashClient(
        url="http://offline.invalid",  # required, never contacted
        app_name=APP_NAME,
        cache=_MemoryCache(to_unleash_features(flags)),
        disable_metrics=True,
        disable_registration=True,
        # The client registry counts instances forever (destroy() does not decrement it), and every reload builds one.
        multiple_instance_mode=InstanceAllowType.SILENTLY_ALLOW,
    )


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
