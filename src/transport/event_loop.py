"""The event loop a service process runs on: uvloop unless FXPLAT_EVENT_LOOP says asyncio (transport.config). Every
`fxplat up` service process (alone, or a supervisor's worker) starts through `run`, so this is the one place that
decides."""
from __future__ import annotations

import asyncio
from collections.abc import Callable, Coroutine
from typing import Any, TypeVar

from transport import config

T = TypeVar("T")


def factory() -> Callable[[], asyncio.AbstractEventLoop] | None:
    """A new-loop factory for asyncio.Runner (None: the standard library's loop). ValueError when misconfigured."""
    if config.event_loop() == "uvloop":
        import uvloop

        return uvloop.new_event_loop
    return None


def run(main: Coroutine[Any, Any, T]) -> T:
    """asyncio.run(main) on the configured loop."""
    with asyncio.Runner(loop_factory=factory()) as runner:
        return runner.run(main)
