"""Server reflection v1 and v1alpha, and error details a generic client can decode from what reflection gives it."""
from __future__ import annotations

import asyncio
import base64
import json
import shutil
from pathlib import Path

import grpc
import pytest
from google.protobuf import descriptor_pb2, descriptor_pool, json_format, message_factory
from google.rpc import status_pb2
from grpc_reflection.v1alpha import reflection_pb2 as rpb

ROOT = Path(__file__).resolve().parent.parent
BUF = ROOT / "node_modules" / ".bin" / "buf"
SERVICE = "forex.market_analysis.v1.MarketAnalysisService"


@pytest.fixture(scope="module")
def buf() -> str:
    path = BUF if BUF.exists() else shutil.which("buf")
    if path is None:
        pytest.skip("buf is not installed: run scripts/install.sh (npm install of @bufbuild/buf) to run this test")
    return str(path)


async def _buf_curl(buf, *args) -> tuple[int, str, str]:
    proc = await asyncio.create_subprocess_exec(buf, "curl", "--protocol", "grpc", "--http2-prior-knowledge", *args,
                                                stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE)
    out, err = await asyncio.wait_for(proc.communicate(), 60)
    return proc.returncode, out.decode(), err.decode()


@pytest.mark.parametrize("protocol", ["grpc-v1", "grpc-v1alpha"])
async def test_buf_curl_lists_and_calls_through_either_reflection_protocol(buf, market_host, tokens, protocol):
    target = f"http://{market_host.grpc_target}"
    code, out, err = await _buf_curl(buf, "--reflect-protocol", protocol, "--list-services", target)
    assert code == 0, err
    assert {SERVICE, "grpc.reflection.v1.ServerReflection", "grpc.reflection.v1alpha.ServerReflection"} <= set(out.split())
    code, out, err = await _buf_curl(buf, "--reflect-protocol", protocol, "--header", f"authorization: Bearer {tokens()}",
                                     f"{target}/{SERVICE}/ListSymbols")
    assert code == 0, err
    assert "EURUSD" in [s["symbol"] for s in json.loads(out)["symbols"]]


async def test_buf_curl_prints_the_bad_request_that_buf_convert_decodes(buf, market_host, tokens):
    """buf curl prints each detail as its type and base64 bytes (it decodes details only with the types compiled into
    buf, whatever reflection serves: docs/api/README.md says why); `buf convert` with the descriptor set committed in
    docs/api turns the BadRequest into JSON naming the field, as the reference shows."""
    code, out, err = await _buf_curl(
        buf, "--reflect-protocol", "grpc-v1", "--header", f"authorization: Bearer {tokens()}",
        "--data", '{"symbol": "NOPE", "timeframe": "TIMEFRAME_H1"}',
        f"http://{market_host.grpc_target}/{SERVICE}/GetCandles")
    assert code != 0 and out == ""
    body = json.loads(err)
    assert body["code"] == "not_found" and "NOPE" in body["message"]
    assert [d["type"] for d in body["details"]] == ["google.rpc.BadRequest", "google.rpc.ErrorInfo"]
    assert not any("debug" in d for d in body["details"]), "buf decodes details now: update gen_api_docs.py's prose"
    raw = body["details"][0]["value"]
    proc = await asyncio.create_subprocess_exec(
        buf, "convert", str(ROOT / "docs" / "api" / "google-rpc-errors.json"), "--type", "google.rpc.BadRequest",
        "--from", "-#format=binpb", "--to", "-#format=json",
        stdin=asyncio.subprocess.PIPE, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE)
    out, err = await asyncio.wait_for(proc.communicate(base64.b64decode(raw + "=" * (-len(raw) % 4))), 60)
    assert proc.returncode == 0, err.decode()
    [violation] = json.loads(out)["fieldViolations"]
    assert violation["field"] == "symbol" and "NOPE" in violation["description"]


def _reflect(channel: grpc.Channel, path: str, request: rpb.ServerReflectionRequest) -> rpb.ServerReflectionResponse:
    call = channel.stream_stream(path, request_serializer=rpb.ServerReflectionRequest.SerializeToString,
                                 response_deserializer=rpb.ServerReflectionResponse.FromString)
    return next(iter(call(iter([request]), timeout=10)))


@pytest.mark.parametrize("version", ["v1", "v1alpha"])
async def test_a_client_knowing_only_reflection_decodes_the_error_details(market_host, tokens, version):
    """What buf curl or grpcurl do: fetch the service's file by symbol over reflection, build a fresh descriptor pool
    from the answer alone, and decode the call's google.rpc.Status details to JSON with it."""
    def run() -> tuple[dict, list[str]]:
        with grpc.insecure_channel(market_host.grpc_target) as channel:
            answer = _reflect(channel, f"/grpc.reflection.{version}.ServerReflection/ServerReflectionInfo",
                              rpb.ServerReflectionRequest(file_containing_symbol=SERVICE))
            files = [descriptor_pb2.FileDescriptorProto.FromString(b)
                     for b in answer.file_descriptor_response.file_descriptor_proto]
            pool = descriptor_pool.DescriptorPool()
            pending = {f.name: f for f in files}
            while pending:  # add each file after its dependencies
                for name, f in list(pending.items()):
                    if all(d not in pending for d in f.dependency):
                        pool.Add(f)
                        del pending[name]
            request_cls = message_factory.GetMessageClass(pool.FindMessageTypeByName(
                "forex.market_analysis.v1.GetCandlesRequest"))
            with pytest.raises(grpc.RpcError) as failed:
                channel.unary_unary(f"/{SERVICE}/GetCandles", request_serializer=request_cls.SerializeToString)(
                    request_cls(symbol="NOPE", timeframe=5), metadata=[("authorization", f"Bearer {tokens()}")],
                    timeout=10)
            trailer = dict(failed.value.trailing_metadata())["grpc-status-details-bin"]
            status = status_pb2.Status.FromString(trailer)
            decoded = []
            for detail in status.details:
                cls = message_factory.GetMessageClass(pool.FindMessageTypeByName(detail.type_url.split("/")[-1]))
                decoded.append(json_format.MessageToDict(cls.FromString(detail.value)))
            return decoded, sorted(f.name for f in files)

    decoded, names = await asyncio.to_thread(run)
    assert {"google/rpc/error_details.proto", "google/rpc/status.proto"} <= set(names)
    bad_request, info = decoded
    assert bad_request["fieldViolations"][0]["field"] == "symbol"
    assert info == {"reason": "NOT_FOUND", "domain": "fxplat"}


async def test_reflection_describes_v1_itself(market_host):
    def run():
        with grpc.insecure_channel(market_host.grpc_target) as channel:
            return _reflect(channel, "/grpc.reflection.v1.ServerReflection/ServerReflectionInfo",
                            rpb.ServerReflectionRequest(file_containing_symbol="grpc.reflection.v1.ServerReflection"))

    answer = await asyncio.to_thread(run)
    files = [descriptor_pb2.FileDescriptorProto.FromString(b) for b in answer.file_descriptor_response.file_descriptor_proto]
    assert [f.package for f in files] == ["grpc.reflection.v1"]
    method = files[0].service[0].method[0]
    assert (method.input_type, method.output_type) == (".grpc.reflection.v1.ServerReflectionRequest",
                                                       ".grpc.reflection.v1.ServerReflectionResponse")


@pytest.mark.parametrize("version", ["v1", "v1alpha"])
async def test_reflection_finds_the_error_types_by_symbol_and_by_file(market_host, version):
    """What a client asks for to decode a detail by its type URL (type.googleapis.com/google.rpc.BadRequest): the
    file containing the symbol, or the file by name, each with the file it imports."""
    asks = [rpb.ServerReflectionRequest(file_containing_symbol="google.rpc.BadRequest"),
            rpb.ServerReflectionRequest(file_containing_symbol="google.rpc.BadRequest.FieldViolation"),
            rpb.ServerReflectionRequest(file_by_filename="google/rpc/error_details.proto"),
            rpb.ServerReflectionRequest(file_containing_symbol="google.rpc.Status"),
            rpb.ServerReflectionRequest(file_containing_symbol="google.rpc.NoSuchDetail")]

    def run():
        with grpc.insecure_channel(market_host.grpc_target) as channel:
            return [_reflect(channel, f"/grpc.reflection.{version}.ServerReflection/ServerReflectionInfo", ask)
                    for ask in asks]

    answers = await asyncio.to_thread(run)
    names = [[descriptor_pb2.FileDescriptorProto.FromString(b).name
              for b in a.file_descriptor_response.file_descriptor_proto] for a in answers[:4]]
    details = ["google/rpc/error_details.proto", "google/protobuf/duration.proto"]
    assert names == [details, details, details, ["google/rpc/status.proto", "google/protobuf/any.proto"]]
    assert answers[4].error_response.error_code == grpc.StatusCode.NOT_FOUND.value[0]
