"""Shadow (canary) calls: a sampled share of read calls also goes to the other transport, concurrently with the
primary call (made by the shadow worker process); the caller gets the primary's outcome and never waits for the
shadow, whose failure or slowness cannot reach it. Both outcomes are compared as domain objects and the comparison is
recorded.

Comparison rules: floats and float arrays within a relative tolerance (NaN equals NaN), everything else exactly;
errors by code; fields that legitimately differ between two calls are ignored per method (`MethodPolicy.shadow_ignore`,
dotted paths without indices, e.g. "calls.latency_ms").
"""
from __future__ import annotations

import asyncio
import dataclasses
import logging
import math
from collections.abc import Awaitable, Callable
from datetime import datetime, timezone
from enum import Enum
from typing import Any

import numpy as np

from adapters.shadow_worker import Outcome, ShadowCall, ShadowWorker
from transport.metrics import SHADOW_COMPARISONS, SHADOW_DROPPED

log = logging.getLogger("fxplat.shadow")

REL_TOLERANCE = 1e-9
ABS_TOLERANCE = 1e-12
MAX_DIFFS = 10  # per comparison: enough to see the pattern, small enough to store every one


@dataclasses.dataclass(frozen=True)
class Difference:
    path: str
    primary: str
    shadow: str


@dataclasses.dataclass(frozen=True)
class Comparison:
    """One shadowed call: both transports' outcomes ("OK" or an error code) and latencies, and what differed."""

    at: datetime
    service: str
    method: str
    primary_transport: str
    primary_code: str
    primary_latency_s: float
    shadow_transport: str
    shadow_code: str
    shadow_latency_s: float
    diffs: tuple[Difference, ...]

    @property
    def match(self) -> bool:
        return not self.diffs


class Shadower:
    """Sends shadow calls to the shadow worker process and hands each comparison to `record` (e.g. the canary store).
    The caller's process only pickles the call and writes it to a socket; see adapters.shadow_worker for why."""

    def __init__(self, record: Callable[[Comparison], Awaitable[None]], worker: ShadowWorker) -> None:
        self._record = record
        self._worker = worker
        self._tasks: set[asyncio.Task] = set()

    def launch(self, method: str, primary_transport: str, primary: asyncio.Future, call: ShadowCall,
               ignore: frozenset[str]) -> bool:
        """Send `call` now and compare once both outcomes are in (`primary` resolves to the primary's Outcome).
        False, and nothing sent, when the worker already has as many calls out as it takes."""
        if self._worker.busy:
            SHADOW_DROPPED.labels(call.service, method, "busy").inc()
            return False
        task = asyncio.get_running_loop().create_task(self._run(method, primary_transport, primary, call, ignore))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)
        return True

    async def drain(self) -> None:
        """Wait for the comparisons in flight (tests, shutdown)."""
        while self._tasks:
            await asyncio.gather(*list(self._tasks), return_exceptions=True)

    @property
    def worker(self) -> ShadowWorker:
        return self._worker

    async def start(self) -> None:
        await self._worker.start()

    async def close(self) -> None:
        """Let the worker finish the shadow calls it has, record their comparisons, stop the worker."""
        await self._worker.close()
        await self.drain()

    async def _run(self, method: str, primary_transport: str, primary: asyncio.Future, call: ShadowCall,
                   ignore: frozenset[str]) -> None:
        await asyncio.sleep(0)  # one loop turn: the primary's request leaves before the shadow is pickled and sent
        shadow = await self._worker.run(call)
        first: Outcome = await primary
        if shadow is None:
            SHADOW_DROPPED.labels(call.service, method, "worker_lost").inc()
            return
        if first.code != shadow.code:
            diffs = (Difference("code", first.code, shadow.code),)
        elif first.code != "OK":
            diffs = ()  # the same error on both sides is agreement
        else:
            diffs = tuple(differences(first.value, shadow.value, ignore)[:MAX_DIFFS])
        comparison = Comparison(datetime.now(timezone.utc), call.service, method, primary_transport, first.code,
                                first.latency_s, call.transport, shadow.code, shadow.latency_s, diffs)
        SHADOW_COMPARISONS.labels(call.service, method, "match" if comparison.match else "mismatch").inc()
        try:
            await self._record(comparison)
        except Exception:  # noqa: BLE001 - losing a sample must never touch the caller
            log.exception("could not record a shadow comparison of %s.%s", call.service, method)


def differences(a: Any, b: Any, ignore: frozenset[str] = frozenset(), path: str = "") -> list[Difference]:
    """Where two domain values differ, as (field path, primary value, shadow value)."""
    if _bare(path) in ignore:
        return []
    if dataclasses.is_dataclass(a) and type(a) is type(b):
        out: list[Difference] = []
        for f in dataclasses.fields(a):
            out += differences(getattr(a, f.name), getattr(b, f.name), ignore, f"{path}.{f.name}" if path else f.name)
        return out
    if isinstance(a, np.ndarray) and isinstance(b, np.ndarray):
        return _array_differences(a, b, path)
    if isinstance(a, dict) and isinstance(b, dict):
        out = []
        for key in sorted(set(a) | set(b), key=str):
            sub = f"{path}.{key}" if path else str(key)
            if key not in a or key not in b:
                out.append(Difference(sub, _show(a.get(key, "<absent>")), _show(b.get(key, "<absent>"))))
            else:
                out += differences(a[key], b[key], ignore, sub)
        return out
    if isinstance(a, (list, tuple)) and isinstance(b, (list, tuple)):
        if len(a) != len(b):
            return [Difference(f"{path}.length" if path else "length", str(len(a)), str(len(b)))]
        out = []
        for i, (x, y) in enumerate(zip(a, b)):
            out += differences(x, y, ignore, f"{path}[{i}]")
        return out
    if isinstance(a, float) and isinstance(b, float) and not isinstance(a, Enum):
        same = (math.isnan(a) and math.isnan(b)) or math.isclose(a, b, rel_tol=REL_TOLERANCE, abs_tol=ABS_TOLERANCE)
        return [] if same else [Difference(path, repr(a), repr(b))]
    return [] if a == b else [Difference(path, _show(a), _show(b))]


def _array_differences(a: np.ndarray, b: np.ndarray, path: str) -> list[Difference]:
    if a.shape != b.shape:
        return [Difference(f"{path}.shape", str(a.shape), str(b.shape))]
    if a.dtype.kind in "fc" or b.dtype.kind in "fc":
        close = np.isclose(a, b, rtol=REL_TOLERANCE, atol=ABS_TOLERANCE, equal_nan=True)
    else:
        close = a == b
    bad = np.argwhere(~close)
    return [Difference(f"{path}[{','.join(map(str, i))}]", repr(a[tuple(i)].item()), repr(b[tuple(i)].item()))
            for i in bad[:MAX_DIFFS]]


def _bare(path: str) -> str:
    """'calls[3].latency_ms' -> 'calls.latency_ms': ignore rules name fields, not positions."""
    out, depth = [], 0
    for ch in path:
        if ch == "[":
            depth += 1
        elif ch == "]":
            depth -= 1
        elif depth == 0:
            out.append(ch)
    return "".join(out)


def _show(value: Any) -> str:
    text = repr(value.value) if isinstance(value, Enum) else repr(value)
    return text if len(text) <= 80 else text[:77] + "..."
