"""How hard each service's callers try gRPC, in one place: the breaker of every service and the time bounds of every
kind of method.

A method's kind (in its MethodPolicy) gives two times:
- `attempt_s`: the longest one gRPC attempt may take. The attempt also gets at most ATTEMPT_SHARE of what remains of
  the call's budget, so a hung or slow gRPC path always leaves time for REST. Once enough calls were seen, the bound
  follows their latency (ADAPT_FACTOR times the observed p99), but never above `attempt_s` nor below ADAPT_FLOOR times
  `slow_s` (a slow call is then seen finishing slow, and judged by the slow-call rate, before it is cut as failed).
- `slow_s`: the slow-call threshold the breaker judges by.
- `hedge`: whether reads of this kind are hedged onto REST: a read whose gRPC attempt has not answered after
  HEDGE_FACTOR times the method's observed p95 (at most `slow_s`) is also sent over REST, and the first answer wins.
  Only cheap reads are hedged, whose REST backup costs the server about what the gRPC call costs: not a model fit
  (hedging it doubles its CPU exactly when the server is slowest), nor a bulk answer (100k bars as JSON cost the
  server and the caller ~25x the protobuf call: under load, when every call is slow, hedging them multiplied the load
  that made them slow, 63 -> 4-11 calls/s with 16 callers). A bulk method may hedge its small calls (MethodPolicy's
  `hedge_if`). Hedges are throttled like gRPC's retry throttling: each call earns HEDGE_TOKEN_RATIO of a token, a hedge
  spends one, at most HEDGE_TOKENS are saved. So hedges add at most ~10 % calls; when gRPC hangs for every call, the
  attempt bound and the breaker move traffic instead.
"""
from __future__ import annotations

from dataclasses import dataclass, field

from adapters.breaker import BreakerConfig

ATTEMPT_SHARE = 0.5
ADAPT_FACTOR = 8.0
ADAPT_FLOOR = 2.5
ADAPT_MIN_SAMPLES = 32
HEDGE_FACTOR = 3.0
HEDGE_MIN_S = 0.05
HEDGE_TOKENS = 10.0
HEDGE_TOKEN_RATIO = 0.1


@dataclass(frozen=True)
class Kind:
    attempt_s: float
    slow_s: float
    hedge: bool


# lookup: small reads that answer in milliseconds; bulk: reads whose answer grows with the range asked (a page of
# 100k bars takes a second on a busy box; not hedged, see above); compute: model fits, backtests and analyses that
# may take many seconds on a large range (their attempt is bounded by the budget share, in practice).
KINDS = {"lookup": Kind(attempt_s=3.0, slow_s=1.0, hedge=True),
         "bulk": Kind(attempt_s=15.0, slow_s=5.0, hedge=False),
         "compute": Kind(attempt_s=60.0, slow_s=10.0, hedge=False)}


@dataclass(frozen=True)
class ServiceResilience:
    breaker: BreakerConfig = BreakerConfig()
    kinds: dict[str, Kind] = field(default_factory=lambda: dict(KINDS))


# resilience4j's defaults judge a window of 100; 20 calls of 16 callers make the breaker decide within one attempt
# bound of a hang, and still need 10 calls before any verdict.
SERVICES: dict[str, ServiceResilience] = {
    "market_analysis": ServiceResilience(),
    "causal_analysis": ServiceResilience(),
    "backtesting": ServiceResilience(),
    # Few, long calls: a shorter window by time, so a handful of failures in the last minute is judged.
    "analysis_coordinator": ServiceResilience(BreakerConfig(window="time", window_size=60, min_calls=5)),
}


def for_service(service: str) -> ServiceResilience:
    return SERVICES.get(service) or ServiceResilience()
