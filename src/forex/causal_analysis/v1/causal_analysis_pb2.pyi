from forex.common.v1 import common_pb2 as _common_pb2
from google.protobuf.internal import containers as _containers
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Iterable as _Iterable, Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class SymbolPair(_message.Message):
    __slots__ = ("first", "second")
    FIRST_FIELD_NUMBER: _ClassVar[int]
    SECOND_FIELD_NUMBER: _ClassVar[int]
    first: str
    second: str
    def __init__(self, first: _Optional[str] = ..., second: _Optional[str] = ...) -> None: ...

class GrangerCausalityRequest(_message.Message):
    __slots__ = ("pairs", "timeframe", "range", "max_lag", "alpha")
    PAIRS_FIELD_NUMBER: _ClassVar[int]
    TIMEFRAME_FIELD_NUMBER: _ClassVar[int]
    RANGE_FIELD_NUMBER: _ClassVar[int]
    MAX_LAG_FIELD_NUMBER: _ClassVar[int]
    ALPHA_FIELD_NUMBER: _ClassVar[int]
    pairs: _containers.RepeatedCompositeFieldContainer[SymbolPair]
    timeframe: _common_pb2.Timeframe
    range: _common_pb2.TimeRange
    max_lag: int
    alpha: float
    def __init__(self, pairs: _Optional[_Iterable[_Union[SymbolPair, _Mapping]]] = ..., timeframe: _Optional[_Union[_common_pb2.Timeframe, str]] = ..., range: _Optional[_Union[_common_pb2.TimeRange, _Mapping]] = ..., max_lag: _Optional[int] = ..., alpha: _Optional[float] = ...) -> None: ...

class GrangerTest(_message.Message):
    __slots__ = ("cause", "effect", "f_statistics", "p_values", "adjusted_p_values", "best_lag", "p_value", "adjusted_p_value", "significant", "observations", "range")
    CAUSE_FIELD_NUMBER: _ClassVar[int]
    EFFECT_FIELD_NUMBER: _ClassVar[int]
    F_STATISTICS_FIELD_NUMBER: _ClassVar[int]
    P_VALUES_FIELD_NUMBER: _ClassVar[int]
    ADJUSTED_P_VALUES_FIELD_NUMBER: _ClassVar[int]
    BEST_LAG_FIELD_NUMBER: _ClassVar[int]
    P_VALUE_FIELD_NUMBER: _ClassVar[int]
    ADJUSTED_P_VALUE_FIELD_NUMBER: _ClassVar[int]
    SIGNIFICANT_FIELD_NUMBER: _ClassVar[int]
    OBSERVATIONS_FIELD_NUMBER: _ClassVar[int]
    RANGE_FIELD_NUMBER: _ClassVar[int]
    cause: str
    effect: str
    f_statistics: _containers.RepeatedScalarFieldContainer[float]
    p_values: _containers.RepeatedScalarFieldContainer[float]
    adjusted_p_values: _containers.RepeatedScalarFieldContainer[float]
    best_lag: int
    p_value: float
    adjusted_p_value: float
    significant: bool
    observations: int
    range: _common_pb2.TimeRange
    def __init__(self, cause: _Optional[str] = ..., effect: _Optional[str] = ..., f_statistics: _Optional[_Iterable[float]] = ..., p_values: _Optional[_Iterable[float]] = ..., adjusted_p_values: _Optional[_Iterable[float]] = ..., best_lag: _Optional[int] = ..., p_value: _Optional[float] = ..., adjusted_p_value: _Optional[float] = ..., significant: _Optional[bool] = ..., observations: _Optional[int] = ..., range: _Optional[_Union[_common_pb2.TimeRange, _Mapping]] = ...) -> None: ...

class GrangerCausalityResponse(_message.Message):
    __slots__ = ("timeframe", "alpha", "tests")
    TIMEFRAME_FIELD_NUMBER: _ClassVar[int]
    ALPHA_FIELD_NUMBER: _ClassVar[int]
    TESTS_FIELD_NUMBER: _ClassVar[int]
    timeframe: _common_pb2.Timeframe
    alpha: float
    tests: _containers.RepeatedCompositeFieldContainer[GrangerTest]
    def __init__(self, timeframe: _Optional[_Union[_common_pb2.Timeframe, str]] = ..., alpha: _Optional[float] = ..., tests: _Optional[_Iterable[_Union[GrangerTest, _Mapping]]] = ...) -> None: ...

class CorrelationMatrixRequest(_message.Message):
    __slots__ = ("symbols", "timeframe", "range")
    SYMBOLS_FIELD_NUMBER: _ClassVar[int]
    TIMEFRAME_FIELD_NUMBER: _ClassVar[int]
    RANGE_FIELD_NUMBER: _ClassVar[int]
    symbols: _containers.RepeatedScalarFieldContainer[str]
    timeframe: _common_pb2.Timeframe
    range: _common_pb2.TimeRange
    def __init__(self, symbols: _Optional[_Iterable[str]] = ..., timeframe: _Optional[_Union[_common_pb2.Timeframe, str]] = ..., range: _Optional[_Union[_common_pb2.TimeRange, _Mapping]] = ...) -> None: ...

class CorrelationMatrixResponse(_message.Message):
    __slots__ = ("symbols", "timeframe", "pearson", "spearman", "observations", "range")
    SYMBOLS_FIELD_NUMBER: _ClassVar[int]
    TIMEFRAME_FIELD_NUMBER: _ClassVar[int]
    PEARSON_FIELD_NUMBER: _ClassVar[int]
    SPEARMAN_FIELD_NUMBER: _ClassVar[int]
    OBSERVATIONS_FIELD_NUMBER: _ClassVar[int]
    RANGE_FIELD_NUMBER: _ClassVar[int]
    symbols: _containers.RepeatedScalarFieldContainer[str]
    timeframe: _common_pb2.Timeframe
    pearson: _containers.RepeatedScalarFieldContainer[float]
    spearman: _containers.RepeatedScalarFieldContainer[float]
    observations: int
    range: _common_pb2.TimeRange
    def __init__(self, symbols: _Optional[_Iterable[str]] = ..., timeframe: _Optional[_Union[_common_pb2.Timeframe, str]] = ..., pearson: _Optional[_Iterable[float]] = ..., spearman: _Optional[_Iterable[float]] = ..., observations: _Optional[int] = ..., range: _Optional[_Union[_common_pb2.TimeRange, _Mapping]] = ...) -> None: ...

class RollingCorrelationRequest(_message.Message):
    __slots__ = ("pair", "timeframe", "range", "window")
    PAIR_FIELD_NUMBER: _ClassVar[int]
    TIMEFRAME_FIELD_NUMBER: _ClassVar[int]
    RANGE_FIELD_NUMBER: _ClassVar[int]
    WINDOW_FIELD_NUMBER: _ClassVar[int]
    pair: SymbolPair
    timeframe: _common_pb2.Timeframe
    range: _common_pb2.TimeRange
    window: int
    def __init__(self, pair: _Optional[_Union[SymbolPair, _Mapping]] = ..., timeframe: _Optional[_Union[_common_pb2.Timeframe, str]] = ..., range: _Optional[_Union[_common_pb2.TimeRange, _Mapping]] = ..., window: _Optional[int] = ...) -> None: ...

class RollingCorrelationResponse(_message.Message):
    __slots__ = ("pair", "timeframe", "window", "time", "correlation")
    PAIR_FIELD_NUMBER: _ClassVar[int]
    TIMEFRAME_FIELD_NUMBER: _ClassVar[int]
    WINDOW_FIELD_NUMBER: _ClassVar[int]
    TIME_FIELD_NUMBER: _ClassVar[int]
    CORRELATION_FIELD_NUMBER: _ClassVar[int]
    pair: SymbolPair
    timeframe: _common_pb2.Timeframe
    window: int
    time: _containers.RepeatedScalarFieldContainer[int]
    correlation: _containers.RepeatedScalarFieldContainer[float]
    def __init__(self, pair: _Optional[_Union[SymbolPair, _Mapping]] = ..., timeframe: _Optional[_Union[_common_pb2.Timeframe, str]] = ..., window: _Optional[int] = ..., time: _Optional[_Iterable[int]] = ..., correlation: _Optional[_Iterable[float]] = ...) -> None: ...

class LeadLagRequest(_message.Message):
    __slots__ = ("pair", "timeframe", "range", "max_lag")
    PAIR_FIELD_NUMBER: _ClassVar[int]
    TIMEFRAME_FIELD_NUMBER: _ClassVar[int]
    RANGE_FIELD_NUMBER: _ClassVar[int]
    MAX_LAG_FIELD_NUMBER: _ClassVar[int]
    pair: SymbolPair
    timeframe: _common_pb2.Timeframe
    range: _common_pb2.TimeRange
    max_lag: int
    def __init__(self, pair: _Optional[_Union[SymbolPair, _Mapping]] = ..., timeframe: _Optional[_Union[_common_pb2.Timeframe, str]] = ..., range: _Optional[_Union[_common_pb2.TimeRange, _Mapping]] = ..., max_lag: _Optional[int] = ...) -> None: ...

class LeadLagResponse(_message.Message):
    __slots__ = ("pair", "timeframe", "leader", "follower", "lag", "correlation", "lags", "cross_correlation", "noise_bound", "observations", "range")
    PAIR_FIELD_NUMBER: _ClassVar[int]
    TIMEFRAME_FIELD_NUMBER: _ClassVar[int]
    LEADER_FIELD_NUMBER: _ClassVar[int]
    FOLLOWER_FIELD_NUMBER: _ClassVar[int]
    LAG_FIELD_NUMBER: _ClassVar[int]
    CORRELATION_FIELD_NUMBER: _ClassVar[int]
    LAGS_FIELD_NUMBER: _ClassVar[int]
    CROSS_CORRELATION_FIELD_NUMBER: _ClassVar[int]
    NOISE_BOUND_FIELD_NUMBER: _ClassVar[int]
    OBSERVATIONS_FIELD_NUMBER: _ClassVar[int]
    RANGE_FIELD_NUMBER: _ClassVar[int]
    pair: SymbolPair
    timeframe: _common_pb2.Timeframe
    leader: str
    follower: str
    lag: int
    correlation: float
    lags: _containers.RepeatedScalarFieldContainer[int]
    cross_correlation: _containers.RepeatedScalarFieldContainer[float]
    noise_bound: float
    observations: int
    range: _common_pb2.TimeRange
    def __init__(self, pair: _Optional[_Union[SymbolPair, _Mapping]] = ..., timeframe: _Optional[_Union[_common_pb2.Timeframe, str]] = ..., leader: _Optional[str] = ..., follower: _Optional[str] = ..., lag: _Optional[int] = ..., correlation: _Optional[float] = ..., lags: _Optional[_Iterable[int]] = ..., cross_correlation: _Optional[_Iterable[float]] = ..., noise_bound: _Optional[float] = ..., observations: _Optional[int] = ..., range: _Optional[_Union[_common_pb2.TimeRange, _Mapping]] = ...) -> None: ...
