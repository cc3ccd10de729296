"""The floor servers of `fxplat bench --streams`: how cheaply each stack can deliver the same quote messages, with none
of the platform's work (no subscription, generation, auth, metrics, logs, caps, drain).

    python -m fxplat.stream_floor grpc PORT RATE SYMBOLS [WINDOW_MS]   bare grpc.aio server (uvloop, one handler)
    python -m fxplat.stream_floor rest PORT RATE SYMBOLS [WINDOW_MS]   bare ASGI app on uvicorn (uvloop, httptools)

Both tick like the platform's quote clock (every max(20 ms, 1/RATE) s, or every WINDOW_MS when the platform
coalesces for that long) and send every open stream one message per tick holding that tick's quotes of SYMBOLS
symbols, pre-encoded once at start by the platform's own encoders: on gRPC one
serialised StreamQuotesResponse written as bytes (identity serializer), on SSE the same quotes as events with their
resume ids. So a floor stream carries the platform's bytes at the platform's cadence, and what it costs per quote is
what the transport itself costs: the most a server on this stack could save.
"""
from __future__ import annotations

import asyncio
import sys

STREAM_METHOD = ("forex.market_analysis.v1.MarketAnalysisService", "StreamQuotes")
SYMBOLS = ["EURUSD", "GBPUSD", "USDJPY", "USDCHF", "AUDUSD", "USDCAD", "NZDUSD", "EURGBP"]
MIN_TICK_S = 0.02  # as services.market_analysis.quotes.QuoteSettings.min_tick_s


def tick_s(rate: float, window_ms: float = 0.0) -> float:
    return max(MIN_TICK_S, 1.0 / rate, window_ms / 1000)


def tick_quotes(rate: float, n_symbols: int, window_ms: float = 0.0) -> list:
    """One tick's quotes of `n_symbols` symbols at `rate` per symbol, ordered as a subscription orders them."""
    from services.market_analysis.models import Quote

    per_symbol = max(1, round(rate * tick_s(rate, window_ms)))
    base = 285_000_000
    return [Quote(SYMBOLS[k], base + j, 1_761_108_780.0 + j * 15, 1.13093 + k * 0.01, 1.13101 + k * 0.01,
                  1.13097 + k * 0.01)
            for j in range(per_symbol) for k in range(n_symbols)]


def grpc_payload(quotes: list) -> bytes:
    from services.market_analysis.grpc import quote_field

    return b"".join(map(quote_field, quotes))


def sse_payload(quotes: list) -> bytes:
    from services.market_analysis.rest import quote_json_bytes, resume_token

    state: dict[str, int] = {}
    out = []
    for q in quotes:
        state[q.symbol] = q.sequence
        out.append(b"id: " + resume_token(state).encode() + b"\nevent: quote\ndata: " + quote_json_bytes(q) + b"\n\n")
    return b"".join(out)


class _Clock:
    """One task that wakes every stream each tick."""

    def __init__(self, interval: float) -> None:
        self.interval, self.event = interval, asyncio.Event()

    async def run(self) -> None:
        while True:
            await asyncio.sleep(self.interval)
            event, self.event = self.event, asyncio.Event()
            event.set()

    async def wait(self) -> None:
        await self.event.wait()


async def _serve_grpc(port: int, payload: bytes, clock: _Clock) -> None:
    import grpc

    async def stream(request: bytes, context) -> None:
        while True:
            await clock.wait()
            await context.write(payload)

    handler = grpc.method_handlers_generic_handler(STREAM_METHOD[0], {STREAM_METHOD[1]: grpc.unary_stream_rpc_method_handler(stream)})
    server = grpc.aio.server()
    server.add_generic_rpc_handlers([handler])
    if server.add_insecure_port(f"127.0.0.1:{port}") == 0:
        raise OSError(f"cannot bind 127.0.0.1:{port}")
    await server.start()
    ticker = asyncio.create_task(clock.run())
    await server.wait_for_termination()
    ticker.cancel()


async def _disconnect(receive) -> None:
    while (await receive())["type"] != "http.disconnect":
        pass


def _serve_rest(port: int, payload: bytes, clock: _Clock) -> None:
    import uvicorn

    from transport.server import bind_socket

    head = {"type": "http.response.start", "status": 200,
            "headers": [(b"content-type", b"text/event-stream"), (b"cache-control", b"no-cache")]}
    chunk = {"type": "http.response.body", "body": payload, "more_body": True}

    async def app(scope, receive, send) -> None:  # the thinnest ASGI app: any GET streams, /healthz answers
        if scope["type"] == "lifespan":
            return
        if scope["path"] == "/healthz":
            await send({"type": "http.response.start", "status": 200, "headers": []})
            await send({"type": "http.response.body", "body": b"{}"})
            return
        await send(head)
        gone = asyncio.ensure_future(_disconnect(receive))  # uvicorn drops sends to a closed connection silently
        try:
            while not gone.done():
                await clock.wait()
                await send(chunk)
        finally:
            gone.cancel()

    async def main() -> None:
        ticker = asyncio.create_task(clock.run())
        sock = bind_socket("127.0.0.1", port)  # TCP_NODELAY, as the platform's REST listener
        config = uvicorn.Config(app, loop="none", http="httptools", log_level="warning", access_log=False,
                                lifespan="off")
        await uvicorn.Server(config).serve(sockets=[sock])
        ticker.cancel()

    import uvloop

    uvloop.run(main())


def main(argv: list[str]) -> None:
    if len(argv) not in (4, 5) or argv[0] not in ("grpc", "rest"):
        raise SystemExit("usage: python -m fxplat.stream_floor grpc|rest PORT RATE SYMBOLS [WINDOW_MS]")
    kind, port, rate, n_symbols = argv[0], int(argv[1]), float(argv[2]), int(argv[3])
    window_ms = float(argv[4]) if len(argv) == 5 else 0.0
    quotes, tick = tick_quotes(rate, n_symbols, window_ms), tick_s(rate, window_ms)
    if kind == "grpc":
        import uvloop

        async def run() -> None:
            await _serve_grpc(port, grpc_payload(quotes), _Clock(tick))

        uvloop.run(run())
    else:
        _serve_rest(port, sse_payload(quotes), _Clock(tick))


if __name__ == "__main__":
    main(sys.argv[1:])
