"""The flagged call, written once for every service: per call, ask the flags which transport to use, call it under one
deadline budget, guard gRPC with the circuit breaker, fall back to REST on transport failures (never on domain
errors), retry idempotent calls over REST with backoff and jitter, and record what happened.

Fallback rules: breaker open, UNAVAILABLE (connection refused, server gone), UNIMPLEMENTED (method not migrated) and
DEADLINE_EXCEEDED while budget remains go to REST. Every other error is the service's answer and propagates unchanged.
A non-idempotent method (no idempotency key can protect it) falls back only when gRPC certainly did not run it: the
breaker was open, the method is not implemented there, or a draining server refused it (SHUTTING_DOWN).

The gRPC phase of a call: each attempt is bounded (adapters.resilience: a share of the budget, per method kind,
adapted to observed latency), so a hung or slow path leaves time for REST. An UNAVAILABLE read, or any call a draining
server refused (SHUTTING_DOWN: it never ran), is retried once on gRPC at once, which round_robin sends to another
replica: one dead replica is the load balancer's business, not the
breaker's, which records the phase as a whole. A cheap read whose gRPC phase has not answered after its hedge delay
(from its observed latency, throttled) is hedged onto REST: the first answer wins, the other call is cancelled.
Writes and non-idempotent calls are never hedged, nor large answers (see adapters.resilience).
"""
from __future__ import annotations

import asyncio
import collections
import contextvars
import time
from dataclasses import dataclass, field
from typing import Any, Callable, Generic, TypeVar

from tenacity import AsyncRetrying, retry_if_exception, stop_after_attempt, stop_after_delay, wait_exponential_jitter

from adapters import attempts, resilience
from adapters.breaker import AsyncBreaker, BreakerOpen
from adapters.shadow import Shadower
from adapters.shadow_worker import Outcome, ShadowCall
from transport.config import Endpoint
from services.common import errors as E
from transport import context
from transport.drain import SHUTTING_DOWN  # a draining server's refusal: the call never ran
from transport.metrics import CLIENT_CALLS, CLIENT_CHOICES, CLIENT_FALLBACKS, CLIENT_LATENCY, CLIENT_RETRIES, updater

Impl = TypeVar("Impl")


@dataclass(frozen=True)
class MethodPolicy:
    """idempotent: may be retried and replayed on the other transport (writes become so through idempotency keys);
    read: may be shadowed (canary)."""

    idempotent: bool = True
    read: bool = True
    kind: str = "lookup"  # its time bounds: a key of adapters.resilience.KINDS
    # Which calls of a read are hedged, given the call's arguments; None: as its kind says. For a method whose answer
    # grows with what is asked, so that only small calls have a REST backup as cheap as the gRPC call.
    hedge_if: Callable[..., bool] | None = None
    shadow_ignore: frozenset[str] = frozenset()  # fields that legitimately differ between two calls


@dataclass(slots=True)
class CallRecord:
    """What one adapter call did; `last_call` holds the latest per context (for `fxplat call` and tests). Slots: one
    is made per call and the last 5,000 are kept."""

    service: str
    method: str
    transport: str = ""
    fallback_reason: str = ""
    attempts: int = 0
    latency_s: float = 0.0
    code: str = "OK"
    at: float = field(default_factory=time.time)  # when the call started, unix seconds

    @property
    def fell_back(self) -> bool:
        return bool(self.fallback_reason)


_DEFAULT_POLICY = MethodPolicy()


@dataclass(slots=True)
class _Method:
    """What a caller needs per method, found once (its first call) instead of looked up on every call: its policy and
    kind, its observed latency, whether its reads are hedged, and the metric updates of its usual outcome."""

    policy: MethodPolicy
    kind: resilience.Kind
    latency: attempts.Latency
    hedged: bool
    chose_grpc: Callable[[float], None]
    chose_rest: Callable[[float], None]
    ok_grpc: Callable[[float], None]  # fxplat_client_calls_total{transport="grpc", code="OK", fallback="false"}
    latency_grpc: Callable[[float], None]

# The latest calls of every adapter in the process, newest last: the status page's "recent traffic".
RECENT_CALLS: collections.deque[CallRecord] = collections.deque(maxlen=5000)
last_call: contextvars.ContextVar[CallRecord | None] = contextvars.ContextVar("fxplat_last_call", default=None)
routing_key: contextvars.ContextVar[str | None] = contextvars.ContextVar("fxplat_routing_key", default=None)


# Fallback reasons after which the gRPC call certainly did not run, so even a non-idempotent call may go to REST.
_NOT_RUN = frozenset({"breaker_open", "unimplemented", "draining"})


def transport_failure(exc: BaseException) -> bool:
    """Errors that say the transport, not the service, failed: the breaker counts them, the adapter falls back."""
    return isinstance(exc, (E.Unavailable, E.DeadlineExceeded, E.Unimplemented))


def _fallback_reason(exc: BaseException, deadline: float) -> str | None:
    if isinstance(exc, BreakerOpen):
        return "breaker_open"
    if isinstance(exc, E.Unimplemented):
        return "unimplemented"
    if isinstance(exc, E.Unavailable):
        return "draining" if exc.reason == SHUTTING_DOWN else "unavailable"
    if isinstance(exc, E.DeadlineExceeded):
        return "deadline" if deadline > time.monotonic() else None
    return None


@dataclass
class FlaggedCaller(Generic[Impl]):
    service: str
    grpc: Impl | None  # None: no gRPC client configured for this service
    rest: Impl
    flags: Any  # adapters.flags evaluator: use_grpc(service, method, caller=, key=)
    policies: dict[str, MethodPolicy]
    caller: str = ""
    breaker: AsyncBreaker | None = None
    rest_attempts: int = 3
    budget_s: float = context.DEFAULT_BUDGET_S
    force: str | None = None  # "grpc" or "rest" pins the transport (fxplat call --transport), flags ignored
    shadower: Shadower | None = None  # None: this caller never shadows
    endpoint: Endpoint | None = None  # where the shadow worker reaches the other transport
    kinds: dict[str, resilience.Kind] = field(default_factory=lambda: dict(resilience.KINDS))
    bounds: attempts.AttemptBounds = field(default_factory=attempts.AttemptBounds)
    _updates: dict = field(default_factory=dict, repr=False)  # metric updates bound once per label values
    _methods: dict[str, _Method] = field(default_factory=dict, repr=False)

    def _update(self, metric, *labels: str):
        """The update of `metric.labels(self.service, *labels)` (transport.metrics.updater), bound once: `.labels()`
        and the public inc/observe per call cost a lock, a tuple and several Python calls."""
        update = self._updates.get((metric, labels))
        if update is None:  # methods, transports and codes are finite, so this table is too
            update = self._updates[(metric, labels)] = updater(metric.labels(self.service, *labels))
        return update

    def _method(self, method: str) -> _Method:
        m = self._methods.get(method)
        if m is None:
            policy = self.policies.get(method, _DEFAULT_POLICY)
            kind = self.kinds[policy.kind]
            m = self._methods[method] = _Method(
                policy, kind, self.bounds.of(method, kind),
                policy.read and policy.idempotent and (kind.hedge or policy.hedge_if is not None),
                self._update(CLIENT_CHOICES, method, "grpc"), self._update(CLIENT_CHOICES, method, "rest"),
                self._update(CLIENT_CALLS, method, "grpc", "OK", "false"), self._update(CLIENT_LATENCY, method, "grpc"))
        return m

    async def call(self, method: str, client_method: str, *args: Any, key: str | None = None) -> Any:
        """RPC `method`, made as `client.<client_method>(*args)` on the client of the transport it gets."""
        m = self._methods.get(method) or self._method(method)
        record = CallRecord(self.service, method)
        last_call.set(record)
        start = time.perf_counter()
        # The call's deadline: its caller's, else its own budget from now. Each phase runs under it (gRPC attempts
        # under a tighter one), so it is set in the context only by the phases, not once more around them.
        deadline = context.deadline()
        if deadline is None:
            deadline = time.monotonic() + self.budget_s
        if key is None:
            key = routing_key.get()
        use_grpc = self.use_grpc(method, key)
        (m.chose_grpc if use_grpc else m.chose_rest)(1)
        shadowed = None if self.shadower is None else \
            self._shadow(m.policy, method, key, use_grpc, client_method, args, deadline)
        result: Any = None
        try:
            if use_grpc:
                try:
                    result = await self._grpc(m, method, client_method, args, record, deadline)
                    return result
                except (E.DomainError, BreakerOpen) as exc:
                    self._fall_back(method, m.policy, exc, record, deadline)
            record.transport = "rest"
            result = await self._rest_with_retries(method, m.policy, client_method, args, record, deadline)
            return result
        except (E.Unavailable, E.DeadlineExceeded) as exc:
            record.code = exc.code
            if "service" in exc.metadata:  # a server's own answer, naming the dependency it could not reach
                raise
            what = "is unavailable" if isinstance(exc, E.Unavailable) else "did not answer in time"
            raise type(exc)(f"{self.service} {what}: {exc.message}", reason=exc.reason,
                            metadata={**exc.metadata, "service": self.service}) from None
        except BaseException as exc:
            record.code = exc.code if isinstance(exc, E.DomainError) else \
                "CANCELLED" if isinstance(exc, asyncio.CancelledError) else "INTERNAL"
            raise
        finally:
            record.latency_s = latency = time.perf_counter() - start
            RECENT_CALLS.append(record)
            if record.transport == "grpc" and record.code == "OK" and not record.fallback_reason:
                m.ok_grpc(1)
                m.latency_grpc(latency)
            else:
                self._update(CLIENT_CALLS, method, record.transport or "none", record.code,
                             "true" if record.fell_back else "false")(1)
                if record.transport:
                    self._update(CLIENT_LATENCY, method, record.transport)(latency)
            if shadowed is not None:
                shadowed.set_result(Outcome(result, record.code, record.latency_s))

    def _shadow(self, policy: MethodPolicy, method: str, key: str | None, use_grpc: bool, client_method: str,
                args: tuple, deadline: float) -> asyncio.Future | None:
        """Start the shadow call of a sampled read (never a write), concurrently with the primary; returns the future
        the primary's outcome goes into, or None when this call is not shadowed."""
        if self.shadower is None or self.force or self.grpc is None or self.endpoint is None:
            return None
        if not policy.read or not self.flags.shadow(self.service, method, key):
            return None
        primary: asyncio.Future = asyncio.get_running_loop().create_future()
        other, target = ("rest", self.endpoint.rest_url) if use_grpc else ("grpc", self.endpoint.grpc_target)
        call = ShadowCall(self.service, other, target, client_method, args, deadline - time.monotonic(),
                          context.request_id.get() or "")
        launched = self.shadower.launch(method, "grpc" if use_grpc else "rest", primary, call, policy.shadow_ignore)
        return primary if launched else None

    def use_grpc(self, method: str, key: str | None) -> bool:
        if self.force:
            return self.force == "grpc"
        return self.grpc is not None and self.flags.use_grpc(self.service, method, caller=self.caller, key=key)

    def _fall_back(self, method: str, policy: MethodPolicy, exc: BaseException, record: CallRecord,
                   deadline: float) -> None:
        """After the gRPC phase failed with `exc`: return if the call goes on over REST, else raise."""
        if record.fallback_reason == "hedge":
            raise exc  # REST was tried too, as the hedge: no transport is left to fall back to
        reason = _fallback_reason(exc, deadline)
        if reason not in _NOT_RUN and not policy.idempotent:
            reason = None  # the call may have run before the failure: replaying it could run it twice
        if reason is None or self.force == "grpc":
            if isinstance(exc, BreakerOpen):
                raise E.Unavailable(f"{self.service}: gRPC circuit open", reason="BREAKER_OPEN") from None
            raise exc
        record.fallback_reason = reason
        CLIENT_FALLBACKS.labels(self.service, method, reason).inc()

    async def _grpc(self, m: _Method, method: str, client_method: str, args: tuple, record: CallRecord,
                    deadline: float):
        """The gRPC phase: bounded attempts (one retry on another replica), under the breaker, hedged if a read."""
        policy = m.policy
        # A non-idempotent call cannot move to REST after a timeout, so cutting it short would only fail it sooner.
        bound = m.latency.bound(deadline - time.monotonic()) if policy.idempotent else None
        slow_s = m.kind.slow_s if bound is None or bound > m.kind.slow_s else bound
        hedge_if = policy.hedge_if
        delay = None if self.force or not m.hedged or (hedge_if is not None and not hedge_if(*args)) \
            else self.bounds.hedge_delay(m.latency)
        if delay is None:  # not a hedged read (or call), or hedges are throttled: the call waits for its gRPC attempt
            return await self._attempts(m, method, bound, slow_s, client_method, args, record, deadline)

        def hedged() -> None:
            self.bounds.spend_hedge()
            record.fallback_reason = "hedge"
            CLIENT_FALLBACKS.labels(self.service, method, "hedge").inc()

        # The hedge written out here (see attempts.Race), not a coroutine around the gRPC phase: one layer less on
        # every read.
        race = attempts.Race(lambda: self._rest_with_retries(method, policy, client_method, args, record, deadline),
                             _is_answer, hedged, delay if delay < slow_s else slow_s)
        try:
            result = await self._attempts(m, method, bound, slow_s, client_method, args, record, deadline)
            record.transport, record.fallback_reason = "grpc", ""  # its answer stands, also in a tie
        except BaseException as exc:
            result = await race.after(exc)  # the backup's answer, or `exc` again
            record.transport, record.fallback_reason = "rest", "hedge"
        finally:
            race.end()
        return result

    async def _attempts(self, m: _Method, method: str, bound: float | None, slow_s: float, client_method: str,
                        args: tuple, record: CallRecord, deadline: float):
        """The gRPC attempts of one call, admitted and judged by the breaker as one phase. Written out in one
        coroutine (not the breaker's `call` around a closure): this runs on every gRPC call."""
        breaker = self.breaker
        trial = False if breaker is None or breaker.closed else breaker.admit()
        phase_start = start = time.perf_counter()
        failed: bool | None = False
        try:
            for attempt in (1, 2):
                record.attempts += 1
                record.transport = "grpc"
                if attempt == 2:
                    start = time.perf_counter()
                # The attempt's deadline: its bound from now, within the call's.
                token = context.run_until(deadline if bound is None else min(deadline, time.monotonic() + bound))
                try:
                    result = await getattr(self.grpc, client_method)(*args)
                except E.Unavailable as exc:
                    # Again on gRPC: a refusal that never ran (a draining replica), or a read (a dead replica's
                    # calls). A write goes to REST at once, as before: its key makes that replay safe too.
                    if attempt == 2 or not (exc.reason == SHUTTING_DOWN or (m.policy.idempotent and m.policy.read)):
                        raise
                    CLIENT_RETRIES.labels(self.service, method, "grpc").inc()
                    continue
                finally:
                    context.restore(token)
                m.latency.observe(time.perf_counter() - start)
                return result
        except BaseException as exc:
            failed = breaker.failure(exc) if breaker is not None else None
            raise
        finally:
            if breaker is not None:
                breaker.settle(trial, time.perf_counter() - phase_start, slow_s, failed)

    async def _rest_with_retries(self, method: str, policy: MethodPolicy, client_method: str, args: tuple,
                                 record: CallRecord, deadline: float):
        token = context.run_until(deadline)
        try:
            # The first attempt goes without tenacity: building its retry state cost ~210 µs of a ~2 ms REST call
            # (measured in situ), and nearly every call needs no second attempt.
            record.attempts += 1
            try:
                return await getattr(self.rest, client_method)(*args)
            except E.Unavailable as exc:  # the only failure a retry may follow; the policy below decides
                first_failure: E.Unavailable | None = exc
            retrying = AsyncRetrying(
                stop=stop_after_attempt(self.rest_attempts) | stop_after_delay(max(0.0, deadline - time.monotonic())),
                wait=wait_exponential_jitter(multiplier=0.02, max=0.5, jitter=0.05),
                # A draining server refused the call before running it: even a non-idempotent one may go again.
                retry=retry_if_exception(lambda exc: isinstance(exc, E.Unavailable)
                                         and (policy.idempotent or exc.reason == SHUTTING_DOWN)),
                reraise=True,
            )
            async for attempt in retrying:
                with attempt:
                    if first_failure is not None:  # tenacity's attempt 1 is the one made above: it judges it
                        failure, first_failure = first_failure, None
                        raise failure
                    record.attempts += 1
                    CLIENT_RETRIES.labels(self.service, method, "rest").inc()
                    return await getattr(self.rest, client_method)(*args)
        finally:
            context.restore(token)
        raise AssertionError("unreachable")  # pragma: no cover


def _is_answer(exc: BaseException) -> bool:
    """In a hedge race: the service's own verdict (NOT_FOUND, ...) is an answer; a transport failure or an open breaker
    is not (the other leg may still answer)."""
    return isinstance(exc, E.DomainError) and not transport_failure(exc)
