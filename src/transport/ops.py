"""The operational side of every REST app: /healthz (the process answers), /readyz (it can serve) and /metrics
(Prometheus text for every server and client in the process), which stay out of the OpenAPI document and out of the
call metrics, logs and traces (probes and scrapes every few seconds are not calls); and refusing new calls while the
app stops."""
from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from typing import Any

import orjson
from fastapi import FastAPI, Request
from fastapi.responses import Response
from prometheus_client.exposition import choose_encoder

from services.common import errors as E
from transport import drain, errors, metrics as metric_defs

PATHS = frozenset({"/healthz", "/readyz", "/metrics"})
CHECK_TIMEOUT_S = 2.0  # a probe must answer even when a dependency hangs

Check = Callable[[], Awaitable[Any]]  # raises (or hangs) when not ready


class Readiness:
    """What /readyz answers: named checks that must pass, and whether the service is shutting down."""

    def __init__(self) -> None:
        self.checks: dict[str, Check] = {}
        self.draining = False

    async def problems(self) -> dict[str, str]:
        """Check name -> what is wrong; empty when ready."""
        if self.draining:
            return {"shutdown": "shutting down, finishing in-flight calls"}
        found = await asyncio.gather(*(_run(check) for check in self.checks.values()))
        return {name: problem for name, problem in zip(self.checks, found) if problem}


async def _run(check: Check) -> str:
    try:
        await asyncio.wait_for(check(), CHECK_TIMEOUT_S)
        return ""
    except asyncio.TimeoutError:
        return f"no answer within {CHECK_TIMEOUT_S:g} s"
    except Exception as exc:  # whatever it is, the service is not ready; the message's first line says why
        first_line = next(iter(str(exc).splitlines()), "failed")
        return f"{type(exc).__name__}: {first_line[:200]}"


def readiness(app: FastAPI) -> Readiness:
    return app.state.readiness


def refuse_calls(app: FastAPI) -> None:
    """From now on answer every new call 503 UNAVAILABLE (and close its connection): the server is stopping. uvicorn
    stops accepting connections, but one accepted just as it stopped would otherwise keep being served."""
    app.state.refusing = True


def refusing(scope: dict) -> bool:
    return scope["app"].state.refusing


async def refuse(scope: dict, receive, send) -> None:
    """A new call while stopping: 503, it never ran."""
    await _unavailable(drain.shutting_down(), scope, receive, send)


async def cut_off(scope: dict, receive, send) -> None:
    """A call still running when the grace period ends (uvicorn cancels it): 503, where uvicorn would answer a plain
    500."""
    await _unavailable(drain.cut_off(), scope, receive, send)


async def _unavailable(err: E.Unavailable, scope: dict, receive, send) -> None:
    await Response(orjson.dumps(errors.to_problem(err)), status_code=503, media_type=errors.PROBLEM_CONTENT_TYPE,
                   headers={"connection": "close"})(scope, receive, send)


def install(app: FastAPI) -> None:
    app.state.readiness = Readiness()
    app.state.refusing = False

    @app.get("/healthz", include_in_schema=False)
    async def healthz() -> dict:
        return {"status": "ok"}

    @app.get("/readyz", include_in_schema=False)
    async def readyz() -> Response:
        state = readiness(app)
        problems = await state.problems()
        if not problems:
            return Response(orjson.dumps({"status": "ready", "checks": sorted(state.checks)}),
                            media_type="application/json")
        summary = "; ".join(f"{name}: {problem}" for name, problem in problems.items())
        err = E.Unavailable(f"not ready: {summary}", reason="NOT_READY", metadata=problems)
        return Response(orjson.dumps(errors.to_problem(err)), status_code=503, media_type=errors.PROBLEM_CONTENT_TYPE)

    @app.get("/metrics", include_in_schema=False)
    async def metrics(request: Request) -> Response:
        encode, content_type = choose_encoder(request.headers.get("accept", ""))  # OpenMetrics when asked for
        return Response(encode(metric_defs.registry()), media_type=content_type)


def watch(app: FastAPI, *, domain: object, flags: Any) -> None:
    """The readiness checks of a built service: its storage, through the domain's optional `async def ready()` (which
    raises when its store does not answer), and its flags, when it has them (it calls other services)."""
    checks = readiness(app).checks
    if callable(ready := getattr(domain, "ready", None)):
        checks["storage"] = ready
    if flags is not None:
        async def flags_loaded() -> None:
            if flags.snapshot() is None:
                raise RuntimeError("no flags loaded")

        checks["flags"] = flags_loaded
