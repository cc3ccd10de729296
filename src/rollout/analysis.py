"""The four checks of a rollout step, each a plain verdict with the number it saw and the limit it held it to, so
every decision can be explained from what was recorded.

- parity      shadow mismatch rate <= max_mismatch_rate, over at least min_samples comparisons (fewer fails: no
              evidence is not good evidence, as in Flagger);
- errors      gRPC's transport error rate <= REST's + error_margin (domain errors do not count; no gRPC calls passes);
- latency     gRPC p99 <= REST p99 x latency_factor (passes when either side has no calls in the window);
- resilience  fallbacks per gRPC attempt <= max_fallback_rate and breakers seen open <= max_breaker_opens.
"""
from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any

from rollout.evidence import Evidence
from rollout.model import Thresholds


@dataclass(frozen=True)
class Check:
    name: str
    passed: bool
    value: str
    limit: str
    detail: str

    def to_json(self) -> dict[str, Any]:
        return asdict(self)


def analyse(e: Evidence, t: Thresholds) -> list[Check]:
    return [parity(e, t), errors(e, t), latency(e, t), resilience(e, t)]


def parity(e: Evidence, t: Thresholds) -> Check:
    if e.shadow_samples < t.min_samples:
        return Check("parity", False, f"{e.shadow_samples} samples", f">= {t.min_samples} samples",
                     f"only {e.shadow_samples} shadow comparisons in the window; {t.min_samples} needed "
                     "(is shadow on? fxplat flags set SERVICE --shadow PCT)")
    rate = e.shadow_mismatches / e.shadow_samples
    return Check("parity", rate <= t.max_mismatch_rate, f"{rate:.2%}", f"<= {t.max_mismatch_rate:.2%}",
                 f"{e.shadow_mismatches} of {e.shadow_samples} shadow comparisons differed")


def errors(e: Evidence, t: Thresholds) -> Check:
    grpc, rest = e.error_rate("grpc"), e.error_rate("rest")
    return Check("errors", grpc <= rest + t.error_margin, f"gRPC {grpc:.2%} vs REST {rest:.2%}",
                 f"<= REST + {t.error_margin:.2%}",
                 f"transport errors: gRPC {e.errors.get('grpc', 0):.0f} of {e.calls.get('grpc', 0):.0f} calls, "
                 f"REST {e.errors.get('rest', 0):.0f} of {e.calls.get('rest', 0):.0f}")


def latency(e: Evidence, t: Thresholds) -> Check:
    grpc, rest = e.p99_ms.get("grpc"), e.p99_ms.get("rest")
    if grpc is None or rest is None:
        return Check("latency", True, "n/a", f"<= REST x {t.latency_factor:g}",
                     "one transport served no call in the window: nothing to compare")
    return Check("latency", grpc <= rest * t.latency_factor, f"gRPC p99 {grpc:.1f} ms vs REST {rest:.1f} ms",
                 f"<= REST x {t.latency_factor:g}", "server-side p99 per transport")


def resilience(e: Evidence, t: Thresholds) -> Check:
    rate = e.fallbacks / e.grpc_attempts if e.grpc_attempts else 0.0
    ok = rate <= t.max_fallback_rate and e.breakers_open <= t.max_breaker_opens
    return Check("resilience", ok, f"fallbacks {rate:.2%}, breakers open {e.breakers_open}",
                 f"<= {t.max_fallback_rate:.2%}, <= {t.max_breaker_opens}",
                 f"{e.fallbacks:.0f} fallbacks to REST of {e.grpc_attempts:.0f} gRPC attempts")
