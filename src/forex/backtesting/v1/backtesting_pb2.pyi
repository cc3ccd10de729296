import datetime

from forex.common.v1 import common_pb2 as _common_pb2
from google.protobuf import timestamp_pb2 as _timestamp_pb2
from google.protobuf.internal import containers as _containers
from google.protobuf.internal import enum_type_wrapper as _enum_type_wrapper
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Iterable as _Iterable, Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class Side(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    SIDE_UNSPECIFIED: _ClassVar[Side]
    SIDE_LONG: _ClassVar[Side]
    SIDE_SHORT: _ClassVar[Side]
SIDE_UNSPECIFIED: Side
SIDE_LONG: Side
SIDE_SHORT: Side

class RunBacktestRequest(_message.Message):
    __slots__ = ("symbol", "strategy", "params", "timeframe", "range", "initial_equity", "spread_pips", "commission_per_unit", "commission_pct", "idempotency_key")
    class ParamsEntry(_message.Message):
        __slots__ = ("key", "value")
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: str
        value: float
        def __init__(self, key: _Optional[str] = ..., value: _Optional[float] = ...) -> None: ...
    SYMBOL_FIELD_NUMBER: _ClassVar[int]
    STRATEGY_FIELD_NUMBER: _ClassVar[int]
    PARAMS_FIELD_NUMBER: _ClassVar[int]
    TIMEFRAME_FIELD_NUMBER: _ClassVar[int]
    RANGE_FIELD_NUMBER: _ClassVar[int]
    INITIAL_EQUITY_FIELD_NUMBER: _ClassVar[int]
    SPREAD_PIPS_FIELD_NUMBER: _ClassVar[int]
    COMMISSION_PER_UNIT_FIELD_NUMBER: _ClassVar[int]
    COMMISSION_PCT_FIELD_NUMBER: _ClassVar[int]
    IDEMPOTENCY_KEY_FIELD_NUMBER: _ClassVar[int]
    symbol: str
    strategy: str
    params: _containers.ScalarMap[str, float]
    timeframe: _common_pb2.Timeframe
    range: _common_pb2.TimeRange
    initial_equity: float
    spread_pips: float
    commission_per_unit: float
    commission_pct: float
    idempotency_key: str
    def __init__(self, symbol: _Optional[str] = ..., strategy: _Optional[str] = ..., params: _Optional[_Mapping[str, float]] = ..., timeframe: _Optional[_Union[_common_pb2.Timeframe, str]] = ..., range: _Optional[_Union[_common_pb2.TimeRange, _Mapping]] = ..., initial_equity: _Optional[float] = ..., spread_pips: _Optional[float] = ..., commission_per_unit: _Optional[float] = ..., commission_pct: _Optional[float] = ..., idempotency_key: _Optional[str] = ...) -> None: ...

class RunBacktestResponse(_message.Message):
    __slots__ = ("backtest",)
    BACKTEST_FIELD_NUMBER: _ClassVar[int]
    backtest: Backtest
    def __init__(self, backtest: _Optional[_Union[Backtest, _Mapping]] = ...) -> None: ...

class GetBacktestRequest(_message.Message):
    __slots__ = ("id",)
    ID_FIELD_NUMBER: _ClassVar[int]
    id: str
    def __init__(self, id: _Optional[str] = ...) -> None: ...

class GetBacktestResponse(_message.Message):
    __slots__ = ("backtest",)
    BACKTEST_FIELD_NUMBER: _ClassVar[int]
    backtest: Backtest
    def __init__(self, backtest: _Optional[_Union[Backtest, _Mapping]] = ...) -> None: ...

class ListBacktestsRequest(_message.Message):
    __slots__ = ("symbol", "strategy", "created_after", "created_before", "page_size", "page_token")
    SYMBOL_FIELD_NUMBER: _ClassVar[int]
    STRATEGY_FIELD_NUMBER: _ClassVar[int]
    CREATED_AFTER_FIELD_NUMBER: _ClassVar[int]
    CREATED_BEFORE_FIELD_NUMBER: _ClassVar[int]
    PAGE_SIZE_FIELD_NUMBER: _ClassVar[int]
    PAGE_TOKEN_FIELD_NUMBER: _ClassVar[int]
    symbol: str
    strategy: str
    created_after: _timestamp_pb2.Timestamp
    created_before: _timestamp_pb2.Timestamp
    page_size: int
    page_token: str
    def __init__(self, symbol: _Optional[str] = ..., strategy: _Optional[str] = ..., created_after: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., created_before: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., page_size: _Optional[int] = ..., page_token: _Optional[str] = ...) -> None: ...

class ListBacktestsResponse(_message.Message):
    __slots__ = ("backtests", "next_page_token")
    BACKTESTS_FIELD_NUMBER: _ClassVar[int]
    NEXT_PAGE_TOKEN_FIELD_NUMBER: _ClassVar[int]
    backtests: _containers.RepeatedCompositeFieldContainer[BacktestSummary]
    next_page_token: str
    def __init__(self, backtests: _Optional[_Iterable[_Union[BacktestSummary, _Mapping]]] = ..., next_page_token: _Optional[str] = ...) -> None: ...

class DeleteBacktestRequest(_message.Message):
    __slots__ = ("id",)
    ID_FIELD_NUMBER: _ClassVar[int]
    id: str
    def __init__(self, id: _Optional[str] = ...) -> None: ...

class DeleteBacktestResponse(_message.Message):
    __slots__ = ()
    def __init__(self) -> None: ...

class Backtest(_message.Message):
    __slots__ = ("summary", "trades", "equity_curve")
    SUMMARY_FIELD_NUMBER: _ClassVar[int]
    TRADES_FIELD_NUMBER: _ClassVar[int]
    EQUITY_CURVE_FIELD_NUMBER: _ClassVar[int]
    summary: BacktestSummary
    trades: _containers.RepeatedCompositeFieldContainer[Trade]
    equity_curve: EquityCurve
    def __init__(self, summary: _Optional[_Union[BacktestSummary, _Mapping]] = ..., trades: _Optional[_Iterable[_Union[Trade, _Mapping]]] = ..., equity_curve: _Optional[_Union[EquityCurve, _Mapping]] = ...) -> None: ...

class BacktestSummary(_message.Message):
    __slots__ = ("id", "created_at", "symbol", "strategy", "params", "timeframe", "range", "initial_equity", "spread_pips", "commission_per_unit", "commission_pct", "bars", "metrics")
    class ParamsEntry(_message.Message):
        __slots__ = ("key", "value")
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: str
        value: float
        def __init__(self, key: _Optional[str] = ..., value: _Optional[float] = ...) -> None: ...
    ID_FIELD_NUMBER: _ClassVar[int]
    CREATED_AT_FIELD_NUMBER: _ClassVar[int]
    SYMBOL_FIELD_NUMBER: _ClassVar[int]
    STRATEGY_FIELD_NUMBER: _ClassVar[int]
    PARAMS_FIELD_NUMBER: _ClassVar[int]
    TIMEFRAME_FIELD_NUMBER: _ClassVar[int]
    RANGE_FIELD_NUMBER: _ClassVar[int]
    INITIAL_EQUITY_FIELD_NUMBER: _ClassVar[int]
    SPREAD_PIPS_FIELD_NUMBER: _ClassVar[int]
    COMMISSION_PER_UNIT_FIELD_NUMBER: _ClassVar[int]
    COMMISSION_PCT_FIELD_NUMBER: _ClassVar[int]
    BARS_FIELD_NUMBER: _ClassVar[int]
    METRICS_FIELD_NUMBER: _ClassVar[int]
    id: str
    created_at: _timestamp_pb2.Timestamp
    symbol: str
    strategy: str
    params: _containers.ScalarMap[str, float]
    timeframe: _common_pb2.Timeframe
    range: _common_pb2.TimeRange
    initial_equity: float
    spread_pips: float
    commission_per_unit: float
    commission_pct: float
    bars: int
    metrics: BacktestMetrics
    def __init__(self, id: _Optional[str] = ..., created_at: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., symbol: _Optional[str] = ..., strategy: _Optional[str] = ..., params: _Optional[_Mapping[str, float]] = ..., timeframe: _Optional[_Union[_common_pb2.Timeframe, str]] = ..., range: _Optional[_Union[_common_pb2.TimeRange, _Mapping]] = ..., initial_equity: _Optional[float] = ..., spread_pips: _Optional[float] = ..., commission_per_unit: _Optional[float] = ..., commission_pct: _Optional[float] = ..., bars: _Optional[int] = ..., metrics: _Optional[_Union[BacktestMetrics, _Mapping]] = ...) -> None: ...

class BacktestMetrics(_message.Message):
    __slots__ = ("total_return", "annualized_return", "sharpe_ratio", "sortino_ratio", "max_drawdown", "win_rate", "profit_factor", "trade_count", "average_trade_pnl", "average_trade_return", "exposure", "final_equity")
    TOTAL_RETURN_FIELD_NUMBER: _ClassVar[int]
    ANNUALIZED_RETURN_FIELD_NUMBER: _ClassVar[int]
    SHARPE_RATIO_FIELD_NUMBER: _ClassVar[int]
    SORTINO_RATIO_FIELD_NUMBER: _ClassVar[int]
    MAX_DRAWDOWN_FIELD_NUMBER: _ClassVar[int]
    WIN_RATE_FIELD_NUMBER: _ClassVar[int]
    PROFIT_FACTOR_FIELD_NUMBER: _ClassVar[int]
    TRADE_COUNT_FIELD_NUMBER: _ClassVar[int]
    AVERAGE_TRADE_PNL_FIELD_NUMBER: _ClassVar[int]
    AVERAGE_TRADE_RETURN_FIELD_NUMBER: _ClassVar[int]
    EXPOSURE_FIELD_NUMBER: _ClassVar[int]
    FINAL_EQUITY_FIELD_NUMBER: _ClassVar[int]
    total_return: float
    annualized_return: float
    sharpe_ratio: float
    sortino_ratio: float
    max_drawdown: float
    win_rate: float
    profit_factor: float
    trade_count: int
    average_trade_pnl: float
    average_trade_return: float
    exposure: float
    final_equity: float
    def __init__(self, total_return: _Optional[float] = ..., annualized_return: _Optional[float] = ..., sharpe_ratio: _Optional[float] = ..., sortino_ratio: _Optional[float] = ..., max_drawdown: _Optional[float] = ..., win_rate: _Optional[float] = ..., profit_factor: _Optional[float] = ..., trade_count: _Optional[int] = ..., average_trade_pnl: _Optional[float] = ..., average_trade_return: _Optional[float] = ..., exposure: _Optional[float] = ..., final_equity: _Optional[float] = ...) -> None: ...

class Trade(_message.Message):
    __slots__ = ("side", "entry_time", "entry_price", "exit_time", "exit_price", "units", "pnl", "trade_return")
    SIDE_FIELD_NUMBER: _ClassVar[int]
    ENTRY_TIME_FIELD_NUMBER: _ClassVar[int]
    ENTRY_PRICE_FIELD_NUMBER: _ClassVar[int]
    EXIT_TIME_FIELD_NUMBER: _ClassVar[int]
    EXIT_PRICE_FIELD_NUMBER: _ClassVar[int]
    UNITS_FIELD_NUMBER: _ClassVar[int]
    PNL_FIELD_NUMBER: _ClassVar[int]
    TRADE_RETURN_FIELD_NUMBER: _ClassVar[int]
    side: Side
    entry_time: _timestamp_pb2.Timestamp
    entry_price: float
    exit_time: _timestamp_pb2.Timestamp
    exit_price: float
    units: float
    pnl: float
    trade_return: float
    def __init__(self, side: _Optional[_Union[Side, str]] = ..., entry_time: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., entry_price: _Optional[float] = ..., exit_time: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., exit_price: _Optional[float] = ..., units: _Optional[float] = ..., pnl: _Optional[float] = ..., trade_return: _Optional[float] = ...) -> None: ...

class EquityCurve(_message.Message):
    __slots__ = ("time", "equity")
    TIME_FIELD_NUMBER: _ClassVar[int]
    EQUITY_FIELD_NUMBER: _ClassVar[int]
    time: _containers.RepeatedScalarFieldContainer[int]
    equity: _containers.RepeatedScalarFieldContainer[float]
    def __init__(self, time: _Optional[_Iterable[int]] = ..., equity: _Optional[_Iterable[float]] = ...) -> None: ...
