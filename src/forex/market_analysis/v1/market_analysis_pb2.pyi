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

class TrendDirection(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    TREND_DIRECTION_UNSPECIFIED: _ClassVar[TrendDirection]
    TREND_DIRECTION_UP: _ClassVar[TrendDirection]
    TREND_DIRECTION_DOWN: _ClassVar[TrendDirection]
    TREND_DIRECTION_SIDEWAYS: _ClassVar[TrendDirection]

class Regime(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    REGIME_UNSPECIFIED: _ClassVar[Regime]
    REGIME_TRENDING: _ClassVar[Regime]
    REGIME_RANGING: _ClassVar[Regime]
    REGIME_VOLATILE: _ClassVar[Regime]
    REGIME_QUIET: _ClassVar[Regime]
TREND_DIRECTION_UNSPECIFIED: TrendDirection
TREND_DIRECTION_UP: TrendDirection
TREND_DIRECTION_DOWN: TrendDirection
TREND_DIRECTION_SIDEWAYS: TrendDirection
REGIME_UNSPECIFIED: Regime
REGIME_TRENDING: Regime
REGIME_RANGING: Regime
REGIME_VOLATILE: Regime
REGIME_QUIET: Regime

class ListSymbolsRequest(_message.Message):
    __slots__ = ()
    def __init__(self) -> None: ...

class SymbolInfo(_message.Message):
    __slots__ = ("symbol", "description", "base", "quote", "pip_size", "digits", "source", "first_time", "last_time")
    SYMBOL_FIELD_NUMBER: _ClassVar[int]
    DESCRIPTION_FIELD_NUMBER: _ClassVar[int]
    BASE_FIELD_NUMBER: _ClassVar[int]
    QUOTE_FIELD_NUMBER: _ClassVar[int]
    PIP_SIZE_FIELD_NUMBER: _ClassVar[int]
    DIGITS_FIELD_NUMBER: _ClassVar[int]
    SOURCE_FIELD_NUMBER: _ClassVar[int]
    FIRST_TIME_FIELD_NUMBER: _ClassVar[int]
    LAST_TIME_FIELD_NUMBER: _ClassVar[int]
    symbol: str
    description: str
    base: str
    quote: str
    pip_size: float
    digits: int
    source: str
    first_time: _timestamp_pb2.Timestamp
    last_time: _timestamp_pb2.Timestamp
    def __init__(self, symbol: _Optional[str] = ..., description: _Optional[str] = ..., base: _Optional[str] = ..., quote: _Optional[str] = ..., pip_size: _Optional[float] = ..., digits: _Optional[int] = ..., source: _Optional[str] = ..., first_time: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., last_time: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ...) -> None: ...

class ListSymbolsResponse(_message.Message):
    __slots__ = ("symbols",)
    SYMBOLS_FIELD_NUMBER: _ClassVar[int]
    symbols: _containers.RepeatedCompositeFieldContainer[SymbolInfo]
    def __init__(self, symbols: _Optional[_Iterable[_Union[SymbolInfo, _Mapping]]] = ...) -> None: ...

class GetCandlesRequest(_message.Message):
    __slots__ = ("symbol", "timeframe", "range", "limit", "page_token")
    SYMBOL_FIELD_NUMBER: _ClassVar[int]
    TIMEFRAME_FIELD_NUMBER: _ClassVar[int]
    RANGE_FIELD_NUMBER: _ClassVar[int]
    LIMIT_FIELD_NUMBER: _ClassVar[int]
    PAGE_TOKEN_FIELD_NUMBER: _ClassVar[int]
    symbol: str
    timeframe: _common_pb2.Timeframe
    range: _common_pb2.TimeRange
    limit: int
    page_token: str
    def __init__(self, symbol: _Optional[str] = ..., timeframe: _Optional[_Union[_common_pb2.Timeframe, str]] = ..., range: _Optional[_Union[_common_pb2.TimeRange, _Mapping]] = ..., limit: _Optional[int] = ..., page_token: _Optional[str] = ...) -> None: ...

class GetCandlesResponse(_message.Message):
    __slots__ = ("candles", "next_page_token")
    CANDLES_FIELD_NUMBER: _ClassVar[int]
    NEXT_PAGE_TOKEN_FIELD_NUMBER: _ClassVar[int]
    candles: _common_pb2.CandleSeries
    next_page_token: str
    def __init__(self, candles: _Optional[_Union[_common_pb2.CandleSeries, _Mapping]] = ..., next_page_token: _Optional[str] = ...) -> None: ...

class IndicatorSpec(_message.Message):
    __slots__ = ("name", "params")
    class ParamsEntry(_message.Message):
        __slots__ = ("key", "value")
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: str
        value: float
        def __init__(self, key: _Optional[str] = ..., value: _Optional[float] = ...) -> None: ...
    NAME_FIELD_NUMBER: _ClassVar[int]
    PARAMS_FIELD_NUMBER: _ClassVar[int]
    name: str
    params: _containers.ScalarMap[str, float]
    def __init__(self, name: _Optional[str] = ..., params: _Optional[_Mapping[str, float]] = ...) -> None: ...

class ComputeIndicatorsRequest(_message.Message):
    __slots__ = ("symbol", "timeframe", "range", "indicators")
    SYMBOL_FIELD_NUMBER: _ClassVar[int]
    TIMEFRAME_FIELD_NUMBER: _ClassVar[int]
    RANGE_FIELD_NUMBER: _ClassVar[int]
    INDICATORS_FIELD_NUMBER: _ClassVar[int]
    symbol: str
    timeframe: _common_pb2.Timeframe
    range: _common_pb2.TimeRange
    indicators: _containers.RepeatedCompositeFieldContainer[IndicatorSpec]
    def __init__(self, symbol: _Optional[str] = ..., timeframe: _Optional[_Union[_common_pb2.Timeframe, str]] = ..., range: _Optional[_Union[_common_pb2.TimeRange, _Mapping]] = ..., indicators: _Optional[_Iterable[_Union[IndicatorSpec, _Mapping]]] = ...) -> None: ...

class IndicatorOutput(_message.Message):
    __slots__ = ("name", "params", "lines")
    class ParamsEntry(_message.Message):
        __slots__ = ("key", "value")
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: str
        value: float
        def __init__(self, key: _Optional[str] = ..., value: _Optional[float] = ...) -> None: ...
    NAME_FIELD_NUMBER: _ClassVar[int]
    PARAMS_FIELD_NUMBER: _ClassVar[int]
    LINES_FIELD_NUMBER: _ClassVar[int]
    name: str
    params: _containers.ScalarMap[str, float]
    lines: _containers.RepeatedCompositeFieldContainer[_common_pb2.DoubleColumn]
    def __init__(self, name: _Optional[str] = ..., params: _Optional[_Mapping[str, float]] = ..., lines: _Optional[_Iterable[_Union[_common_pb2.DoubleColumn, _Mapping]]] = ...) -> None: ...

class ComputeIndicatorsResponse(_message.Message):
    __slots__ = ("symbol", "timeframe", "time", "outputs")
    SYMBOL_FIELD_NUMBER: _ClassVar[int]
    TIMEFRAME_FIELD_NUMBER: _ClassVar[int]
    TIME_FIELD_NUMBER: _ClassVar[int]
    OUTPUTS_FIELD_NUMBER: _ClassVar[int]
    symbol: str
    timeframe: _common_pb2.Timeframe
    time: _containers.RepeatedScalarFieldContainer[int]
    outputs: _containers.RepeatedCompositeFieldContainer[IndicatorOutput]
    def __init__(self, symbol: _Optional[str] = ..., timeframe: _Optional[_Union[_common_pb2.Timeframe, str]] = ..., time: _Optional[_Iterable[int]] = ..., outputs: _Optional[_Iterable[_Union[IndicatorOutput, _Mapping]]] = ...) -> None: ...

class AnalyzeMarketRequest(_message.Message):
    __slots__ = ("symbol", "timeframe", "range")
    SYMBOL_FIELD_NUMBER: _ClassVar[int]
    TIMEFRAME_FIELD_NUMBER: _ClassVar[int]
    RANGE_FIELD_NUMBER: _ClassVar[int]
    symbol: str
    timeframe: _common_pb2.Timeframe
    range: _common_pb2.TimeRange
    def __init__(self, symbol: _Optional[str] = ..., timeframe: _Optional[_Union[_common_pb2.Timeframe, str]] = ..., range: _Optional[_Union[_common_pb2.TimeRange, _Mapping]] = ...) -> None: ...

class AnalyzeMarketResponse(_message.Message):
    __slots__ = ("symbol", "timeframe", "as_of", "bars", "last_price", "change_pct", "trend", "trend_strength", "atr", "realized_volatility", "regime", "support", "resistance")
    SYMBOL_FIELD_NUMBER: _ClassVar[int]
    TIMEFRAME_FIELD_NUMBER: _ClassVar[int]
    AS_OF_FIELD_NUMBER: _ClassVar[int]
    BARS_FIELD_NUMBER: _ClassVar[int]
    LAST_PRICE_FIELD_NUMBER: _ClassVar[int]
    CHANGE_PCT_FIELD_NUMBER: _ClassVar[int]
    TREND_FIELD_NUMBER: _ClassVar[int]
    TREND_STRENGTH_FIELD_NUMBER: _ClassVar[int]
    ATR_FIELD_NUMBER: _ClassVar[int]
    REALIZED_VOLATILITY_FIELD_NUMBER: _ClassVar[int]
    REGIME_FIELD_NUMBER: _ClassVar[int]
    SUPPORT_FIELD_NUMBER: _ClassVar[int]
    RESISTANCE_FIELD_NUMBER: _ClassVar[int]
    symbol: str
    timeframe: _common_pb2.Timeframe
    as_of: _timestamp_pb2.Timestamp
    bars: int
    last_price: float
    change_pct: float
    trend: TrendDirection
    trend_strength: float
    atr: float
    realized_volatility: float
    regime: Regime
    support: _containers.RepeatedScalarFieldContainer[float]
    resistance: _containers.RepeatedScalarFieldContainer[float]
    def __init__(self, symbol: _Optional[str] = ..., timeframe: _Optional[_Union[_common_pb2.Timeframe, str]] = ..., as_of: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., bars: _Optional[int] = ..., last_price: _Optional[float] = ..., change_pct: _Optional[float] = ..., trend: _Optional[_Union[TrendDirection, str]] = ..., trend_strength: _Optional[float] = ..., atr: _Optional[float] = ..., realized_volatility: _Optional[float] = ..., regime: _Optional[_Union[Regime, str]] = ..., support: _Optional[_Iterable[float]] = ..., resistance: _Optional[_Iterable[float]] = ...) -> None: ...

class QuotePosition(_message.Message):
    __slots__ = ("symbol", "sequence")
    SYMBOL_FIELD_NUMBER: _ClassVar[int]
    SEQUENCE_FIELD_NUMBER: _ClassVar[int]
    symbol: str
    sequence: int
    def __init__(self, symbol: _Optional[str] = ..., sequence: _Optional[int] = ...) -> None: ...

class StreamQuotesRequest(_message.Message):
    __slots__ = ("symbols", "resume_after")
    SYMBOLS_FIELD_NUMBER: _ClassVar[int]
    RESUME_AFTER_FIELD_NUMBER: _ClassVar[int]
    symbols: _containers.RepeatedScalarFieldContainer[str]
    resume_after: _containers.RepeatedCompositeFieldContainer[QuotePosition]
    def __init__(self, symbols: _Optional[_Iterable[str]] = ..., resume_after: _Optional[_Iterable[_Union[QuotePosition, _Mapping]]] = ...) -> None: ...

class Quote(_message.Message):
    __slots__ = ("symbol", "sequence", "time", "bid", "ask", "mid")
    SYMBOL_FIELD_NUMBER: _ClassVar[int]
    SEQUENCE_FIELD_NUMBER: _ClassVar[int]
    TIME_FIELD_NUMBER: _ClassVar[int]
    BID_FIELD_NUMBER: _ClassVar[int]
    ASK_FIELD_NUMBER: _ClassVar[int]
    MID_FIELD_NUMBER: _ClassVar[int]
    symbol: str
    sequence: int
    time: _timestamp_pb2.Timestamp
    bid: float
    ask: float
    mid: float
    def __init__(self, symbol: _Optional[str] = ..., sequence: _Optional[int] = ..., time: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., bid: _Optional[float] = ..., ask: _Optional[float] = ..., mid: _Optional[float] = ...) -> None: ...

class StreamQuotesResponse(_message.Message):
    __slots__ = ("quotes",)
    QUOTES_FIELD_NUMBER: _ClassVar[int]
    quotes: _containers.RepeatedCompositeFieldContainer[Quote]
    def __init__(self, quotes: _Optional[_Iterable[_Union[Quote, _Mapping]]] = ...) -> None: ...

class WatchCandlesRequest(_message.Message):
    __slots__ = ("symbol", "timeframe", "resume_after")
    SYMBOL_FIELD_NUMBER: _ClassVar[int]
    TIMEFRAME_FIELD_NUMBER: _ClassVar[int]
    RESUME_AFTER_FIELD_NUMBER: _ClassVar[int]
    symbol: str
    timeframe: _common_pb2.Timeframe
    resume_after: int
    def __init__(self, symbol: _Optional[str] = ..., timeframe: _Optional[_Union[_common_pb2.Timeframe, str]] = ..., resume_after: _Optional[int] = ...) -> None: ...

class ClosedCandle(_message.Message):
    __slots__ = ("sequence", "time", "open", "high", "low", "close", "volume")
    SEQUENCE_FIELD_NUMBER: _ClassVar[int]
    TIME_FIELD_NUMBER: _ClassVar[int]
    OPEN_FIELD_NUMBER: _ClassVar[int]
    HIGH_FIELD_NUMBER: _ClassVar[int]
    LOW_FIELD_NUMBER: _ClassVar[int]
    CLOSE_FIELD_NUMBER: _ClassVar[int]
    VOLUME_FIELD_NUMBER: _ClassVar[int]
    sequence: int
    time: _timestamp_pb2.Timestamp
    open: float
    high: float
    low: float
    close: float
    volume: float
    def __init__(self, sequence: _Optional[int] = ..., time: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., open: _Optional[float] = ..., high: _Optional[float] = ..., low: _Optional[float] = ..., close: _Optional[float] = ..., volume: _Optional[float] = ...) -> None: ...

class WatchCandlesResponse(_message.Message):
    __slots__ = ("candles",)
    CANDLES_FIELD_NUMBER: _ClassVar[int]
    candles: _containers.RepeatedCompositeFieldContainer[ClosedCandle]
    def __init__(self, candles: _Optional[_Iterable[_Union[ClosedCandle, _Mapping]]] = ...) -> None: ...
