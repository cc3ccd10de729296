"""Backtesting over gRPC: the server skin (request message -> domain -> response message) and the client
(domain -> request message -> domain), with the proto codec between them written once. The codec functions for a
whole Backtest and a RunBacktestRequest are public: the coordinator embeds these messages in its own."""
from __future__ import annotations

import dataclasses

from forex.backtesting.v1 import backtesting_pb2 as pb
from forex.backtesting.v1 import backtesting_pb2_grpc as pb_grpc
from services.backtesting.models import (
    DEFAULT_PAGE_SIZE,
    Backtest,
    Backtesting,
    BacktestMetrics,
    BacktestPage,
    BacktestRequest,
    BacktestSummary,
    EquityCurve,
    ListBacktestsQuery,
    Side,
    Trade,
)
from transport import grpc_client, wire
from transport import proto_codec as pc
from transport.grpc_server import GrpcMethod

SERVICE = pb.DESCRIPTOR.services_by_name["BacktestingService"].full_name
_SIDE = {s: pb.Side.Value(f"SIDE_{s.name}") for s in Side}
_SIDE_FROM_PB = {v: k for k, v in _SIDE.items()}
_EQUITY_FIELD = pb.EquityCurve.DESCRIPTOR.fields_by_name["equity"].number


# --- codec ----------------------------------------------------------------------------------------------------------

def backtest_request_to_pb(r: BacktestRequest) -> pb.RunBacktestRequest:
    return pb.RunBacktestRequest(
        symbol=r.symbol, strategy=r.strategy, params=r.params, timeframe=pc.timeframe_to_pb(r.timeframe),
        range=pc.range_to_pb(r.range), initial_equity=r.initial_equity, spread_pips=r.spread_pips,
        commission_per_unit=r.commission_per_unit, commission_pct=r.commission_pct, idempotency_key=r.idempotency_key)


def backtest_request_from_pb(m: pb.RunBacktestRequest) -> BacktestRequest:
    return BacktestRequest(
        symbol=m.symbol, strategy=m.strategy, params=dict(m.params), timeframe=pc.timeframe_from_pb(m.timeframe),
        range=pc.range_from_pb(m.range), initial_equity=m.initial_equity,
        spread_pips=m.spread_pips, commission_per_unit=m.commission_per_unit, commission_pct=m.commission_pct,
        idempotency_key=m.idempotency_key)


def metrics_to_pb(m: BacktestMetrics) -> pb.BacktestMetrics:
    return pb.BacktestMetrics(**{k: v for k, v in dataclasses.asdict(m).items() if v is not None})


def metrics_from_pb(m: pb.BacktestMetrics) -> BacktestMetrics:
    # An unset `optional` field is a metric that does not exist (None); the others are always set.
    return BacktestMetrics(**{f.name: getattr(m, f.name) if not f.has_presence or m.HasField(f.name) else None
                              for f in m.DESCRIPTOR.fields})


def summary_to_pb(s: BacktestSummary) -> pb.BacktestSummary:
    return pb.BacktestSummary(
        id=s.id, created_at=pc.timestamp_to_pb(s.created_at), symbol=s.symbol, strategy=s.strategy, params=s.params,
        timeframe=pc.timeframe_to_pb(s.timeframe), range=pc.range_to_pb(s.range), initial_equity=s.initial_equity,
        spread_pips=s.spread_pips, commission_per_unit=s.commission_per_unit, commission_pct=s.commission_pct,
        bars=s.bars, metrics=metrics_to_pb(s.metrics))


def summary_from_pb(m: pb.BacktestSummary) -> BacktestSummary:
    return BacktestSummary(
        id=m.id, created_at=pc.timestamp_from_pb(m.created_at), symbol=m.symbol, strategy=m.strategy,
        params=dict(m.params), timeframe=pc.timeframe_from_pb(m.timeframe), range=pc.range_from_pb(m.range),
        initial_equity=m.initial_equity, spread_pips=m.spread_pips, commission_per_unit=m.commission_per_unit,
        commission_pct=m.commission_pct, bars=m.bars, metrics=metrics_from_pb(m.metrics))


def _trade_from_pb(m: pb.Trade) -> Trade:
    return Trade(_SIDE_FROM_PB[m.side], pc.timestamp_from_pb(m.entry_time), m.entry_price,
                 pc.timestamp_from_pb(m.exit_time), m.exit_price, m.units, m.pnl, m.trade_return)


def backtest_to_pb(b: Backtest, msg: pb.Backtest | None = None) -> pb.Backtest:
    """The backtest as a message, built in place: into `msg` when given (an element of a repeated field, say), since a
    sub-message passed to a constructor is copied (~20 ms for a curve of 500k bars), and each trade made by its field
    values (`trades.add`) rather than as a message of its own, then copied."""
    msg = pb.Backtest() if msg is None else msg
    msg.summary.CopyFrom(summary_to_pb(b.summary))
    add_trade, side, fields = msg.trades.add, _SIDE, pc.timestamp_fields
    for t in b.trades:
        add_trade(side=side[t.side], entry_time=fields(t.entry_time), entry_price=t.entry_price,
                  exit_time=fields(t.exit_time), exit_price=t.exit_price, units=t.units, pnl=t.pnl,
                  trade_return=t.trade_return)
    msg.equity_curve.time.extend(b.equity_curve.time.tolist())
    msg.equity_curve.MergeFromString(wire.packed_doubles(_EQUITY_FIELD, b.equity_curve.equity))  # straight from numpy
    return msg


def backtest_from_pb(m: pb.Backtest) -> Backtest:
    return Backtest(summary_from_pb(m.summary), tuple(_trade_from_pb(t) for t in m.trades),
                    EquityCurve(wire.int64s(m.equity_curve.time), wire.doubles(m.equity_curve.equity)))


def list_query_to_pb(q: ListBacktestsQuery) -> pb.ListBacktestsRequest:
    return pb.ListBacktestsRequest(
        symbol=q.symbol, strategy=q.strategy,
        created_after=None if q.created_after is None else pc.timestamp_to_pb(q.created_after),
        created_before=None if q.created_before is None else pc.timestamp_to_pb(q.created_before),
        page_size=q.page_size, page_token=q.page_token)


def list_query_from_pb(m: pb.ListBacktestsRequest) -> ListBacktestsQuery:
    def when(name: str):
        return pc.timestamp_from_pb(getattr(m, name), name) if m.HasField(name) else None

    return ListBacktestsQuery(
        symbol=m.symbol, strategy=m.strategy,
        created_after=when("created_after"), created_before=when("created_before"),
        page_size=m.page_size or DEFAULT_PAGE_SIZE, page_token=m.page_token)


# --- server skin ----------------------------------------------------------------------------------------------------

_BACKTEST_FIELD = {t: t.DESCRIPTOR.fields_by_name["backtest"].number
                   for t in (pb.RunBacktestResponse, pb.GetBacktestResponse)}


def _response_bytes(response_type, b: Backtest) -> bytes:
    """A serialised Run/GetBacktestResponse, the backtest spliced in as its field rather than copied into a message."""
    return wire.length_delimited(_BACKTEST_FIELD[response_type], backtest_to_pb(b).SerializeToString())


def methods(impl: Backtesting) -> list[GrpcMethod]:
    """The RPCs over any Backtesting implementation: the server skin serves them over the domain, `fxplat call`
    runs them over the flagged adapter."""

    async def run_backtest(req: pb.RunBacktestRequest) -> bytes:
        return _response_bytes(pb.RunBacktestResponse, await impl.run_backtest(backtest_request_from_pb(req)))

    async def get_backtest(req: pb.GetBacktestRequest) -> bytes:
        return _response_bytes(pb.GetBacktestResponse, await impl.get_backtest(req.id))

    async def list_backtests(req: pb.ListBacktestsRequest) -> pb.ListBacktestsResponse:
        page = await impl.list_backtests(list_query_from_pb(req))
        return pb.ListBacktestsResponse(backtests=[summary_to_pb(s) for s in page.backtests],
                                        next_page_token=page.next_page_token)

    async def delete_backtest(req: pb.DeleteBacktestRequest) -> pb.DeleteBacktestResponse:
        await impl.delete_backtest(req.id)
        return pb.DeleteBacktestResponse()

    return [
        GrpcMethod("RunBacktest", pb.RunBacktestRequest, run_backtest, "backtest:write"),
        GrpcMethod("GetBacktest", pb.GetBacktestRequest, get_backtest, "backtest:read"),
        GrpcMethod("ListBacktests", pb.ListBacktestsRequest, list_backtests, "backtest:read"),
        GrpcMethod("DeleteBacktest", pb.DeleteBacktestRequest, delete_backtest, "backtest:write"),
    ]


# --- client ---------------------------------------------------------------------------------------------------------

class BacktestingGrpcClient:
    """Backtesting over a gRPC channel (made by the client factory)."""

    transport = "grpc"

    def __init__(self, channel, metadata: tuple[tuple[str, str], ...] = ()) -> None:
        self._stub = pb_grpc.BacktestingServiceStub(channel)
        self._md = metadata

    async def run_backtest(self, request: BacktestRequest) -> Backtest:
        resp = await grpc_client.unary(self._stub.RunBacktest, backtest_request_to_pb(request), metadata=self._md)
        return backtest_from_pb(resp.backtest)

    async def get_backtest(self, backtest_id: str) -> Backtest:
        resp = await grpc_client.unary(self._stub.GetBacktest, pb.GetBacktestRequest(id=backtest_id), metadata=self._md)
        return backtest_from_pb(resp.backtest)

    async def list_backtests(self, query: ListBacktestsQuery) -> BacktestPage:
        resp = await grpc_client.unary(self._stub.ListBacktests, list_query_to_pb(query), metadata=self._md)
        return BacktestPage(tuple(summary_from_pb(s) for s in resp.backtests), resp.next_page_token)

    async def delete_backtest(self, backtest_id: str) -> None:
        await grpc_client.unary(self._stub.DeleteBacktest, pb.DeleteBacktestRequest(id=backtest_id), metadata=self._md)
