"""The fan-out rows of `fxplat bench` (fxplat.bench_fanout) on a real four-service stack, with a plan of a few
analyses: every analysis comes back whole on the phase's transport, and the stack's CPU per analysis is measured
(from /proc, over the services' processes) and says what the transports cost: JSON on every hop costs the stack more
CPU than protobuf. Nothing here is timed against a target."""
from __future__ import annotations

import asyncio

from fxplat import bench_fanout
from fxplat.bench import ServerProcess

TINY = bench_fanout.FanoutPlan(rounds=1, seq=(3, 0.0), conc=(0, 0.0))  # three analyses per transport, one caller


async def test_fanout_rows_carry_every_analysis_and_the_stacks_cpu_per_analysis(tmp_path):
    # On the session's loop, as every async test here (asyncio.run would leave the thread without a current loop for
    # the tests after it); starting and stopping the stack block, so they run in a thread.
    flags_file = bench_fanout.write_flags(tmp_path / "flags.yaml", "grpc")
    stack = ServerProcess(tmp_path, bench_fanout.SERVICES, flags_file=flags_file, name="stack")
    await asyncio.to_thread(stack.start)
    try:
        rows = await bench_fanout.run(stack, flags_file, concurrency=16, log=lambda line: None, plan=TINY)
    finally:
        await asyncio.to_thread(stack.stop)
    by = {r["transport"]: r for r in rows}
    assert set(by) == {"grpc", "rest"}
    for row in by.values():
        assert row["n"] == 3 and row["p50_ms"] > 0
        assert row["failed_analyses"] == 0 and row["failed_components"] == 0
        assert row["cpu_ms_per_analysis"] is not None and row["cpu_ms_per_analysis"] > 0
    # ~270 vs ~130 ms per analysis measured on a 2-core machine: JSON on every hop costs the stack more
    assert by["rest"]["cpu_ms_per_analysis"] > by["grpc"]["cpu_ms_per_analysis"]
