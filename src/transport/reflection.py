"""gRPC server reflection, v1 and v1alpha, whose answers let a generic client decode the platform's errors.

grpcio-reflection serves only `grpc.reflection.v1alpha`; current clients (buf curl, grpcurl, Postman) ask for
`grpc.reflection.v1` first. The two protocols are the same messages under another package name (identical wire
format), so one servicer written here answers both, with the v1alpha message classes. A v1 descriptor (the v1alpha
file renamed) is added to the pool so that clients can reflect on v1 itself.

Errors carry google.rpc.BadRequest and ErrorInfo packed in `google.protobuf.Any`; a client decodes an Any only with
descriptors it has, and no service's .proto imports google/rpc (the details travel in the `grpc-status-details-bin`
trailer, not in a message). So the answer describing one of the platform's services also carries
google/rpc/error_details.proto and status.proto, and the detail types are found by symbol too. (buf curl fetches
them but prints details as base64 all the same: it renders an error with connect-go's error JSON, which decodes a
detail only with the types compiled into buf; grpcurl and reflection-driven clients decode them. docs/api/README.md
shows `buf convert` decoding buf curl's bytes; tests/test_reflection.py runs both.)
"""
from __future__ import annotations

from collections.abc import AsyncIterator

import grpc
from google.protobuf import descriptor_pb2, descriptor_pool
from google.protobuf.descriptor import FileDescriptor
from google.rpc import error_details_pb2, status_pb2
from grpc_reflection.v1alpha import reflection_pb2 as pb

V1ALPHA = "grpc.reflection.v1alpha.ServerReflection"
V1 = "grpc.reflection.v1.ServerReflection"
_V1_FILE = "grpc/reflection/v1/reflection.proto"
ERROR_FILES = (status_pb2.DESCRIPTOR, error_details_pb2.DESCRIPTOR)  # what decoding an error needs


def _register_v1_descriptor(pool: descriptor_pool.DescriptorPool) -> None:
    try:
        pool.FindFileByName(_V1_FILE)
        return
    except KeyError:
        pass
    proto = descriptor_pb2.FileDescriptorProto()
    pb.DESCRIPTOR.CopyToProto(proto)
    old, new = f".{proto.package}.", ".grpc.reflection.v1."
    proto.name, proto.package = _V1_FILE, "grpc.reflection.v1"
    proto.options.Clear()  # v1alpha's options (deprecated, java package) are not v1's
    for message in proto.message_type:
        for field in message.field:
            if field.type_name:  # proto2 presence: assigning "" would give a scalar a type name
                field.type_name = field.type_name.replace(old, new)
    for method in proto.service[0].method:
        method.input_type = method.input_type.replace(old, new)
        method.output_type = method.output_type.replace(old, new)
    pool.Add(proto)


class Reflection:
    """The ServerReflectionInfo stream over a descriptor pool, for a fixed list of services."""

    def __init__(self, service_names: list[str], pool: descriptor_pool.DescriptorPool,
                 failing: set[str] = frozenset()) -> None:
        self._services = sorted(service_names)
        self._failing = failing  # services whose errors carry google.rpc details: their files come with ERROR_FILES
        self._pool = pool

    async def info(self, requests: AsyncIterator[pb.ServerReflectionRequest], _context) -> AsyncIterator:
        async for request in requests:
            yield self._answer(request)

    def _answer(self, request: pb.ServerReflectionRequest) -> pb.ServerReflectionResponse:
        kind = request.WhichOneof("message_request")
        try:
            if kind == "list_services":
                return pb.ServerReflectionResponse(original_request=request, list_services_response=pb.ListServiceResponse(
                    service=[pb.ServiceResponse(name=name) for name in self._services]))
            if kind == "file_by_filename":
                return self._files(request, self._pool.FindFileByName(request.file_by_filename))
            if kind == "file_containing_symbol":
                symbol = request.file_containing_symbol
                extra = ERROR_FILES if symbol in self._failing else ()
                return self._files(request, self._pool.FindFileContainingSymbol(symbol), extra)
            if kind == "file_containing_extension":
                ask = request.file_containing_extension
                extension = self._pool.FindExtensionByNumber(self._pool.FindMessageTypeByName(ask.containing_type),
                                                             ask.extension_number)
                return self._files(request, extension.file)
            if kind == "all_extension_numbers_of_type":
                message = self._pool.FindMessageTypeByName(request.all_extension_numbers_of_type)
                numbers = sorted(e.number for e in self._pool.FindAllExtensions(message))
                return pb.ServerReflectionResponse(original_request=request, all_extension_numbers_response=(
                    pb.ExtensionNumberResponse(base_type_name=message.full_name, extension_number=numbers)))
        except KeyError:
            return self._error(request, grpc.StatusCode.NOT_FOUND, "not found")
        return self._error(request, grpc.StatusCode.INVALID_ARGUMENT, "unknown reflection request")

    @staticmethod
    def _files(request, file: FileDescriptor, extra: tuple[FileDescriptor, ...] = ()) -> pb.ServerReflectionResponse:
        """`file`, then every file it depends on (and `extra` with theirs), each once."""
        seen: dict[str, FileDescriptor] = {}
        stack = [*reversed(extra), file]
        while stack:
            f = stack.pop()
            if f.name not in seen:
                seen[f.name] = f
                stack.extend(f.dependencies)
        out = []
        for f in seen.values():
            proto = descriptor_pb2.FileDescriptorProto()
            f.CopyToProto(proto)
            out.append(proto.SerializeToString())
        return pb.ServerReflectionResponse(original_request=request, file_descriptor_response=pb.FileDescriptorResponse(
            file_descriptor_proto=out))

    @staticmethod
    def _error(request, code: grpc.StatusCode, message: str) -> pb.ServerReflectionResponse:
        return pb.ServerReflectionResponse(original_request=request, error_response=pb.ErrorResponse(
            error_code=code.value[0], error_message=message))


def enable(server: grpc.aio.Server, services: list[str], others: list[str] = ()) -> None:
    """Serve reflection v1 and v1alpha on `server` for the platform's `services` (whose errors carry google.rpc
    details), `others` (e.g. health) and the two reflection services."""
    pool = descriptor_pool.Default()
    _register_v1_descriptor(pool)
    servicer = Reflection([*services, *others, V1, V1ALPHA], pool, failing=set(services))
    handler = grpc.stream_stream_rpc_method_handler(
        servicer.info, request_deserializer=pb.ServerReflectionRequest.FromString,
        response_serializer=pb.ServerReflectionResponse.SerializeToString)
    server.add_generic_rpc_handlers([grpc.method_handlers_generic_handler(name, {"ServerReflectionInfo": handler})
                                     for name in (V1, V1ALPHA)])
