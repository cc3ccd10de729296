"""REST server streams, written once: Server-Sent Events (text/event-stream), or NDJSON when the client's Accept asks
for application/x-ndjson, around a subscription — the REST twin of transport.grpc_streams.

SSE: every item is one event `id: <resume token>`, `event: <kind>`, `data: <JSON>`; a client (EventSource does it by
itself) resumes by sending the last id as `Last-Event-ID`. An idle stream sends a `: heartbeat` comment every
heartbeat interval (announced in the `x-heartbeat-ms` response header). An error after the stream began, a drain
included (503 UNAVAILABLE, reason SHUTTING_DOWN), is a last `event: error` whose data is the problem+json body.
NDJSON: one JSON object per line per item, `{"heartbeat": true}` lines while idle, and a last `{"error": {...}}` line.
Errors before the stream begins (bad request, auth, caps) are ordinary problem+json responses.
"""
from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable
from typing import Any

import httpx
import orjson
from fastapi import Request
from fastapi.responses import StreamingResponse

from services.common.errors import DomainError
from services.common.errors import Unavailable as DomainErrorUnavailable
from transport import context, drain, errors, streams

NDJSON = "application/x-ndjson"
EVENT_STREAM = "text/event-stream"
HEARTBEAT_HEADER = "x-heartbeat-ms"
# Marks a call as a stream in its ASGI scope: the call middleware leaves counting and logging it to `streams.finish`.
STREAM_SCOPE_KEY = "fxplat.stream"

# (event id, JSON object or its encoded bytes) of one item; built per stream, so it may keep state (e.g. positions of
# several symbols).
Encoder = Callable[[Any], tuple[str, "dict | bytes"]]


def wants_ndjson(request: Request) -> bool:
    return NDJSON in request.headers.get("accept", "")


async def respond(request: Request, *, service: str, method: str, kind: str,
                  open_: Callable[[], Awaitable[streams.Subscription]], encoder: Encoder) -> StreamingResponse:
    """Open the subscription (its errors become the HTTP answer) and stream it as SSE or NDJSON."""
    request.scope[STREAM_SCOPE_KEY] = True
    rid = request.headers.get(context.REQUEST_ID_HEADER) or errors.new_request_id()
    start = time.perf_counter()
    limits = streams.limits()
    try:
        release = limits.acquire(request.headers.get("authorization"))
        try:
            sub = await open_()
        except BaseException:
            release()
            raise
    except DomainError as exc:  # answered as problem+json by the app; counted and logged here, as on gRPC
        streams.finish(service, method, "rest", exc.code, f"{exc.reason or exc.code}: {exc.message}", 0, 0,
                       time.perf_counter() - start, rid)
        raise
    ndjson = wants_ndjson(request)
    heartbeat_s, coalesce_s = limits.settings.heartbeat_s, limits.settings.coalesce_ms / 1000

    def item_bytes(item: Any) -> bytes:
        event_id, obj = encoder(item)
        data = obj if isinstance(obj, bytes) else orjson.dumps(obj)
        if ndjson:
            return data + b"\n"
        return b"id: " + event_id.encode() + b"\nevent: " + kind.encode() + b"\ndata: " + data + b"\n\n"

    heartbeat = b'{"heartbeat":true}\n' if ndjson else b": heartbeat\n\n"

    async def body():
        items, code, ended = 0, "OK", ""
        labels = (service, method, "rest")
        streams.STREAMS_OPEN.labels(*labels).inc()
        sent = streams.LazyCount(streams.STREAM_ITEMS.labels(*labels))
        try:
            last_sent = time.monotonic()
            try:
                while True:
                    if request.app.state.refusing:  # the server drains: end now, resumable elsewhere
                        raise drain.shutting_down()
                    batch = await streams.next_batch(sub, min(streams.POLL_S, heartbeat_s), coalesce_s)
                    if batch:
                        yield b"".join(item_bytes(i) for i in batch)
                        items += len(batch)
                        sent.add(len(batch))
                    elif time.monotonic() - last_sent >= heartbeat_s:
                        yield heartbeat
                        streams.STREAM_HEARTBEATS.labels(*labels).inc()
                        sent.flush()
                    else:
                        continue
                    last_sent = time.monotonic()
            except DomainError as exc:
                failure = exc
            except Exception as exc:  # never a traceback to the caller
                failure = errors.internal_error(exc, rid)
            code, ended = failure.code, f"{failure.reason or failure.code}: {failure.message}"
            problem = orjson.dumps(errors.to_problem(failure))
            yield b'{"error":' + problem + b"}\n" if ndjson else b"event: error\ndata: " + problem + b"\n\n"
        except (asyncio.CancelledError, GeneratorExit):
            code, ended = "CANCELLED", "the client went away"
            raise
        finally:
            sent.flush()
            sub.close()
            release()
            streams.STREAMS_OPEN.labels(*labels).dec()
            streams.finish(service, method, "rest", code, ended, items, streams.conflated(sub),
                           time.perf_counter() - start, rid)

    headers = {"cache-control": "no-cache", "x-accel-buffering": "no", HEARTBEAT_HEADER: str(round(heartbeat_s * 1000)),
               context.REQUEST_ID_HEADER: rid}
    return StreamingResponse(body(), media_type=NDJSON if ndjson else EVENT_STREAM, headers=headers)


# --- client side ----------------------------------------------------------------------------------------------------

class SseItemStream:
    """One SSE stream as a client reads it (the twin of transport.grpc_streams.GrpcItemStream): `open()` sends the
    request (with `Last-Event-ID` when resuming) and returns the server's heartbeat interval; each `next()` returns the
    items of the events that arrived ([] after a heartbeat); an `error` event raises its domain error."""

    transport = "rest"

    def __init__(self, http, path: str, *, params: dict, last_event_id: str | None,
                 decode: Callable[[str, dict], Any]) -> None:
        self._http, self._path, self._params, self._last_id, self._decode = http, path, params, last_event_id, decode
        self._resp = None
        self._chunks = None
        self._buffer = ""

    async def open(self) -> float:
        headers = {"accept": EVENT_STREAM, "cache-control": "no-cache"}
        if self._last_id:
            headers["last-event-id"] = self._last_id
        if rid := _request_id():
            headers[context.REQUEST_ID_HEADER] = rid
        request = self._http.build_request("GET", self._path, params=self._params, headers=headers,
                                           timeout=httpx.Timeout(None, connect=5.0))
        try:
            self._resp = await self._http.send(request, stream=True)
        except httpx.TransportError as exc:
            raise _unavailable(self._path, exc) from None
        if self._resp.status_code >= 300:
            body = await self._resp.aread()
            await self._resp.aclose()
            try:
                parsed: Any = orjson.loads(body)
            except orjson.JSONDecodeError:
                parsed = body.decode(errors="replace")
            raise errors.from_problem(self._resp.status_code, parsed)
        self._chunks = self._resp.aiter_text()
        return int(self._resp.headers.get(HEARTBEAT_HEADER, 0)) / 1000

    async def next(self) -> list:
        while True:
            items, heartbeat = self._parse()
            if items or heartbeat:
                return items
            try:
                chunk = await anext(self._chunks)
            except StopAsyncIteration:
                raise DomainErrorUnavailable(f"GET {self._path}: the stream ended without a status",
                                             reason="STREAM_CLOSED") from None
            except httpx.TransportError as exc:
                raise _unavailable(self._path, exc) from None
            self._buffer += chunk

    def _parse(self) -> tuple[list, bool]:
        items: list = []
        heartbeat = False
        while "\n\n" in self._buffer:
            block, self._buffer = self._buffer.split("\n\n", 1)
            kind, data = "message", []
            for line in block.split("\n"):
                if line.startswith(":"):
                    heartbeat = True
                elif line.startswith("event:"):
                    kind = line[6:].strip()
                elif line.startswith("data:"):
                    data.append(line[5:].lstrip())
            if not data:
                continue
            obj = orjson.loads("\n".join(data))
            if kind == "error":
                raise errors.from_problem(int(obj.get("status", 503)), obj)
            items.append(self._decode(kind, obj))
        return items, heartbeat

    async def close(self) -> None:
        if self._resp is not None:
            await self._resp.aclose()


def _request_id() -> str | None:
    return context.request_id.get()


def _unavailable(path: str, exc: BaseException):
    return DomainErrorUnavailable(f"GET {path}: {type(exc).__name__}: {exc or 'connection failed'}",
                                  reason="CONNECTION_FAILED")
