"""The floor servers of `fxplat bench`: what Python itself allows here, with none of the platform's per-call layer.

    python -m fxplat.floor grpc PORT PAYLOAD_FILE   a bare grpc.aio server: one generic handler, uvloop, no
                                                    interceptors, answering every call with the payload bytes
    python -m fxplat.floor rest PORT PAYLOAD_FILE   a bare FastAPI app on uvicorn (uvloop, httptools) answering
                                                    GET /v1/candles/{symbol} with the payload as application/json

The payload is the platform's own answer to the benchmark's call, encoded once beforehand, so the floor and the platform
send the same bytes and differ only by what the platform does per call (auth, metrics, logs, tracing hooks, the domain).
"""
from __future__ import annotations

import sys
from pathlib import Path

CANDLES_METHOD = "/forex.market_analysis.v1.MarketAnalysisService/GetCandles"


async def _serve_grpc(port: int, payload: bytes) -> None:
    import grpc

    async def answer(request: bytes, context) -> bytes:
        return payload

    handler = grpc.method_handlers_generic_handler(
        "forex.market_analysis.v1.MarketAnalysisService", {"GetCandles": grpc.unary_unary_rpc_method_handler(answer)})
    server = grpc.aio.server()
    server.add_generic_rpc_handlers([handler])
    if server.add_insecure_port(f"127.0.0.1:{port}") == 0:
        raise OSError(f"cannot bind 127.0.0.1:{port}")
    await server.start()
    await server.wait_for_termination()


def _serve_rest(port: int, payload: bytes) -> None:
    import uvicorn
    from fastapi import FastAPI
    from fastapi.responses import Response

    from transport.server import bind_socket

    app = FastAPI()

    @app.get("/v1/candles/{symbol}")
    async def candles(symbol: str) -> Response:
        return Response(payload, media_type="application/json")

    @app.get("/healthz")
    async def healthz() -> Response:
        return Response(b"{}", media_type="application/json")

    sock = bind_socket("127.0.0.1", port)  # TCP_NODELAY, as the platform's REST listener
    config = uvicorn.Config(app, loop="uvloop", http="httptools", log_level="warning", access_log=False,
                            lifespan="off")
    uvicorn.Server(config).run(sockets=[sock])


def main(argv: list[str]) -> None:
    kind, port, payload_file = argv[0], int(argv[1]), Path(argv[2])
    payload = payload_file.read_bytes()
    if kind == "grpc":
        import uvloop

        uvloop.run(_serve_grpc(port, payload))
    elif kind == "rest":
        _serve_rest(port, payload)
    else:
        raise SystemExit(f"usage: python -m fxplat.floor grpc|rest PORT PAYLOAD_FILE (not {kind!r})")


if __name__ == "__main__":
    main(sys.argv[1:])
