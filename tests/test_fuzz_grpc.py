"""A property-based fuzzer over every RPC of every service: random bytes, and well-formed messages full of hostile
values (timestamps outside years 1..9999, NaN and infinities, int64 extremes, unknown enum numbers, 10 MB strings,
10,000-item lists), sent with ordinary and 1 ms deadlines. Every answer must be a typed status other than UNKNOWN or
INTERNAL, and the server must keep answering health checks. FXPLAT_FUZZ_EXAMPLES examples per RPC (a quick pass by
default; scripts/fuzz_tier.sh runs 50)."""
from __future__ import annotations

import math

import grpc
import pytest
from google.protobuf.descriptor import FieldDescriptor as F
from grpc_health.v1 import health_pb2, health_pb2_grpc
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from fuzz_platform import EXAMPLES, threaded_platform  # noqa: F401  (the fixture)
from fxplat.catalog import CATALOG

BROKEN = {grpc.StatusCode.UNKNOWN, grpc.StatusCode.INTERNAL}
HUGE_TEXT = "x" * 10_000_000
HUGE_LIST = 10_000

_TEXT = st.one_of(st.text(st.characters(exclude_categories=("Cs",)), max_size=20),
                  st.sampled_from(["EURUSD", "GBPUSD", "H1", "sma_cross", "rsi", "", " ", "%_\\", HUGE_TEXT]))
_INT64 = st.one_of(st.integers(-10, 1000), st.sampled_from([-(2**63), 2**63 - 1, -1, 0, 2**31]))
_INT32 = st.one_of(st.integers(-10, 1000), st.sampled_from([-(2**31), 2**31 - 1]))
_DOUBLE = st.one_of(st.floats(allow_nan=True, allow_infinity=True),
                    st.sampled_from([math.nan, math.inf, -math.inf, 1e308, -1e308, 5e-324, 0.0, 0.5]))
_SCALARS = {
    F.TYPE_DOUBLE: _DOUBLE,
    F.TYPE_FLOAT: _DOUBLE.map(lambda v: v if not math.isfinite(v) or abs(v) < 3e38 else math.inf),
    F.TYPE_INT64: _INT64, F.TYPE_SINT64: _INT64, F.TYPE_SFIXED64: _INT64,
    F.TYPE_UINT64: st.integers(0, 2**64 - 1), F.TYPE_FIXED64: st.integers(0, 2**64 - 1),
    F.TYPE_INT32: _INT32, F.TYPE_SINT32: _INT32, F.TYPE_SFIXED32: _INT32, F.TYPE_ENUM: _INT32,
    F.TYPE_UINT32: st.integers(0, 2**32 - 1), F.TYPE_FIXED32: st.integers(0, 2**32 - 1),
    F.TYPE_BOOL: st.booleans(), F.TYPE_STRING: _TEXT, F.TYPE_BYTES: st.binary(max_size=20),
}
# google.protobuf.Timestamp anywhere: mostly far outside its valid range, sometimes inside.
_TIMESTAMP = st.tuples(st.one_of(_INT64, st.integers(1_700_000_000, 1_800_000_000)), _INT32)


def _value(field, depth: int):
    """A strategy for one value of `field` (without repetition): a callable that sets it on a message."""
    if field.type != F.TYPE_MESSAGE:
        return _SCALARS[field.type]
    if field.message_type.full_name == "google.protobuf.Timestamp":
        return _TIMESTAMP.map(lambda sn: {"seconds": sn[0], "nanos": sn[1]})
    return _fields(field.message_type, depth + 1)


def _fields(descriptor, depth: int):
    """Strategy for a dict field name -> value(s) of a message of `descriptor` (depth-bounded)."""
    if depth > 3:
        return st.just({})
    parts = {}
    for field in descriptor.fields:
        if field.message_type is not None and field.message_type.GetOptions().map_entry:
            key, value = field.message_type.fields_by_name["key"], field.message_type.fields_by_name["value"]
            parts[field.name] = st.dictionaries(_value(key, depth), _value(value, depth), max_size=4)
        elif field.is_repeated:
            item = _value(field, depth)
            huge = item.filter(lambda v: len(repr(v)) < 2000).map(lambda v: [v] * HUGE_LIST)  # 10,000 small items
            parts[field.name] = st.one_of(st.lists(item, max_size=4), huge)
        else:
            parts[field.name] = _value(field, depth)
    return st.fixed_dictionaries({}, optional=parts)


def _fill(message, values: dict) -> None:
    for name, value in values.items():
        field = message.DESCRIPTOR.fields_by_name[name]
        target = getattr(message, name)
        if field.message_type is not None and field.message_type.GetOptions().map_entry:
            for k, v in value.items():
                if isinstance(v, dict):
                    _fill(target[k], v)
                else:
                    target[k] = v
        elif field.is_repeated:
            for v in value:
                if isinstance(v, dict):
                    _fill(target.add(), v)
                else:
                    target.append(v)
        elif isinstance(value, dict):
            _fill(target, value)
            target.SetInParent()  # an empty sub-message is still "set" (HasField)
        else:
            setattr(message, name, value)


def _request(request_type):
    structured = _fields(request_type.DESCRIPTOR, 0).map(lambda v: _serialized(request_type, v))
    return st.one_of(st.binary(max_size=512), structured)


def _serialized(request_type, values: dict) -> bytes:
    message = request_type()
    _fill(message, values)
    return message.SerializeToString()


RPCS = [(name, entry.grpc_service, method.name, method.request_type)
        for name, entry in CATALOG.items() for method in entry.grpc_methods(None)]


@pytest.mark.parametrize("service, full_name, rpc, request_type", RPCS, ids=[f"{r[0]}.{r[2]}" for r in RPCS])
def test_every_answer_is_typed_and_the_server_stays_up(threaded_platform, service, full_name, rpc,  # noqa: F811
                                                       request_type):
    host = threaded_platform.hosts[service]
    seen: dict[str, int] = {}
    with grpc.insecure_channel(host.grpc_target) as channel:
        call = channel.unary_unary(f"/{full_name}/{rpc}")
        health = health_pb2_grpc.HealthStub(channel)

        @settings(max_examples=EXAMPLES, deadline=None, derandomize=True, database=None,
                  suppress_health_check=list(HealthCheck))
        @given(data=_request(request_type), timeout=st.sampled_from([30.0, 30.0, 0.001]))
        def run(data: bytes, timeout: float):
            metadata = (("authorization", threaded_platform.bearer()),)
            try:
                call(data, metadata=metadata, timeout=timeout)
                code = grpc.StatusCode.OK
            except grpc.RpcError as err:
                code = err.code()
                assert code not in BROKEN, f"{rpc}: {code.name}: {err.details()[:300]} for {data[:120]!r}"
            seen[code.name] = seen.get(code.name, 0) + 1
            reply = health.Check(health_pb2.HealthCheckRequest(service=full_name), timeout=5)
            assert reply.status == health_pb2.HealthCheckResponse.SERVING

        run()
    print(f"{service}.{rpc}: {dict(sorted(seen.items()))}")
    assert sum(seen.values()) >= min(EXAMPLES, 1) and "UNAUTHENTICATED" not in seen, seen
