"""The rollout controller: one reconcile step, run on a tick for every active rollout whose service lease it holds.

    read state -> (the step's interval is up?) -> query the evidence -> analyse -> decide advance / hold / roll back
    -> persist (compare-and-swap) -> write flags + audit -> record the timeline

State lives in the database (rollout.store), so a controller killed at any point and started again (or another one,
once the lease has expired) continues the same rollout: the step, its start and the metric baseline are all stored.
Persisting comes before the flag write: a crash in between leaves flags one step behind, and a controller taking a
lease over first puts the flags where the stored state says they belong.
"""
from __future__ import annotations

import asyncio
import dataclasses
import logging
from collections.abc import Callable
from typing import Any

from rollout import audit
from rollout.analysis import Check, analyse
from rollout.evidence import Evidence, MetricSource
from rollout.flag_writers import FlagWriter, parse_target, set_share, share_of, with_share
from rollout.model import ACTIVE, PROMOTED, ROLLED_BACK, RUNNING, Rollout
from rollout.store import Conflict, RolloutStore, new_event, now

log = logging.getLogger("fxplat.rollout")
DEFAULT_LEASE_TTL_S = 30.0
DEFAULT_TICK_S = 2.0


def lease_name(service: str) -> str:
    return f"rollout:{service}"


async def write_share(store: RolloutStore, writer: FlagWriter, r: Rollout, percent: int, *, actor: str,
                      why: str) -> None:
    """Set the rollout's gRPC share to `percent` and audit every flag that changes. The audit row is written first:
    a process killed between the two leaves a recorded intent (which the next controller carries out and records
    again), never a flag change nobody recorded."""
    before = await asyncio.to_thread(writer.read)
    planned = with_share(before, r.service, r.method, grpc=percent)
    await store.audit(audit.changes(before, planned, actor=actor, target=writer.target, why=why, rollout_id=r.id))
    await set_share(writer, r.service, r.method, grpc=percent)


class Controller:
    def __init__(self, store: RolloutStore, source: MetricSource, *, holder: str | None = None,
                 lease_ttl_s: float = DEFAULT_LEASE_TTL_S, writer_for: Callable[[str], FlagWriter] = parse_target,
                 say: Callable[[str], None] = log.info) -> None:
        self.store, self.source = store, source
        self.holder = holder or audit.controller_id()
        self.lease_ttl_s = lease_ttl_s
        self._writer_for = writer_for
        self._say = say
        self._held: set[str] = set()

    # --- the loop ---------------------------------------------------------------------------------------------------

    async def run(self, *, service: str | None = None, tick_s: float = DEFAULT_TICK_S, until_idle: bool = False,
                  stop: asyncio.Event | None = None, rollout_id: int | None = None) -> None:
        """Reconcile every `tick_s` until `stop` is set; with `until_idle`, also return once no rollout (of `service`)
        is active; with `rollout_id`, once that rollout has ended."""
        stop = stop or asyncio.Event()
        try:
            while not stop.is_set():
                active = await self.tick(service)
                if until_idle and not active:
                    return
                if rollout_id is not None and rollout_id not in {r.id for r in active}:
                    return
                try:
                    await asyncio.wait_for(stop.wait(), tick_s)
                except asyncio.TimeoutError:
                    pass
        finally:
            for name in self._held:
                await self.store.release(lease_name(name), self.holder)
            self._held.clear()

    async def tick(self, service: str | None = None) -> list[Rollout]:
        """One pass over the active rollouts; returns those still active afterwards."""
        still = []
        for r in await self.store.active(service):
            if not await self.store.acquire(lease_name(r.service), self.holder, self.lease_ttl_s):
                if r.service in self._held:
                    self._say(f"{r.target}: lost the lease to another controller")
                self._held.discard(r.service)
                still.append(r)
                continue
            try:
                if r.service not in self._held:
                    self._held.add(r.service)
                    r = await self._take_over(r)
                r = await self.reconcile(r)
            except Exception as exc:  # a flag write or the database failed: log it, and start over next tick
                log.exception("rollout %s of %s", r.id, r.target)
                self._say(f"{r.target}: {type(exc).__name__}: {exc}; trying again next tick")
                self._held.discard(r.service)  # the next tick takes over afresh: flags put back where state says
            if r.state in ACTIVE:
                still.append(r)
        return still

    async def _take_over(self, r: Rollout) -> Rollout:
        """This controller now drives `r`: say so, and put the flags where the stored state says they belong."""
        writer = self._writer_for(r.flag_target)
        current = share_of(await asyncio.to_thread(writer.read), r.service, r.method)
        note = f"controller {self.holder} drives {r.target} (step {r.step_index + 1}/{len(r.steps)}, {r.percent} %)"
        if current != r.percent:
            await write_share(self.store, writer, r, r.percent, actor=self.holder,
                              why=f"rollout {r.id}: flags at {current} %, the stored step says {r.percent} %")
            note += f"; flags were at {current} %, set back to {r.percent} %"
        await self.store.event(r, "controller", note, actor=self.holder)
        self._say(note)
        return r

    # --- the reconcile step -----------------------------------------------------------------------------------------

    async def reconcile(self, r: Rollout) -> Rollout:
        at = now()
        if r.state != RUNNING or r.next_check_at is None or at < r.next_check_at:
            return r
        try:
            evidence = await self.source.evidence(r.service, r.method, r.step_started_at, r.baseline)
            checks = analyse(evidence, r.thresholds)
        except Exception as exc:  # no numbers is a failed check (as in Flagger), never a pass
            evidence = Evidence(window_s=(at - r.step_started_at).total_seconds(), source=self.source.name)
            checks = [Check("metrics", False, "unavailable", "readable", f"{type(exc).__name__}: {exc}"[:500])]
        failed = [c for c in checks if not c.passed]
        decided = dataclasses.replace(r)
        if not failed and r.step_index == len(r.steps) - 1:
            decided.state, kind = PROMOTED, "promoted"
            message = f"every check passed at {r.percent} %: promoted, {r.target} is on gRPC"
        elif not failed:
            decided.step_index, kind = r.step_index + 1, "step"
            message = f"every check passed at {r.percent} %: step {decided.step_index + 1}/{len(r.steps)} " \
                      f"-> {decided.percent} %"
        else:
            decided.failed_checks = r.failed_checks + 1
            reasons = "; ".join(f"{c.name}: {c.value} (limit {c.limit})" for c in failed)
            if decided.failed_checks >= r.max_failed_checks:
                decided.state, kind = ROLLED_BACK, "rolled_back"
                message = f"failed check {decided.failed_checks}/{r.max_failed_checks} ({reasons}): rolled back to 0 %"
            else:
                kind = "halted"
                message = f"failed check {decided.failed_checks}/{r.max_failed_checks} ({reasons}): halted at " \
                          f"{r.percent} %, checking again in {r.interval_s:g} s"
        if decided.state == RUNNING:  # a new window: the next step's, or the same step watched again
            decided.step_started_at = now()
            decided.baseline = await self.source.baseline(r.service, r.method)
        checks_json = [c.to_json() for c in checks] + [{"name": "evidence", **evidence.to_json()}]
        timeline = [new_event(r, "analysis", f"analysis at {r.percent} % ({evidence.source}, "
                                             f"{evidence.window_s:.0f} s window)", actor=self.holder,
                              checks=checks_json),
                    new_event(decided, kind, message, actor=self.holder)]
        try:
            saved = await self.store.save(decided, timeline)  # the decision and its reasons, in one transaction
        except Conflict:
            fresh = await self.store.get(r.id)
            self._say(f"{r.target}: changed meanwhile ({fresh.state}); decision dropped")
            return fresh
        self._say(f"{r.target}: {message}")
        if saved.percent != r.percent:
            await write_share(self.store, self._writer_for(r.flag_target), saved, saved.percent, actor=self.holder,
                              why=f"rollout {r.id}: {message}")
        return await self._settle(saved)

    async def _settle(self, saved: Rollout) -> Rollout:
        """If a person acted while the flags were being written, the flags follow the person's state."""
        fresh = await self.store.get(saved.id)
        if fresh.version != saved.version and fresh.percent != saved.percent:
            await write_share(self.store, self._writer_for(fresh.flag_target), fresh, fresh.percent,
                              actor=self.holder, why=f"rollout {fresh.id}: {fresh.state} while the controller wrote")
        return fresh


def summary(r: Rollout) -> dict[str, Any]:
    return {"id": r.id, "service": r.service, "method": r.method, "state": r.state, "percent": r.percent,
            "step": r.step_index + 1, "steps": r.steps, "interval_s": r.interval_s,
            "failed_checks": r.failed_checks, "max_failed_checks": r.max_failed_checks,
            "thresholds": r.thresholds.to_json(), "flag_target": r.flag_target, "created_by": r.created_by,
            "created_at": r.created_at.isoformat() if r.created_at else None,
            "step_started_at": r.step_started_at.isoformat() if r.step_started_at else None,
            "next_check_at": r.next_check_at.isoformat() if r.next_check_at else None}
