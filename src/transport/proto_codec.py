"""Conversions between the shared domain types and their protobuf messages (forex.common.v1)."""
from __future__ import annotations

from datetime import datetime, timedelta, timezone

import numpy as np
from google.protobuf import timestamp_pb2

from forex.common.v1 import common_pb2
from services.common.errors import InvalidArgument
from services.common.market_types import CandleSeries, TimeRange, Timeframe
from transport import limits, wire

_TF_TO_PB = {tf: common_pb2.Timeframe.Value(f"TIMEFRAME_{tf.value}") for tf in Timeframe}
_PB_TO_TF = {v: k for k, v in _TF_TO_PB.items()}


def timeframe_to_pb(tf: Timeframe) -> int:
    return _TF_TO_PB[tf]


def timeframe_from_pb(value: int, field: str = "timeframe", default: Timeframe | None = Timeframe.H1) -> Timeframe:
    if value == common_pb2.TIMEFRAME_UNSPECIFIED and default is not None:
        return default
    try:
        return _PB_TO_TF[value]
    except KeyError:
        raise InvalidArgument(f"unknown timeframe {value}", field=field) from None


_EPOCH = datetime(1970, 1, 1, tzinfo=timezone.utc)
_fromtimestamp = datetime.fromtimestamp


def timestamp_fields(dt: datetime) -> dict[str, int]:
    """A Timestamp's fields for `dt` (naive: taken as UTC), for a message constructor (`entry_time={...}`): built in
    place, cheaper than a Timestamp the constructor would copy. Microseconds kept: a request must reach the domain
    alike over both transports (its idempotency fingerprint covers its range), and stored records carry sub-second
    creation times. Arithmetic, not protobuf's FromDatetime (a time tuple and calendar.timegm): a backtest's trades
    make hundreds of these per answer."""
    d = (dt if dt.tzinfo is not None else dt.replace(tzinfo=timezone.utc)) - _EPOCH
    return {"seconds": d.days * 86_400 + d.seconds, "nanos": d.microseconds * 1_000}


def timestamp_to_pb(dt: datetime) -> timestamp_pb2.Timestamp:
    return timestamp_pb2.Timestamp(**timestamp_fields(dt))


def timestamp_from_pb(ts: timestamp_pb2.Timestamp, field: str = "time") -> datetime:
    """An aware UTC datetime (nanoseconds truncated to microseconds, as protobuf's ToDatetime does); INVALID_ARGUMENT
    naming `field` for a Timestamp outside years 1..9999 or with bad nanos."""
    seconds, nanos = ts.seconds, ts.nanos
    if not (limits.MIN_SECONDS <= seconds <= limits.MAX_SECONDS and 0 <= nanos <= 999_999_999):
        limits.check_timestamp(seconds, nanos, field)  # raises, naming the field and the bound
    if nanos < 1_000:  # whole seconds (bar times, trade fills): fromtimestamp is one C call, the sum two objects
        return _fromtimestamp(seconds, timezone.utc)
    return _EPOCH + timedelta(seconds=seconds, microseconds=nanos // 1_000)


def range_to_pb(r: TimeRange) -> common_pb2.TimeRange | None:
    """None for an open range (no start, no end): the field is left unset, which proto3 reads as the same empty range,
    and a message is neither built nor copied into its parent (~2 µs of every small request)."""
    if r.start is None and r.end is None:
        return None
    msg = common_pb2.TimeRange()
    if r.start is not None:
        msg.start.CopyFrom(timestamp_to_pb(r.start))
    if r.end is not None:
        msg.end.CopyFrom(timestamp_to_pb(r.end))
    return msg


_OPEN_RANGE = TimeRange()  # frozen: one instance serves every request without a range


def range_from_pb(msg: common_pb2.TimeRange, field: str = "range") -> TimeRange:
    if not msg.ListFields():
        return _OPEN_RANGE
    return TimeRange(
        start=timestamp_from_pb(msg.start, f"{field}.start") if msg.HasField("start") else None,
        end=timestamp_from_pb(msg.end, f"{field}.end") if msg.HasField("end") else None,
    )


_PRICE_FIELDS = tuple((c, common_pb2.CandleSeries.DESCRIPTOR.fields_by_name[c].number)
                      for c in ("open", "high", "low", "close", "volume"))


def with_int64s(message_type, column: str, values: np.ndarray, **fields) -> bytes:
    """`message_type(**fields, column=values)` serialised, a long int64 column written by numpy (transport.wire).
    `column` must be the highest-numbered field set, so the bytes stay in field order, as protobuf writes them."""
    if len(values) < wire.INT64S_FROM:
        return message_type(**fields, **{column: values.tolist()}).SerializeToString()
    return message_type(**fields).SerializeToString() + \
        wire.packed_int64s(message_type.DESCRIPTOR.fields_by_name[column].number, values)


def series_bytes(series: CandleSeries) -> bytes:
    """A serialised CandleSeries, its columns written straight from numpy (see transport.wire)."""
    head = with_int64s(common_pb2.CandleSeries, "time", series.time, symbol=series.symbol,
                       timeframe=timeframe_to_pb(series.timeframe))
    return head + b"".join([wire.packed_doubles(number, getattr(series, column)) for column, number in _PRICE_FIELDS])


def series_from_pb(msg: common_pb2.CandleSeries) -> CandleSeries:
    return CandleSeries(
        symbol=msg.symbol,
        timeframe=timeframe_from_pb(msg.timeframe),
        time=wire.int64s(msg.time),
        open=wire.doubles(msg.open),
        high=wire.doubles(msg.high),
        low=wire.doubles(msg.low),
        close=wire.doubles(msg.close),
        volume=wire.doubles(msg.volume),
    )


def column_bytes(name: str, values: np.ndarray) -> bytes:
    """A serialised DoubleColumn."""
    f = common_pb2.DoubleColumn.DESCRIPTOR.fields_by_name
    return common_pb2.DoubleColumn(name=name).SerializeToString() + wire.packed_doubles(f["values"].number, values)
