"""The hedge of a read (adapters.attempts.Race) and the one timer per event loop that keeps every hedge's delay: a
backup starts after its own call's delay and not before, runs in its own call's context, wins when it answers first;
a primary that answers first starts no backup and leaves nothing behind."""
from __future__ import annotations

import asyncio
import contextvars
import time

import pytest

from adapters import attempts
from transport import grpc_client

who: contextvars.ContextVar[str] = contextvars.ContextVar("who", default="nobody")


async def hedge(primary, backup, delay: float, is_answer, on_hedge) -> tuple[str, object]:
    """A race written as adapters.core writes it around its gRPC phase: ("primary" | "backup", the answer)."""
    race = attempts.Race(backup, is_answer, on_hedge, delay)
    try:
        return "primary", await primary
    except BaseException as exc:
        return "backup", await race.after(exc)
    finally:
        race.end()


def never_an_answer(exc: BaseException) -> bool:
    return False


async def interruptible(seconds: float, value):
    """A primary that registers its call with the hedge's hold, as transport.grpc_client.unary does with a gRPC call:
    a backup that answers first cancels it."""
    call = asyncio.ensure_future(asyncio.sleep(seconds, value))
    if (hold := grpc_client.interrupt.get()) is not None:
        hold.call = call
    return await call


async def test_a_slow_primary_is_hedged_after_its_delay_and_the_backup_answers():
    hedged: list[float] = []
    start = time.monotonic()

    async def backup():
        return f"backup of {who.get()}"

    who.set("call-1")
    winner, result = await hedge(interruptible(5, "primary"), backup, 0.05, never_an_answer,
                                          lambda: hedged.append(time.monotonic() - start))
    assert (winner, result) == ("backup", "backup of call-1")
    assert len(hedged) == 1 and 0.05 <= hedged[0] < 1.0
    assert time.monotonic() - start < 1.0  # the primary was left, not waited for


async def test_a_fast_primary_starts_no_backup_and_leaves_no_timer_entry():
    hedged: list[int] = []

    async def backup():
        raise AssertionError("no backup for a primary that answers in time")

    # A delay no loaded CI machine stalls through between a race's start and its primary's answer (0.02 s did once).
    for i in range(200):
        assert await hedge(interruptible(0, i), backup, 0.2, never_an_answer, lambda: hedged.append(1)) \
            == ("primary", i)
    await asyncio.sleep(0.25)  # past every delay: a forgotten entry would fire now
    assert hedged == []
    clock = attempts.clock()
    assert clock is not None and clock.races == []  # the tick dropped every race that had ended


async def test_concurrent_hedges_each_fire_after_their_own_delay_in_their_own_context():
    fired: dict[str, float] = {}
    start = time.monotonic()

    async def one(name: str, delay: float, primary_s: float):
        who.set(name)

        async def backup():
            fired[name] = time.monotonic() - start
            assert who.get() == name  # the backup sees its own call's context, not the one that armed the timer
            return name

        return await hedge(interruptible(primary_s, "primary"), backup, delay, never_an_answer,
                                    lambda: None)

    results = await asyncio.gather(one("late", 0.30, 5), one("early", 0.05, 5), one("answers", 0.10, 0.01),
                                   one("middle", 0.15, 5))
    assert results == [("backup", "late"), ("backup", "early"), ("primary", "primary"), ("backup", "middle")]
    assert set(fired) == {"late", "early", "middle"}  # the call that answered in time was never hedged
    for name, delay in (("early", 0.05), ("middle", 0.15), ("late", 0.30)):
        assert delay <= fired[name] < delay + 0.5, (name, fired[name])
    assert fired["early"] < fired["middle"] < fired["late"]


async def test_the_primary_answer_wins_a_tie_and_an_answer_error_ends_the_race():
    class NotFound(Exception):
        pass

    async def failing_primary():
        await asyncio.sleep(0.01)
        raise NotFound("the service's own verdict")

    async def backup():
        await asyncio.sleep(5)

    with pytest.raises(NotFound):  # an answer error is the call's answer, not a reason to wait for the backup
        await hedge(failing_primary(), backup, 0.001, lambda exc: isinstance(exc, NotFound), lambda: None)
