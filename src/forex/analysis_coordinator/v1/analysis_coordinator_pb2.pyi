import datetime

from forex.backtesting.v1 import backtesting_pb2 as _backtesting_pb2
from forex.causal_analysis.v1 import causal_analysis_pb2 as _causal_analysis_pb2
from forex.common.v1 import common_pb2 as _common_pb2
from forex.market_analysis.v1 import market_analysis_pb2 as _market_analysis_pb2
from google.protobuf import timestamp_pb2 as _timestamp_pb2
from google.protobuf.internal import containers as _containers
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Iterable as _Iterable, Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class RunAnalysisRequest(_message.Message):
    __slots__ = ("symbols", "timeframe", "range", "strategy", "params", "idempotency_key")
    class ParamsEntry(_message.Message):
        __slots__ = ("key", "value")
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: str
        value: float
        def __init__(self, key: _Optional[str] = ..., value: _Optional[float] = ...) -> None: ...
    SYMBOLS_FIELD_NUMBER: _ClassVar[int]
    TIMEFRAME_FIELD_NUMBER: _ClassVar[int]
    RANGE_FIELD_NUMBER: _ClassVar[int]
    STRATEGY_FIELD_NUMBER: _ClassVar[int]
    PARAMS_FIELD_NUMBER: _ClassVar[int]
    IDEMPOTENCY_KEY_FIELD_NUMBER: _ClassVar[int]
    symbols: _containers.RepeatedScalarFieldContainer[str]
    timeframe: _common_pb2.Timeframe
    range: _common_pb2.TimeRange
    strategy: str
    params: _containers.ScalarMap[str, float]
    idempotency_key: str
    def __init__(self, symbols: _Optional[_Iterable[str]] = ..., timeframe: _Optional[_Union[_common_pb2.Timeframe, str]] = ..., range: _Optional[_Union[_common_pb2.TimeRange, _Mapping]] = ..., strategy: _Optional[str] = ..., params: _Optional[_Mapping[str, float]] = ..., idempotency_key: _Optional[str] = ...) -> None: ...

class ComponentCall(_message.Message):
    __slots__ = ("component", "service", "method", "status", "transport", "fallback_reason", "latency_ms", "error_code", "error_message")
    COMPONENT_FIELD_NUMBER: _ClassVar[int]
    SERVICE_FIELD_NUMBER: _ClassVar[int]
    METHOD_FIELD_NUMBER: _ClassVar[int]
    STATUS_FIELD_NUMBER: _ClassVar[int]
    TRANSPORT_FIELD_NUMBER: _ClassVar[int]
    FALLBACK_REASON_FIELD_NUMBER: _ClassVar[int]
    LATENCY_MS_FIELD_NUMBER: _ClassVar[int]
    ERROR_CODE_FIELD_NUMBER: _ClassVar[int]
    ERROR_MESSAGE_FIELD_NUMBER: _ClassVar[int]
    component: str
    service: str
    method: str
    status: _common_pb2.CallStatus
    transport: _common_pb2.Transport
    fallback_reason: str
    latency_ms: float
    error_code: str
    error_message: str
    def __init__(self, component: _Optional[str] = ..., service: _Optional[str] = ..., method: _Optional[str] = ..., status: _Optional[_Union[_common_pb2.CallStatus, str]] = ..., transport: _Optional[_Union[_common_pb2.Transport, str]] = ..., fallback_reason: _Optional[str] = ..., latency_ms: _Optional[float] = ..., error_code: _Optional[str] = ..., error_message: _Optional[str] = ...) -> None: ...

class Analysis(_message.Message):
    __slots__ = ("id", "created_at", "request", "market", "granger", "correlations", "backtests", "calls")
    ID_FIELD_NUMBER: _ClassVar[int]
    CREATED_AT_FIELD_NUMBER: _ClassVar[int]
    REQUEST_FIELD_NUMBER: _ClassVar[int]
    MARKET_FIELD_NUMBER: _ClassVar[int]
    GRANGER_FIELD_NUMBER: _ClassVar[int]
    CORRELATIONS_FIELD_NUMBER: _ClassVar[int]
    BACKTESTS_FIELD_NUMBER: _ClassVar[int]
    CALLS_FIELD_NUMBER: _ClassVar[int]
    id: str
    created_at: _timestamp_pb2.Timestamp
    request: RunAnalysisRequest
    market: _containers.RepeatedCompositeFieldContainer[_market_analysis_pb2.AnalyzeMarketResponse]
    granger: _causal_analysis_pb2.GrangerCausalityResponse
    correlations: _causal_analysis_pb2.CorrelationMatrixResponse
    backtests: _containers.RepeatedCompositeFieldContainer[_backtesting_pb2.Backtest]
    calls: _containers.RepeatedCompositeFieldContainer[ComponentCall]
    def __init__(self, id: _Optional[str] = ..., created_at: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., request: _Optional[_Union[RunAnalysisRequest, _Mapping]] = ..., market: _Optional[_Iterable[_Union[_market_analysis_pb2.AnalyzeMarketResponse, _Mapping]]] = ..., granger: _Optional[_Union[_causal_analysis_pb2.GrangerCausalityResponse, _Mapping]] = ..., correlations: _Optional[_Union[_causal_analysis_pb2.CorrelationMatrixResponse, _Mapping]] = ..., backtests: _Optional[_Iterable[_Union[_backtesting_pb2.Backtest, _Mapping]]] = ..., calls: _Optional[_Iterable[_Union[ComponentCall, _Mapping]]] = ...) -> None: ...

class RunAnalysisResponse(_message.Message):
    __slots__ = ("analysis",)
    ANALYSIS_FIELD_NUMBER: _ClassVar[int]
    analysis: Analysis
    def __init__(self, analysis: _Optional[_Union[Analysis, _Mapping]] = ...) -> None: ...

class GetAnalysisRequest(_message.Message):
    __slots__ = ("id",)
    ID_FIELD_NUMBER: _ClassVar[int]
    id: str
    def __init__(self, id: _Optional[str] = ...) -> None: ...

class GetAnalysisResponse(_message.Message):
    __slots__ = ("analysis",)
    ANALYSIS_FIELD_NUMBER: _ClassVar[int]
    analysis: Analysis
    def __init__(self, analysis: _Optional[_Union[Analysis, _Mapping]] = ...) -> None: ...

class ListAnalysesRequest(_message.Message):
    __slots__ = ("symbol", "page_size", "page_token")
    SYMBOL_FIELD_NUMBER: _ClassVar[int]
    PAGE_SIZE_FIELD_NUMBER: _ClassVar[int]
    PAGE_TOKEN_FIELD_NUMBER: _ClassVar[int]
    symbol: str
    page_size: int
    page_token: str
    def __init__(self, symbol: _Optional[str] = ..., page_size: _Optional[int] = ..., page_token: _Optional[str] = ...) -> None: ...

class AnalysisSummary(_message.Message):
    __slots__ = ("id", "created_at", "symbols", "timeframe", "strategy", "failed_calls")
    ID_FIELD_NUMBER: _ClassVar[int]
    CREATED_AT_FIELD_NUMBER: _ClassVar[int]
    SYMBOLS_FIELD_NUMBER: _ClassVar[int]
    TIMEFRAME_FIELD_NUMBER: _ClassVar[int]
    STRATEGY_FIELD_NUMBER: _ClassVar[int]
    FAILED_CALLS_FIELD_NUMBER: _ClassVar[int]
    id: str
    created_at: _timestamp_pb2.Timestamp
    symbols: _containers.RepeatedScalarFieldContainer[str]
    timeframe: _common_pb2.Timeframe
    strategy: str
    failed_calls: int
    def __init__(self, id: _Optional[str] = ..., created_at: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., symbols: _Optional[_Iterable[str]] = ..., timeframe: _Optional[_Union[_common_pb2.Timeframe, str]] = ..., strategy: _Optional[str] = ..., failed_calls: _Optional[int] = ...) -> None: ...

class ListAnalysesResponse(_message.Message):
    __slots__ = ("analyses", "next_page_token")
    ANALYSES_FIELD_NUMBER: _ClassVar[int]
    NEXT_PAGE_TOKEN_FIELD_NUMBER: _ClassVar[int]
    analyses: _containers.RepeatedCompositeFieldContainer[AnalysisSummary]
    next_page_token: str
    def __init__(self, analyses: _Optional[_Iterable[_Union[AnalysisSummary, _Mapping]]] = ..., next_page_token: _Optional[str] = ...) -> None: ...
