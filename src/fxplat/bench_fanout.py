"""The fan-out rows of `fxplat bench`: one analysis end to end, every hop on gRPC against every hop on REST.

One `fxplat up` process runs all four services with a flags file the benchmark rewrites between phases: gRPC 100 % for
every service, then 0 %, and again (the services reload it within a second; each phase starts only once an analysis
comes back served entirely by the phase's transport). The benchmark calls the coordinator (RunAnalysis, 3 symbols, H1,
sma_cross, three months) through the adapter forced to the phase's transport, so the first hop and the coordinator's
fan-out to Market Analysis, Causal Analysis and Backtesting (and Backtesting's calls to Market Analysis) all use the
one transport. Phases alternate, so drift in the machine's load hits both alike.
"""
from __future__ import annotations

import asyncio
import time
from dataclasses import asdict, dataclass
from datetime import datetime, timezone
from pathlib import Path

from services.common.errors import DomainError

COORDINATOR = "analysis_coordinator"
SERVICES = ("market_analysis", "causal_analysis", "backtesting", "analysis_coordinator")  # market first
SYMBOLS = ("EURUSD", "GBPUSD", "USDJPY")
START, END = datetime(2025, 3, 3, tzinfo=timezone.utc), datetime(2025, 6, 2, tzinfo=timezone.utc)
SWITCH_TIMEOUT_S = 30.0


@dataclass(frozen=True)
class FanoutPlan:
    rounds: int  # phases per transport, alternating
    seq: tuple[int, float]  # per phase, one call at a time: at least this many, no new one after (s)
    conc: tuple[int, float]  # per phase, 16 callers: at most this many analyses, no new one after (s)


PLAN = FanoutPlan(2, (8, 4.0), (48, 3.0))  # 48 < 64: _concurrent skips its 16-call warm-up


def flags_yaml(grpc_pct: int) -> str:
    lines = ["kill_switch: false", "services:"]
    for svc in SERVICES:
        lines += [f"  {svc}:", f"    grpc: {grpc_pct}"]
    return "\n".join(lines) + "\n"


def write_flags(path: Path, transport: str) -> Path:
    """Point every service's calls at `transport` (the stack reads this file)."""
    tmp = path.with_suffix(".tmp")
    tmp.write_text(flags_yaml(100 if transport == "grpc" else 0))
    tmp.replace(path)  # atomic: the stack never reads half a file
    return path


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
    failed_analyses: int = 0  # analyses that failed as a whole (an error instead of a report)
    # CPU of the whole stack (four services and their supervisor) per analysis, one caller: what an analysis costs,
    # steadier than its p50 on a small machine, where every component competes for the same cores
    cpu_ms_per_analysis: float | None = None


async def run(stack, flags_file: Path, *, concurrency: int, log, plan: FanoutPlan = PLAN) -> list[dict]:
    """`stack`: a started ServerProcess of all four services reading `flags_file`."""
    from adapters.connect import connect
    from adapters.flags import Flags
    from fxplat.bench import Row, _concurrent, _sequential
    from fxplat.loadgen import cpu_seconds
    from services.analysis_coordinator.models import AnalysisRequest
    from services.common.market_types import TimeRange, Timeframe
    from transport.auth import MintedTokens, Signer
    from transport.client_factory import ClientFactory
    from transport.config import Endpoint

    request = AnalysisRequest(SYMBOLS, Timeframe.H1, TimeRange(START, END), "sma_cross", {"fast": 10, "slow": 20})
    transports = ("grpc", "rest")
    rows = {t: Row("fan-out", len(SYMBOLS), f"RunAnalysis all-{t}", t) for t in transports}
    failed: dict[str, list] = {t: [] for t in transports}
    moved: dict[str, int] = {t: 0 for t in transports}  # component calls that left gRPC for REST (hedge, fallback)
    failed_analyses: dict[str, list] = {t: [] for t in transports}
    seq_cpu = {t: 0.0 for t in transports}  # stack CPU seconds over the sequential phases, and their analyses
    seq_calls = {t: 0 for t in transports}
    flags = Flags(flags_file, unleash_url="")  # for the adapter's own bookkeeping; the transport is forced
    tokens = MintedTokens(Signer(stack.auth_secret, "HS256"), sub="bench", scopes=["analysis:run"])
    t0 = time.perf_counter()
    async with ClientFactory(token_source=tokens) as factory:
        adapters = {t: connect(COORDINATOR, Endpoint(*stack.endpoints[COORDINATOR]), factory=factory, flags=flags,
                               caller="bench", force=t, budget_s=120.0) for t in transports}

        async def analyse(transport: str) -> list:
            analysis = await adapters[transport].run_analysis(request)
            return analysis.calls

        async def switch(transport: str) -> None:
            """Rewrite the stack's flags and wait until an analysis is served by `transport` throughout."""
            write_flags(flags_file, transport)
            deadline = time.monotonic() + SWITCH_TIMEOUT_S
            while True:
                calls = await analyse(transport)
                if all(c.transport == transport for c in calls):
                    return
                if time.monotonic() > deadline:
                    raise RuntimeError(f"the stack did not switch to {transport} within {SWITCH_TIMEOUT_S:.0f} s")
                await asyncio.sleep(0.2)

        def checked(transport: str):
            async def call():
                try:
                    calls = await analyse(transport)
                except DomainError as exc:  # the analysis failed as a whole: counted and shown, the run goes on
                    failed_analyses[transport].append(exc)
                    return
                # A call the adapter moved off gRPC (a hedge onto REST when gRPC was slow under 16 callers, a
                # fallback) is the platform working: counted and shown. One on the other transport without a reason
                # means the flags changed under us, and the rows would not mean what they say.
                moved[transport] += sum(1 for c in calls if c.fallback_reason)
                wrong = [c for c in calls if c.transport != transport and not c.fallback_reason]
                if wrong:
                    raise RuntimeError(f"all-{transport} analysis had a call served by {wrong[0].transport}")
                failed[transport] += [c for c in calls if c.status.value != "ok"]  # counted, and shown
            return call

        for _ in range(plan.rounds):
            for t in transports:
                await switch(t)
                lo, cap = plan.seq
                done, cpu0 = len(rows[t].samples_ms), cpu_seconds(stack.proc.pid)
                await _sequential({t: checked(t)}, {t: rows[t]}, lo, 10 * max(lo, 1), cap, warmup=0)
                cpu1 = cpu_seconds(stack.proc.pid)
                if cpu0 is not None and cpu1 is not None:
                    seq_cpu[t] += cpu1 - cpu0
                    seq_calls[t] += len(rows[t].samples_ms) - done
                await _concurrent(checked(t), rows[t], *plan.conc)  # adds to the row's 16-caller figures
        write_flags(flags_file, "grpc")
    log(f"  fan-out: {time.perf_counter() - t0:.1f} s")
    for t in transports:
        if moved[t]:
            log(f"  note: {moved[t]} component calls of all-{t} analyses were hedged or fell back to REST")
        if failed[t]:
            log(f"  warning: {len(failed[t])} component calls failed in all-{t} analyses, e.g. {failed[t][0]}")
        if failed_analyses[t]:
            log(f"  warning: {len(failed_analyses[t])} all-{t} analyses failed (their time is in the rows), e.g. "
                f"{failed_analyses[t][0]!r}")
    out = []
    for t, r in rows.items():
        cpu_ms = seq_cpu[t] / seq_calls[t] * 1000 if seq_calls[t] else None
        out.append(asdict(FanoutRow(t, r.n, r.p50_ms, r.p99_ms, r.conc_calls, r.calls_per_s, r.conc_p50_ms,
                                    len(failed[t]), len(failed_analyses[t]), cpu_ms)))
    return out
