"""Every row of the error table, raised in a real handler on both transports: the gRPC status code and its
google.rpc details, the HTTP status and its problem+json body, and the exception the client raises, which must equal
the one the handler raised. An unexpected exception becomes INTERNAL / 500 carrying a request id, never a trace."""
from __future__ import annotations

import grpc
import pytest
from fastapi import APIRouter
from google.protobuf import wrappers_pb2
from google.rpc import error_details_pb2
from grpc_status import rpc_status

from services.common import errors as E
from transport import errors, grpc_client, rest_client
from transport.client_factory import ClientFactory
from transport.grpc_server import GrpcMethod, service_handler
from transport.rest_app import create_app
from transport.server import ServiceHost

SERVICE = "forex.errortest.v1.ErrorTestService"  # served by a generic handler: no .proto needed for a test service


def raised(code: str) -> E.DomainError:
    """The error a handler raises for `code`: a field violation, a reason and metadata, all of which must travel."""
    if code == "BUG":
        raise ZeroDivisionError("a bug the caller must not see")
    return errors.TABLE[code].error(f"{code.lower()} for a test", field="thing.items[2]", reason=f"TEST_{code}",
                                    metadata={"hint": code.lower()})


@pytest.fixture(scope="module")
async def host():
    async def grpc_raise(req: wrappers_pb2.StringValue):
        raise raised(req.value)

    api = APIRouter()

    @api.get("/v1/raise/{code}", name="Raise")
    async def rest_raise(code: str):
        raise raised(code)

    app = create_app("errortest", "error table test", "raises what it is asked to")
    app.include_router(api)
    svc = ServiceHost("errortest", "127.0.0.1", app,
                      service_handler(SERVICE, [GrpcMethod("Raise", wrappers_pb2.StringValue, grpc_raise)]), SERVICE)
    await svc.start()
    yield svc
    await svc.stop(grace=0)


@pytest.fixture(scope="module")
async def call_grpc(host, tokens):
    # A channel of this module's own: the session's factory may hold one to this port from an earlier test's server,
    # still in reconnect backoff, which fails calls fast (UNAVAILABLE) instead of reaching the new server.
    async with ClientFactory(token_source=tokens) as own:
        yield own.channel(host.grpc_target).unary_unary(
            f"/{SERVICE}/Raise", request_serializer=wrappers_pb2.StringValue.SerializeToString,
            response_deserializer=wrappers_pb2.StringValue.FromString)


@pytest.mark.parametrize("code", list(errors.TABLE))
async def test_every_domain_error_on_both_transports(host, factory, call_grpc, code):
    expected = raised(code)
    mapping = errors.TABLE[code]

    # gRPC, raw: status code, message and the google.rpc details.
    with pytest.raises(grpc.aio.AioRpcError) as wire:
        await call_grpc(wrappers_pb2.StringValue(value=code), timeout=5)
    assert wire.value.code() == mapping.grpc_code and wire.value.details() == expected.message
    status = rpc_status.from_call(wire.value)
    details = {d.type_url.rsplit(".", 1)[-1]: d for d in status.details}
    bad, info = error_details_pb2.BadRequest(), error_details_pb2.ErrorInfo()
    details["BadRequest"].Unpack(bad)
    details["ErrorInfo"].Unpack(info)
    assert [(v.field, v.description) for v in bad.field_violations] == [("thing.items[2]", expected.message)]
    assert (info.reason, info.domain, dict(info.metadata)) == (f"TEST_{code}", "fxplat", {"hint": code.lower()})

    # REST, raw: HTTP status and problem+json with the same code name, message, violations, reason and metadata.
    resp = await factory.http(host.rest_url).get(f"/v1/raise/{code}")
    assert resp.status_code == mapping.http_status
    assert resp.headers["content-type"] == errors.PROBLEM_CONTENT_TYPE
    body = resp.json()
    assert (body["code"], body["status"], body["detail"], body["reason"]) == (
        code, mapping.http_status, expected.message, f"TEST_{code}")
    assert body["field_violations"] == [{"field": "thing.items[2]", "description": expected.message}]
    assert body["metadata"] == {"hint": code.lower()}

    # Through the clients: the very exception the handler raised, whichever transport carried it.
    for call in (lambda: grpc_client.unary(call_grpc, wrappers_pb2.StringValue(value=code)),
                 lambda: rest_client.call(factory.http(host.rest_url), "GET", f"/v1/raise/{code}")):
        with pytest.raises(mapping.error) as got:
            await call()
        assert got.value == expected and got.value.metadata == expected.metadata


async def test_an_unexpected_exception_is_internal_with_a_request_id(host, factory, call_grpc):
    with pytest.raises(E.Internal) as over_grpc:
        await grpc_client.unary(call_grpc, wrappers_pb2.StringValue(value="BUG"))
    with pytest.raises(E.Internal) as over_rest:
        await rest_client.call(factory.http(host.rest_url), "GET", "/v1/raise/BUG")
    for err in (over_grpc.value, over_rest.value):
        rid = err.metadata["request_id"]
        assert err.message == f"internal error; quote request id {rid}" and len(rid) == 32
        assert "ZeroDivisionError" not in err.message and "Traceback" not in err.message
    resp = await factory.http(host.rest_url).get("/v1/raise/BUG")
    assert resp.status_code == 500 and "a bug" not in resp.text
