"""The fan-out rows of `fxplat bench`: one analysis end to end, every hop on gRPC against every hop on REST.

Two `fxplat up` processes run all four services, one with flags at gRPC 100 % for every service, one at 0 %. The
benchmark calls each one's coordinator (RunAnalysis, 3 symbols, H1, sma_cross, three months) through the flagged adapter
with the same flags, so the first hop and the coordinator's fan-out to Market Analysis, Causal Analysis and Backtesting
(and Backtesting's calls to Market Analysis) all use the one transport. Both stacks run side by side in this run and are
called alternately; every analysis is checked to have been served entirely by the expected transport.
"""
from __future__ import annotations

import time
from dataclasses import asdict, dataclass
from datetime import datetime, timezone
from pathlib import Path

COORDINATOR = "analysis_coordinator"
SERVICES = ("market_analysis", "causal_analysis", "backtesting", "analysis_coordinator")  # market first
SYMBOLS = ("EURUSD", "GBPUSD", "USDJPY")
START, END = datetime(2025, 3, 3, tzinfo=timezone.utc), datetime(2025, 6, 2, tzinfo=timezone.utc)


@dataclass(frozen=True)
class FanoutPlan:
    seq: tuple[int, int, float]  # interleaved rounds: at least, at most, no new round after (s)
    conc: tuple[int, float]  # 16 callers: at most this many analyses, no new one after (s)


FULL = FanoutPlan((10, 60, 6.0), (160, 4.0))
QUICK = FanoutPlan((2, 4, 0.5), (0, 0.0))  # a smoke run: sequential only


def flags_yaml(grpc_pct: int) -> str:
    lines = ["kill_switch: false", "services:"]
    for svc in SERVICES:
        lines += [f"  {svc}:", f"    grpc: {grpc_pct}"]
    return "\n".join(lines) + "\n"


def write_flags(workdir: Path) -> dict[str, Path]:
    """transport -> the flags file both the stack and the benchmark's adapter read."""
    paths = {"grpc": workdir / "stack-grpc.yaml", "rest": workdir / "stack-rest.yaml"}
    paths["grpc"].write_text(flags_yaml(100))
    paths["rest"].write_text(flags_yaml(0))
    return paths


@dataclass
class FanoutRow:
    transport: str
    n: int = 0
    p50_ms: float | None = None
    p99_ms: float | None = None
    conc_calls: int = 0
    calls_per_s: float | None = None
    conc_p50_ms: float | None = None
    failed_components: int = 0  # component calls that failed inside the analyses (the report still came back)


async def run(stacks: dict, flags_files: dict[str, Path], *, quick: bool, concurrency: int, log) -> list[dict]:
    """`stacks`: transport -> a started ServerProcess of all four services with that transport's flags."""
    from adapters.connect import connect
    from adapters.flags import Flags
    from fxplat.bench import Row, _concurrent, _sequential
    from services.analysis_coordinator.models import AnalysisRequest
    from services.common.market_types import TimeRange, Timeframe
    from transport.auth import MintedTokens, Signer
    from transport.client_factory import ClientFactory
    from transport.config import Endpoint

    plan = QUICK if quick else FULL
    request = AnalysisRequest(SYMBOLS, Timeframe.H1, TimeRange(START, END), "sma_cross", {"fast": 10, "slow": 20})
    rows = {t: Row("fan-out", len(SYMBOLS), f"RunAnalysis all-{t}", t) for t in stacks}
    flags = {t: Flags(flags_files[t], unleash_url="") for t in stacks}
    factories = {t: ClientFactory(token_source=MintedTokens(Signer(s.auth_secret, "HS256"), sub="bench",
                                                           scopes=["analysis:run"])) for t, s in stacks.items()}
    try:
        adapters = {t: connect(COORDINATOR, Endpoint(*s.endpoints[COORDINATOR]), factory=factories[t], flags=flags[t],
                               caller="bench", budget_s=120.0) for t, s in stacks.items()}

        failed: dict[str, list] = {t: [] for t in stacks}

        def checked(transport: str):
            async def call():
                analysis = await adapters[transport].run_analysis(request)
                wrong = [c for c in analysis.calls if c.transport != transport]
                if wrong:  # the flags did not take: the rows would not mean what they say
                    raise RuntimeError(f"all-{transport} analysis had a call served by {wrong[0].transport}: "
                                       f"{wrong[0]}")
                failed[transport] += [c for c in analysis.calls if c.status.value != "ok"]  # counted, and shown
                return analysis
            return call

        calls = {f"RunAnalysis all-{t}": checked(t) for t in stacks}
        by_name = {f"RunAnalysis all-{t}": rows[t] for t in stacks}
        t0 = time.perf_counter()
        lo, hi, cap = plan.seq
        await _sequential(calls, by_name, lo, hi, cap, warmup=1)
        for name, call in calls.items():
            max_calls, cap = plan.conc
            await _concurrent(call, by_name[name], max_calls, cap)
        log(f"  fan-out: {time.perf_counter() - t0:.1f} s")
    finally:
        for factory in factories.values():
            await factory.close()
    for t, calls_failed in failed.items():
        if calls_failed:
            log(f"  warning: {len(calls_failed)} component calls failed on the all-{t} stack, e.g. {calls_failed[0]}")
    return [asdict(FanoutRow(t, r.n, r.p50_ms, r.p99_ms, r.conc_calls, r.calls_per_s, r.conc_p50_ms,
                             len(failed[t]))) for t, r in rows.items()]
