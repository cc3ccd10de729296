"""What a person does to a rollout: start one, pause, resume, promote (straight to 100 %), abort (back to 0 %).
Each is a compare-and-swap on the stored state, then the flag write (audited), then a timeline event; a controller
that decided on the state before the person acted writes nothing."""
from __future__ import annotations

import dataclasses

from adapters.flag_schema import SERVICES
from rollout import audit
from rollout.controller import write_share
from rollout.evidence import MetricSource
from rollout.flag_writers import FlagWriter, parse_target, set_share
from rollout.model import ABORTED, PAUSED, PROMOTED, RUNNING, Rollout, Thresholds
from rollout.store import RolloutStore, now


class RolloutError(ValueError):
    """A rollout command that cannot be done as asked; the message says why and what to do."""


async def start(store: RolloutStore, source: MetricSource, writer: FlagWriter, *, service: str, method: str,
                steps: list[int], interval_s: float, max_failed_checks: int, thresholds: Thresholds, actor: str,
                why: str = "", shadow: int | None = None) -> Rollout:
    if service not in SERVICES:
        raise RolloutError(f"unknown service {service!r}; services: {', '.join(SERVICES)}")
    if max_failed_checks < 1:
        raise RolloutError("--max-failed-checks must be at least 1")
    running = await store.active(service)
    if running:
        r = running[0]
        raise RolloutError(f"{service} already has rollout {r.id} ({r.target}, {r.state} at {r.percent} %): "
                           f"`fxplat rollout abort {service}` or `promote` it first")
    r = await store.create(Rollout(
        id=0, service=service, method=method, steps=steps, interval_s=interval_s,
        max_failed_checks=max_failed_checks, thresholds=thresholds, flag_target=writer.target, state=RUNNING,
        step_index=0, step_started_at=now(), baseline=await source.baseline(service, method), created_by=actor))
    if shadow is not None:
        before, after = await set_share(writer, service, "", shadow=shadow)
        await store.audit(audit.changes(before, after, actor=actor, target=writer.target, rollout_id=r.id,
                                        why=f"rollout {r.id} of {r.target}: shadow for the parity check"))
    await write_share(store, writer, r, r.percent, actor=actor,
                      why=f"rollout {r.id} of {r.target} started: step 1/{len(steps)}" + (f" ({why})" if why else ""))
    await store.event(r, "started", f"started by {actor}: steps {','.join(map(str, steps))} every {interval_s:g} s, "
                                    f"roll back after {max_failed_checks} failed checks" + (f"; {why}" if why else ""),
                      actor=actor)
    return r


async def current(store: RolloutStore, service: str) -> Rollout:
    active = await store.active(service)
    if not active:
        latest = await store.latest(service)
        said = f" (the latest, {latest[0].id}, is {latest[0].state})" if latest else ""
        raise RolloutError(f"{service} has no active rollout{said}")
    return active[0]


async def pause(store: RolloutStore, service: str, *, actor: str, why: str = "") -> Rollout:
    r = await current(store, service)
    if r.state == PAUSED:
        raise RolloutError(f"rollout {r.id} of {r.target} is already paused at {r.percent} %")
    saved = await store.save(dataclasses.replace(r, state=PAUSED))
    await store.event(saved, "paused", f"paused at {saved.percent} % by {actor}" + (f": {why}" if why else ""),
                      actor=actor)
    return saved


async def resume(store: RolloutStore, source: MetricSource, service: str, *, actor: str, why: str = "") -> Rollout:
    r = await current(store, service)
    if r.state != PAUSED:
        raise RolloutError(f"rollout {r.id} of {r.target} is {r.state}, not paused")
    # A fresh window: what happened while paused is not this step's evidence.
    saved = await store.save(dataclasses.replace(r, state=RUNNING, step_started_at=now(),
                                                 baseline=await source.baseline(r.service, r.method)))
    await store.event(saved, "resumed", f"resumed at {saved.percent} % by {actor}" + (f": {why}" if why else ""),
                      actor=actor)
    return saved


async def promote(store: RolloutStore, service: str, *, actor: str, why: str = "") -> Rollout:
    return await _end(store, service, PROMOTED, "promoted", actor, why)


async def abort(store: RolloutStore, service: str, *, actor: str, why: str = "") -> Rollout:
    return await _end(store, service, ABORTED, "aborted", actor, why)


async def _end(store: RolloutStore, service: str, state: str, kind: str, actor: str, why: str) -> Rollout:
    r = await current(store, service)
    saved = await store.save(dataclasses.replace(r, state=state))
    message = f"{kind} by {actor} at {r.percent} % -> {saved.percent} %" + (f": {why}" if why else "")
    await write_share(store, parse_target(saved.flag_target), saved, saved.percent, actor=actor,
                      why=f"rollout {saved.id}: {message}")
    await store.event(saved, kind, message, actor=actor)
    return saved
