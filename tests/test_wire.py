"""transport.wire writes protobuf's own bytes: a column encoded from numpy equals the field protobuf serialises."""
from __future__ import annotations

import numpy as np
import pytest

from forex.common.v1 import common_pb2
from services.common.market_types import CandleSeries, Timeframe
from transport import proto_codec, wire

TIME = common_pb2.CandleSeries.DESCRIPTOR.fields_by_name["time"].number
rng = np.random.default_rng(7)
EDGES = [0, 1, 127, 128, 16_383, 16_384, 2**28 - 1, 2**28, 2**35, 2**63 - 1, -1, -2**63]


@pytest.mark.parametrize("values", [
    np.array(EDGES, dtype=np.int64),  # every width, negatives (ten bytes)
    np.arange(1_700_000_000, 1_700_000_000 + 60 * 5_000, 60, dtype=np.int64),  # bar times: one width throughout
    np.array([5], dtype=np.int64),
    np.array([-7] * 3, dtype=np.int64),  # one width: ten bytes
    rng.integers(-2**63, 2**63 - 1, 2_000, dtype=np.int64),
    rng.integers(0, 300, 2_000, dtype=np.int64),  # one and two bytes mixed
    np.array([], dtype=np.int64),
], ids=["edges", "bar-times", "one", "negatives", "random", "small-mixed", "empty"])
def test_packed_int64s_are_protobufs_bytes(values):
    assert wire.packed_int64s(TIME, values) == common_pb2.CandleSeries(time=values.tolist()).SerializeToString()


@pytest.mark.parametrize("bars", [0, 10, wire.INT64S_FROM - 1, wire.INT64S_FROM, 20_000])
def test_a_series_is_serialised_as_protobuf_serialises_it(bars):
    time = np.arange(1_600_000_000, 1_600_000_000 + 60 * bars, 60, dtype=np.int64)
    prices = [rng.random(bars) for _ in range(5)]
    series = CandleSeries("EURUSD", Timeframe.M1, time, *prices)
    message = common_pb2.CandleSeries(symbol="EURUSD", timeframe=proto_codec.timeframe_to_pb(Timeframe.M1),
                                      time=time.tolist(), open=prices[0], high=prices[1], low=prices[2],
                                      close=prices[3], volume=prices[4])
    assert proto_codec.series_bytes(series) == message.SerializeToString()
    assert proto_codec.series_from_pb(common_pb2.CandleSeries.FromString(proto_codec.series_bytes(series))) == series


@pytest.mark.parametrize("n", [3, 5_000])
def test_a_message_with_a_long_int64_column_is_protobufs_bytes(n):
    from forex.causal_analysis.v1 import causal_analysis_pb2 as cpb

    time = np.arange(1_600_000_000, 1_600_000_000 + 3_600 * n, 3_600, dtype=np.int64)
    fields = dict(pair=cpb.SymbolPair(first="EURUSD", second="GBPUSD"), timeframe=proto_codec.timeframe_to_pb(Timeframe.H1), window=50)
    expected = cpb.RollingCorrelationResponse(**fields, time=time.tolist()).SerializeToString()
    assert proto_codec.with_int64s(cpb.RollingCorrelationResponse, "time", time, **fields) == expected


@pytest.mark.parametrize("n", [0, 1, 10, 64, 65, 1000])
def test_decoded_columns_are_the_values_sent_at_every_length(n):
    """Short columns are read through a list, long ones directly: both give the same arrays, types and values."""
    rng = np.random.default_rng(n)
    time = np.cumsum(rng.integers(1, 10**6, n)).astype(np.int64) - 10**6  # the first one negative
    price = rng.normal(1.1, 0.01, n)
    price[::7] = np.nan
    message = common_pb2.CandleSeries.FromString(common_pb2.CandleSeries(time=time.tolist(), open=price.tolist())
                                                 .SerializeToString())
    got_time, got_price = wire.int64s(message.time), wire.doubles(message.open)
    assert got_time.dtype == np.int64 and got_price.dtype == np.float64
    np.testing.assert_array_equal(got_time, time)
    np.testing.assert_array_equal(got_price, price)  # NaN where NaN was sent
