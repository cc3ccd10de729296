"""A rollout: which service (or method) moves to gRPC, through which shares, how long each step is watched, and the
thresholds its checks use. Thresholds are stored with the rollout, so a controller restarted with other defaults
still judges it by the numbers it started with.

Defaults (docs/rollout.md explains each):
    min_samples         50     shadow comparisons needed in a step's window before parity can pass
    max_mismatch_rate   0.001  shadow mismatches / comparisons allowed (0.1 %)
    error_margin        0.01   gRPC's error rate may exceed REST's by at most 1 point (domain errors do not count)
    latency_factor      1.5    gRPC p99 at most 1.5 x REST p99 (server side)
    max_fallback_rate   0.02   fallbacks to REST per gRPC attempt at most 2 %
    max_breaker_opens   0      no breaker of any caller seen open during the step
"""
from __future__ import annotations

import re
from dataclasses import asdict, dataclass, field, fields
from datetime import datetime, timedelta
from typing import Any

DEFAULT_STEPS = (1, 5, 25, 50, 100)
DEFAULT_INTERVAL_S = 300.0
DEFAULT_MAX_FAILED_CHECKS = 2

# States. Active: the controller (or a person) still has something to do.
RUNNING, PAUSED = "running", "paused"
PROMOTED, ROLLED_BACK, ABORTED = "promoted", "rolled_back", "aborted"
ACTIVE = (RUNNING, PAUSED)
FINAL = (PROMOTED, ROLLED_BACK, ABORTED)


@dataclass(frozen=True)
class Thresholds:
    min_samples: int = 50
    max_mismatch_rate: float = 0.001
    error_margin: float = 0.01
    latency_factor: float = 1.5
    max_fallback_rate: float = 0.02
    max_breaker_opens: int = 0

    def to_json(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> Thresholds:
        known = {f.name for f in fields(cls)}
        return cls(**{k: v for k, v in data.items() if k in known})


@dataclass
class Rollout:
    id: int
    service: str
    method: str  # "" = the whole service
    steps: list[int]
    interval_s: float
    max_failed_checks: int
    thresholds: Thresholds
    flag_target: str  # "file:/abs/flags.yaml" or "unleash:<admin url>"
    state: str = RUNNING
    step_index: int = 0
    step_started_at: datetime | None = None
    failed_checks: int = 0
    baseline: dict[str, Any] = field(default_factory=dict)  # the metric source's marker at the step's start
    created_by: str = ""
    created_at: datetime | None = None
    updated_at: datetime | None = None
    version: int = 0  # compare-and-swap: every write names the version it read

    @property
    def target(self) -> str:
        return f"{self.service}.{self.method}" if self.method else self.service

    @property
    def percent(self) -> int:
        """The gRPC share this rollout wants in the flags now."""
        if self.state == PROMOTED:
            return 100
        if self.state in (ROLLED_BACK, ABORTED):
            return 0
        return self.steps[self.step_index]

    @property
    def next_check_at(self) -> datetime | None:
        if self.state != RUNNING or self.step_started_at is None:
            return None
        return self.step_started_at + timedelta(seconds=self.interval_s)


def parse_steps(text: str) -> list[int]:
    """"1,5,25,50,100" -> [1, 5, 25, 50, 100]: increasing percents in 1..100 that end at 100."""
    try:
        steps = [int(part) for part in text.replace(" ", "").split(",") if part]
    except ValueError:
        raise ValueError(f"--steps must be comma-separated whole percents, e.g. 1,5,25,50,100, not {text!r}") from None
    if not steps or any(not 1 <= s <= 100 for s in steps):
        raise ValueError(f"--steps must be percents between 1 and 100, not {text!r}")
    if any(b <= a for a, b in zip(steps, steps[1:])):
        raise ValueError(f"--steps must increase, not {text!r}")
    if steps[-1] != 100:
        raise ValueError(f"--steps must end at 100 (a rollout ends with every call on gRPC), not {text!r}")
    return steps


_DURATION = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*(ms|s|m|h)?\s*$")
_UNIT_S = {"ms": 0.001, "s": 1.0, "m": 60.0, "h": 3600.0, None: 1.0}


def parse_duration(text: str, what: str = "--interval") -> float:
    """"5m" -> 300.0; "3s", "1.5h", "250ms", a bare number is seconds."""
    match = _DURATION.match(text)
    if not match or float(match.group(1)) <= 0:
        raise ValueError(f"{what} must be a positive duration like 30s, 5m or 1h, not {text!r}")
    return float(match.group(1)) * _UNIT_S[match.group(2)]
