"""The floor servers of `fxplat bench`: what Python itself allows here, with none of the platform's per-call layer.

    python -m fxplat.floor grpc PORT PAYLOAD_FILE        a bare grpc.aio server: one generic handler, uvloop, no
                                                         interceptors, answering every call with the payload bytes
    python -m fxplat.floor grpc-route PORT PAYLOAD_FILE  the same server doing the protobuf work no real handler
                                                         avoids: each request decoded as a GetCandlesRequest (as
                                                         the platform decodes it), the payload's GetCandlesResponse,
                                                         parsed once, encoded again for every answer
    python -m fxplat.floor rest PORT PAYLOAD_FILE        a bare FastAPI app on uvicorn (uvloop, httptools) answering
                                                         GET /v1/candles/{symbol} with the payload as application/json
    python -m fxplat.floor rest-route PORT PAYLOAD_FILE  the same app with the platform's own declaration of that
                                                         route: its query parameters (types, validation), the bearer
                                                         security dependency and the response class; it still
                                                         answers with the payload bytes
    python -m fxplat.floor grpc-domain PORT              the bare grpc.aio server answering GetCandles from the
    python -m fxplat.floor rest-domain PORT              platform's Market Analysis domain through the platform's own
                                                         skin (gRPC: the method's codec; REST: its router), with none
                                                         of the per-call layer (auth, metrics, logs, request ids,
                                                         deadlines, limits): what the method itself costs

The payload is the platform's own answer to the benchmark's call, encoded once beforehand, so the floor and the platform
send the same bytes and differ only by what the platform does per call (auth, metrics, logs, tracing hooks, the domain).
The route floors split that difference: what the framework costs to serve the method as declared, and what is left,
the platform's own layer and domain; the domain floors split the rest: the domain (and its encoding), then the
platform's own per-call layer alone. A domain floor computes its answer (no payload); the benchmark's tests check that
it is the platform's, byte for byte.

No `from __future__ import annotations` here: FastAPI reads a route's annotations from the module's globals when they
are strings, and the REST route floor's are imported inside a function (so the other floors do not import them).
"""
import sys
from pathlib import Path

CANDLES_METHOD = "/forex.market_analysis.v1.MarketAnalysisService/GetCandles"


async def _serve_grpc(port: int, method) -> None:
    """A bare grpc.aio server (one generic handler, no interceptors) serving `method` as GetCandles, until stopped."""
    import grpc

    handler = grpc.method_handlers_generic_handler("forex.market_analysis.v1.MarketAnalysisService",
                                                   {"GetCandles": method})
    server = grpc.aio.server()
    server.add_generic_rpc_handlers([handler])
    if server.add_insecure_port(f"127.0.0.1:{port}") == 0:
        raise OSError(f"cannot bind 127.0.0.1:{port}")
    await server.start()
    await server.wait_for_termination()


def _bare_method(payload: bytes):
    import grpc

    async def answer(request: bytes, context) -> bytes:
        return payload

    return grpc.unary_unary_rpc_method_handler(answer)


def _domain_method():
    """GetCandles through the Market Analysis gRPC skin over its domain: the request decoded, the domain's page encoded,
    a DomainError turned into the platform's status; nothing else."""
    import grpc

    from forex.market_analysis.v1 import market_analysis_pb2 as pb
    from services.common.errors import DomainError
    from services.market_analysis.grpc import methods
    from transport import errors, limits

    get_candles = next(m for m in methods(_market_domain()) if m.name == "GetCandles").call

    async def answer(raw: bytes, context) -> bytes:
        try:
            return await get_candles(limits.decode(pb.GetCandlesRequest, raw))
        except DomainError as exc:
            await context.abort_with_status(errors.to_grpc_status(exc))

    return grpc.unary_unary_rpc_method_handler(answer)


def _market_domain():
    """The Market Analysis domain on synthetic data (the benchmark's platform has no imports), generated up front."""
    from services.market_analysis import synthetic
    from services.market_analysis.domain import MarketAnalysisDomain

    synthetic.warm()
    return MarketAnalysisDomain(None)


def _codec_method(payload: bytes):
    """GetCandles with its messages decoded and encoded per call; a request that does not parse gets the platform's
    INVALID_ARGUMENT (transport.limits.decode), as from the platform."""
    import grpc

    from forex.market_analysis.v1 import market_analysis_pb2 as pb
    from services.common.errors import DomainError
    from transport import errors, limits

    response = pb.GetCandlesResponse.FromString(payload)

    async def answer(raw: bytes, context) -> pb.GetCandlesResponse:
        try:
            limits.decode(pb.GetCandlesRequest, raw)
        except DomainError as exc:
            await context.abort_with_status(errors.to_grpc_status(exc))
        return response

    return grpc.unary_unary_rpc_method_handler(answer, response_serializer=pb.GetCandlesResponse.SerializeToString)


def rest_app(payload: bytes, *, route: bool = False, domain: bool = False):
    """The bare FastAPI floor app; with `route` the route floor app (also measured in-process by
    benchmarks/bench_route_cost.py); with `domain` the domain floor app (`payload` unused)."""
    from fastapi import FastAPI
    from fastapi.responses import Response

    from transport.rest_app import APP_SETTINGS

    app = FastAPI(**APP_SETTINGS)  # built as the platform builds its apps (no native telemetry, no slash redirects)
    if domain:
        _mount_platform_router(app)
    elif route:
        _declare_platform_route(app, payload)
    else:
        @app.get("/v1/candles/{symbol}")
        async def candles(symbol: str) -> Response:
            return Response(payload, media_type="application/json")

    @app.get("/healthz")
    async def healthz() -> Response:
        return Response(b"{}", media_type="application/json")

    return app


def _serve_rest(port: int, payload: bytes, *, route: bool = False, domain: bool = False) -> None:
    import uvicorn

    from transport.server import bind_socket

    sock = bind_socket("127.0.0.1", port)  # TCP_NODELAY, as the platform's REST listener
    config = uvicorn.Config(rest_app(payload, route=route, domain=domain), loop="uvloop", http="httptools",
                            log_level="warning", access_log=False, lifespan="off")
    uvicorn.Server(config).run(sockets=[sock])


def _mount_platform_router(app) -> None:
    """The Market Analysis REST skin's router over its domain, with the problem+json error handlers and the bearer
    dependency (no verifier, as the route floor), and without the platform's per-call middleware: no request ids,
    deadlines, metrics, logs or request limits."""
    from services.market_analysis.grpc import methods
    from services.market_analysis.rest import router
    from transport.auth import include_guarded, scope_table
    from transport.rest_app import install_error_handlers

    install_error_handlers(app)
    domain = _market_domain()
    include_guarded(app, router(domain), None, scope_table(methods(domain)))


def _declare_platform_route(app, payload: bytes) -> None:
    """GET /v1/candles/{symbol} declared from the platform's own parts: the parameter types of the Market Analysis
    skin, its scope table, transport.auth's bearer dependency, the problem+json error handlers (a bad parameter is a
    400 here too) and the JSONBytes response. The token is read and parsed by the bearer scheme but not verified
    (no verifier, as with auth off): the platform's check of a known token is a lookup in its verdict cache."""
    from fastapi import APIRouter

    from services.market_analysis.grpc import methods
    from services.market_analysis.models import DEFAULT_CANDLES_PER_PAGE
    from services.market_analysis.rest import CandlesOut, EndQ, LimitQ, PageTokenQ, StartQ, SymbolPath, TimeframeQ
    from transport.auth import include_guarded, scope_table
    from transport.rest_app import PROBLEM_RESPONSES, JSONBytes, install_error_handlers

    install_error_handlers(app)
    api = APIRouter(prefix="/v1", responses=PROBLEM_RESPONSES)

    @api.get("/candles/{symbol}", response_model=CandlesOut, name="GetCandles")
    async def get_candles(symbol: SymbolPath, timeframe: TimeframeQ = "H1", start: StartQ = None, end: EndQ = None,
                          limit: LimitQ = DEFAULT_CANDLES_PER_PAGE, page_token: PageTokenQ = ""):
        return JSONBytes(payload)

    scopes = scope_table(methods(None))
    include_guarded(app, api, None, {"GetCandles": scopes["GetCandles"]})


KINDS = ("grpc", "grpc-route", "grpc-domain", "rest", "rest-route", "rest-domain")
DOMAIN_KINDS = ("grpc-domain", "rest-domain")  # they compute their answers: no PAYLOAD_FILE


def main(argv: list[str]) -> None:
    kind = argv[0] if argv else ""
    if kind not in KINDS or len(argv) != (2 if kind in DOMAIN_KINDS else 3) or not argv[1].isdigit():
        raise SystemExit(f"usage: python -m fxplat.floor {'|'.join(KINDS)} PORT [PAYLOAD_FILE] "
                         f"(not {' '.join(argv)!r})")
    port = int(argv[1])
    payload = b"" if kind in DOMAIN_KINDS else Path(argv[2]).read_bytes()
    if kind.startswith("grpc"):
        import uvloop

        if kind == "grpc-domain":
            method = _domain_method()
        else:
            method = _codec_method(payload) if kind == "grpc-route" else _bare_method(payload)
        uvloop.run(_serve_grpc(port, method))
    else:
        _serve_rest(port, payload, route=kind == "rest-route", domain=kind == "rest-domain")


if __name__ == "__main__":
    main(sys.argv[1:])
