"""Write (or --check) the API reference in docs/api/: one Markdown page per proto package, from the protos' descriptors
with source info (comments), and from the live code for what the protos do not say.

    python scripts/gen_api_docs.py          # regenerate docs/api/*.md and google-rpc-errors.json
    python scripts/gen_api_docs.py --check  # exit 1 if a committed page differs (CI)

Where each fact comes from:
  messages, fields, enums, RPCs, comments   the descriptor set protoc builds with --include_source_info
  errors an RPC returns                      the "Errors:" paragraph of the RPC's comment (codes checked against the
                                             error table, HTTP statuses taken from it: transport/errors.py)
  REST twin (verb and path), scope          the service's FastAPI routes (named after their RPC) and its gRPC method
                                             table (GrpcMethod.scope), as fxplat.catalog builds them
  examples                                   docs/api/examples.yaml (one protobuf-JSON request per RPC); the REST
                                             request is the one the service's own REST client sends for it
  google-rpc-errors.json                     the google.rpc error types the server's reflection serves
                                             (transport.reflection.ERROR_FILES), as a descriptor set `buf convert`
                                             reads to decode the error details `buf curl` prints in base64
Every example is run against a live platform by tests/test_api_docs.py.
"""
from __future__ import annotations

import argparse
import asyncio
import json
import re
import shlex
import sys
import tempfile
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path
from urllib.parse import unquote

import httpx
import yaml
from google.protobuf import descriptor_pb2, json_format, message_factory
from google.protobuf.descriptor_pool import Default as default_pool
from grpc_tools import protoc

ROOT = Path(__file__).resolve().parent.parent
PROTO = ROOT / "proto"
OUT = ROOT / "docs" / "api"
EXAMPLES = OUT / "examples.yaml"
sys.path.insert(0, str(ROOT / "src"))

from adapters.connect import KITS  # noqa: E402
from fxplat.catalog import CATALOG  # noqa: E402
from services.common.errors import DomainError  # noqa: E402
from transport import config  # noqa: E402
from transport import errors as error_table  # noqa: E402
from transport import reflection  # noqa: E402

TRANSPORTS = ("curl", "buf-curl", "fxplat")
ERROR_TYPES = "google-rpc-errors.json"  # generated next to the pages
# Headers the REST client adds for plumbing (deadline, request id, tracing): not part of an example.
PLUMBING_HEADERS = {"x-request-timeout-ms", "x-request-id", "traceparent", "tracestate", "host", "accept",
                    "accept-encoding", "connection", "user-agent", "content-length"}
SCALARS = {number: name[5:].lower() for name, number in descriptor_pb2.FieldDescriptorProto.Type.items()
           if name not in ("TYPE_MESSAGE", "TYPE_ENUM", "TYPE_GROUP")}
WELL_KNOWN_JSON = {".google.protobuf.Timestamp": "RFC 3339 string in JSON, e.g. \"2025-03-03T00:00:00Z\"",
                   ".google.protobuf.Duration": "string in JSON, e.g. \"1.5s\""}
# Errors any RPC can return, whatever it does (the platform's transport and auth layers).
PLATFORM_ERRORS = [
    ("UNAUTHENTICATED", "the bearer token is missing, malformed, expired or forged"),
    ("PERMISSION_DENIED", "the token lacks the RPC's scope (ErrorInfo metadata `scope`)"),
    ("RESOURCE_EXHAUSTED", "the request is larger than the server accepts"),
    ("DEADLINE_EXCEEDED", "the call's deadline (gRPC `grpc-timeout`, REST `x-request-timeout-ms`) passed"),
    ("UNAVAILABLE", "the service is stopping or a service it calls cannot be reached; safe to retry"),
    ("INTERNAL", "a bug; the message quotes a request id to report"),
]


# --- descriptors -----------------------------------------------------------------------------------------------------

def descriptor_set() -> descriptor_pb2.FileDescriptorSet:
    files = sorted(str(p.relative_to(PROTO)) for p in PROTO.rglob("*.proto"))
    well_known = str(resources.files("grpc_tools") / "_proto")
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp) / "set.binpb"
        if protoc.main(["protoc", f"-I{PROTO}", f"-I{well_known}", "--include_source_info", "--include_imports",
                        f"--descriptor_set_out={out}", *files]) != 0:
            sys.exit("protoc failed")
        return descriptor_pb2.FileDescriptorSet.FromString(out.read_bytes())


def _comment_index(file: descriptor_pb2.FileDescriptorProto) -> dict[tuple[int, ...], str]:
    return {tuple(loc.path): _clean(loc.leading_comments or loc.trailing_comments)
            for loc in file.source_code_info.location if loc.leading_comments or loc.trailing_comments}


def _clean(comment: str) -> str:
    """Comment text as Markdown: lines joined into paragraphs, blank lines kept as paragraph breaks."""
    paragraphs = [" ".join(line.strip() for line in block.splitlines()) for block in re.split(r"\n\s*\n", comment)]
    return "\n\n".join(p for p in paragraphs if p)


@dataclass
class Rpc:
    name: str
    full_service: str
    request: str  # fully qualified type name, leading dot
    response: str
    server_streaming: bool
    client_streaming: bool
    doc: str
    errors: list[tuple[str, str]]


@dataclass
class Page:
    package: str
    files: list[descriptor_pb2.FileDescriptorProto]
    service_name: str = ""  # catalog name, e.g. market_analysis ("" for a package without a service)
    rpcs: list[Rpc] = field(default_factory=list)
    service_docs: list[tuple[str, str]] = field(default_factory=list)  # (full service name, comment)

    @property
    def slug(self) -> str:
        return self.package.split(".")[1]


def _errors_of(doc: str, where: str) -> tuple[str, list[tuple[str, str]]]:
    """Split the 'Errors: CODE (when), ...' paragraph off an RPC comment."""
    match = re.search(r"(?:^|\s)Errors:\s*(.*)$", doc, flags=re.S)
    if not match:
        return doc, []
    found = re.findall(r"([A-Z_]+) \(([^)]*)\)", match[1])
    unknown = [code for code, _ in found if code not in error_table.TABLE]
    if unknown or not found:
        sys.exit(f"{where}: bad 'Errors:' paragraph (codes must be among {', '.join(error_table.TABLE)}): {match[1]!r}")
    return doc[: match.start()].strip(), found


def pages(fds: descriptor_pb2.FileDescriptorSet) -> dict[str, Page]:
    ours = [f for f in fds.file if f.package.startswith("forex.")]
    by_package: dict[str, Page] = {}
    for f in ours:
        by_package.setdefault(f.package, Page(f.package, [])).files.append(f)
    grpc_names = {entry.grpc_service: name for name, entry in CATALOG.items()}
    for page in by_package.values():
        for f in page.files:
            comments = _comment_index(f)
            for si, service in enumerate(f.service):
                full = f"{f.package}.{service.name}"
                page.service_name = grpc_names.get(full, page.service_name)
                page.service_docs.append((full, comments.get((6, si), "")))
                for mi, m in enumerate(service.method):
                    doc, errs = _errors_of(comments.get((6, si, 2, mi), ""), f"{f.name}: rpc {m.name}")
                    page.rpcs.append(Rpc(m.name, full, m.input_type, m.output_type, m.server_streaming,
                                         m.client_streaming, doc, errs))
    return dict(sorted(by_package.items(), key=lambda kv: (kv[1].service_name == "", kv[0])))


# --- live facts: REST twins and scopes -------------------------------------------------------------------------------

class _Unbuilt:
    """Routers and method tables only need an implementation when called."""


def rest_twins(service: str) -> dict[str, tuple[str, str]]:
    """RPC name -> (HTTP verb, path template) from the service's FastAPI routes, each named after its RPC."""
    router = CATALOG[service].rest_router(_Unbuilt())
    return {route.name: (",".join(sorted(route.methods)), route.path) for route in router.routes}


def scopes(service: str) -> dict[str, str]:
    return {m.name: m.scope for m in CATALOG[service].grpc_methods(None)}


async def captured_rest_request(service: str, rpc: str, request) -> httpx.Request:
    """The HTTP request the service's own REST client sends for `request` (a request message), captured unsent."""
    captured: list[httpx.Request] = []

    def capture(req: httpx.Request) -> httpx.Response:
        captured.append(req)
        raise httpx.ConnectError("captured, not sent")

    async with httpx.AsyncClient(transport=httpx.MockTransport(capture), base_url="http://rest") as http:
        method = {m.name: m for m in CATALOG[service].grpc_methods(KITS[service].rest_client(http))}[rpc]
        try:
            await method.call(request)
        except DomainError:
            pass
    if not captured:
        sys.exit(f"{service}.{rpc}: the REST client sent nothing for the example; is the example valid?")
    return captured[0]


# --- examples --------------------------------------------------------------------------------------------------------

def _quote(text: str) -> str:
    """Shell quoting that keeps `$NAME` variables live: double quotes when the text holds one."""
    if re.search(r"\$[A-Z_]+", text):
        return '"' + re.sub(r'(["\\`])', r"\\\1", text) + '"'
    return shlex.quote(text)


def _request_message(service: str, rpc: str, data: dict):
    desc = default_pool().FindServiceByName(CATALOG[service].grpc_service).methods_by_name[rpc].input_type
    message = message_factory.GetMessageClass(desc)()
    json_format.ParseDict(data, message)
    return message


def _compact(data: dict) -> str:
    return json.dumps(data, separators=(", ", ": "))


def _sorted_below_top(value, depth: int = 0):
    """Nested objects with sorted keys: maps (e.g. params) come out of protobuf in no stable order."""
    if isinstance(value, dict):
        items = value.items() if depth == 0 else sorted(value.items())
        return {k: _sorted_below_top(v, depth + 1) for k, v in items}
    if isinstance(value, list):
        return [_sorted_below_top(v, depth + 1) for v in value]
    return value


def examples(service: str, rpc: str, data: dict) -> dict[str, str]:
    rest_port, grpc_port = config.DEFAULT_PORTS[service]
    host = config.DEFAULT_HOST
    loop = asyncio.new_event_loop()  # not asyncio.run: that would unset the caller's event loop (tests import this)
    try:
        req = loop.run_until_complete(captured_rest_request(service, rpc, _request_message(service, rpc, data)))
    finally:
        loop.close()
    query = unquote(req.url.query.decode()) if req.url.query else ""
    url = f"http://{host}:{rest_port}{unquote(req.url.path)}" + (f"?{query}" if query else "")
    curl = ["curl -sS --fail-with-body" + ("" if req.method == "GET" else f" -X {req.method}"),
            '-H "authorization: Bearer $TOKEN"']
    curl += [f"-H {_quote(f'{k}: {v}')}" for k, v in req.headers.items() if k.lower() not in PLUMBING_HEADERS]
    if req.content:
        curl.append(f"-d {_quote(_compact(_sorted_below_top(json.loads(req.content))))}")
    curl.append(_quote(url))
    full = CATALOG[service].grpc_service
    buf = ["npx buf curl --protocol grpc --http2-prior-knowledge", '--header "authorization: Bearer $TOKEN"']
    if data:
        buf.append(f"--data {_quote(_compact(data))}")
    buf.append(f"http://{host}:{grpc_port}/{full}/{rpc}")
    fx = f"fxplat call {service} {rpc}" + (f" --data {_quote(_compact(data))}" if data else "")
    return {"curl": " \\\n    ".join(curl), "buf-curl": " \\\n    ".join(buf), "fxplat": fx}


def example_block(service: str, rpc: str, transport: str, command: str, expect: str = "ok") -> str:
    return f"<!-- example: {service} {rpc} {transport} {expect} -->\n```sh\n{command}\n```\n"


# --- rendering -------------------------------------------------------------------------------------------------------

class Types:
    """Where each message and enum is documented, to link field types."""

    def __init__(self, all_pages: dict[str, Page]) -> None:
        self.home: dict[str, str] = {}
        for page in all_pages.values():
            for f in page.files:
                for name in _type_names(f):
                    self.home[f".{name}"] = f"{page.slug}.md"

    def link(self, type_name: str, here: str) -> str:
        short = type_name.lstrip(".")
        if type_name in WELL_KNOWN_JSON:
            return f"`{short}`"
        if type_name not in self.home:
            return f"`{short}`"
        page = self.home[type_name]
        target = f"#{short}" if page == here else f"{page}#{short}"
        return f"[`{short.rsplit('.', 1)[-1]}`]({target})"


def _type_names(f: descriptor_pb2.FileDescriptorProto) -> list[str]:
    out = []

    def walk(prefix: str, messages, enums):
        out.extend(f"{prefix}.{e.name}" for e in enums)
        for m in messages:
            if m.options.map_entry:
                continue
            out.append(f"{prefix}.{m.name}")
            walk(f"{prefix}.{m.name}", m.nested_type, m.enum_type)

    walk(f.package, f.message_type, f.enum_type)
    return out


def _cell(text: str) -> str:
    return text.replace("|", "\\|").replace("\n\n", "<br>").replace("\n", " ")


def _field_type(fld: descriptor_pb2.FieldDescriptorProto, msg: descriptor_pb2.DescriptorProto, types: Types,
                here: str) -> str:
    if fld.type == fld.TYPE_MESSAGE:
        entry = next((n for n in msg.nested_type if n.options.map_entry and f".{n.name}" == fld.type_name[
            fld.type_name.rfind("."):]), None)
        if entry is not None and fld.label == fld.LABEL_REPEATED:
            key, value = entry.field
            v = types.link(value.type_name, here) if value.type_name else f"`{SCALARS[value.type]}`"
            return f"map<`{SCALARS[key.type]}`, {v}>"
        base = types.link(fld.type_name, here)
    elif fld.type == fld.TYPE_ENUM:
        base = types.link(fld.type_name, here)
    else:
        base = f"`{SCALARS[fld.type]}`"
    return f"repeated {base}" if fld.label == fld.LABEL_REPEATED else base


def _render_message(out: list[str], prefix: str, msg: descriptor_pb2.DescriptorProto, path: tuple[int, ...],
                    comments: dict, types: Types, here: str) -> None:
    name = f"{prefix}.{msg.name}"
    out.append(f'<a id="{name}"></a>\n### {name.split(".", 3)[-1]}\n')
    if doc := comments.get(path):
        out.append(doc + "\n")
    if msg.field:
        out.append("| Field | JSON | Type | Description |\n|---|---|---|---|")
        for fi, fld in enumerate(msg.field):
            note = WELL_KNOWN_JSON.get(fld.type_name, "")
            if fld.type in (fld.TYPE_INT64, fld.TYPE_UINT64, fld.TYPE_SINT64, fld.TYPE_FIXED64, fld.TYPE_SFIXED64):
                note = "int64: a string in proto3 JSON"
            desc = comments.get((*path, 2, fi), "") + (f" ({note})" if note else "")
            out.append(f"| `{fld.name}` | `{fld.json_name}` | {_field_type(fld, msg, types, here)} | {_cell(desc)} |")
        out.append("")
    else:
        out.append("No fields.\n")
    for ni, nested in enumerate(msg.nested_type):
        if not nested.options.map_entry:
            _render_message(out, name, nested, (*path, 3, ni), comments, types, here)
    for ei, enum in enumerate(msg.enum_type):
        _render_enum(out, name, enum, (*path, 4, ei), comments)


def _render_enum(out: list[str], prefix: str, enum: descriptor_pb2.EnumDescriptorProto, path: tuple[int, ...],
                 comments: dict) -> None:
    name = f"{prefix}.{enum.name}"
    out.append(f'<a id="{name}"></a>\n### {name.split(".", 3)[-1]} (enum)\n')
    if doc := comments.get(path):
        out.append(doc + "\n")
    out.append("| Name | Number | Description |\n|---|---|---|")
    for vi, value in enumerate(enum.value):
        out.append(f"| `{value.name}` | {value.number} | {_cell(comments.get((*path, 2, vi), ''))} |")
    out.append("")


def _error_rows(rpc: Rpc) -> list[str]:
    rows = [f"| `{code}` | {error_table.TABLE[code].http_status} | {_cell(when)} |" for code, when in rpc.errors]
    return ["| gRPC code | HTTP | When |", "|---|---|---|", *rows,
            f"| … | | {'and ' if rows else 'only '}the [platform-wide errors](README.md#errors-every-rpc-can-return) |"]


def render_page(page: Page, types: Types, examples_doc: dict) -> str:
    here = f"{page.slug}.md"
    service = page.service_name
    out = [f"# `{page.package}`\n",
           "<!-- Generated by scripts/gen_api_docs.py from proto/ and the live routes; do not edit. -->\n"]
    twins, scope_of = (rest_twins(service), scopes(service)) if service else ({}, {})
    if service:
        rest_port, grpc_port = config.DEFAULT_PORTS[service]
        for full, doc in page.service_docs:
            out.append(f"## Service `{full}`\n")
            if doc:
                out.append(doc + "\n")
        out.append(f"gRPC on `{config.DEFAULT_HOST}:{grpc_port}`, REST on `http://{config.DEFAULT_HOST}:{rest_port}` "
                   f"(defaults of `fxplat up`). Set `TOKEN` first (see [README](README.md#calling-the-api)); "
                   "`fxplat call` needs no token in dev mode. How the REST shapes differ from the gRPC ones: "
                   "[wire-mapping.md](../wire-mapping.md).\n")
        out.append("| RPC | Kind | REST twin | Scope |\n|---|---|---|---|")
        for rpc in page.rpcs:
            verb, path = twins.get(rpc.name, ("", ""))
            kind = "server stream" if rpc.server_streaming else ("client stream" if rpc.client_streaming else "unary")
            twin = f"`{verb} {path}`" if verb else "none (gRPC only)"
            out.append(f"| [{rpc.name}](#{rpc.name.lower()}) | {kind} | {twin} | "
                       f"{'`' + scope_of[rpc.name] + '`' if scope_of.get(rpc.name) else '—'} |")
        out.append("")
        out.append("## RPCs\n")
    wanted = examples_doc.get(service, {}) if service else {}
    for rpc in page.rpcs:
        verb, path = twins.get(rpc.name, ("", ""))
        stream = rpc.server_streaming or rpc.client_streaming
        out.append(f"### {rpc.name}\n")
        if stream:
            out.append(f"**{'Server' if rpc.server_streaming else 'Client'} stream**: "
                       f"{'the server sends a sequence of responses.' if rpc.server_streaming else 'the client sends a sequence of requests.'}\n")
        if rpc.doc:
            out.append(rpc.doc + "\n")
        out.append("| | |\n|---|---|")
        out.append(f"| Request | {types.link(rpc.request, here)} |")
        out.append(f"| Response | {'stream of ' if rpc.server_streaming else ''}{types.link(rpc.response, here)} |")
        out.append(f"| REST twin | {'`' + verb + ' ' + path + '`' if verb else 'none (gRPC only)'} |")
        out.append(f"| Scope | {'`' + scope_of[rpc.name] + '`' if scope_of.get(rpc.name) else '—'} |\n")
        out.append("Errors:\n")
        out += [*_error_rows(rpc), ""]
        if rpc.name in wanted and not stream:
            data = wanted[rpc.name]
            cmds = examples(service, rpc.name, data)
            out.append("Examples (REST, gRPC by reflection, through the flagged adapter):\n")
            for transport in TRANSPORTS:
                out.append(example_block(service, rpc.name, transport, cmds[transport]))
            needs = sorted(set(re.findall(r"\$([A-Z_]+)", json.dumps(data))))
            for var in needs:
                out.append(f"`${var}`: {examples_doc['variables'][var]}.\n")
        elif stream:
            out.append("No example is generated for streams yet.\n")
        else:
            sys.exit(f"{service}.{rpc.name} has no example: add its request to {EXAMPLES.relative_to(ROOT)}")
    out.append("## Messages and enums\n")
    for f in page.files:
        comments = _comment_index(f)
        for mi, msg in enumerate(f.message_type):
            _render_message(out, f.package, msg, (4, mi), comments, types, here)
        for ei, enum in enumerate(f.enum_type):
            _render_enum(out, f.package, enum, (5, ei), comments)
    return "\n".join(out).rstrip() + "\n"


def render_index(all_pages: dict[str, Page], examples_doc: dict) -> str:
    spec = examples_doc["error_example"]
    service, rpc, data = spec["service"], spec["rpc"], spec["request"]
    cmds = examples(service, rpc, data)
    plain_curl = cmds["curl"].replace("curl -sS --fail-with-body", "curl -sS")  # show the problem+json body
    out = ["# fxplat API reference\n",
           "<!-- Generated by scripts/gen_api_docs.py from proto/ and the live routes; do not edit. -->\n",
           "Every RPC is served over gRPC and, with the same meaning, over REST. One page per package:\n"]
    for page in all_pages.values():
        what = f"service `{page.service_name}`" if page.service_name else "shared types"
        out.append(f"- [{page.package}]({page.slug}.md): {what}")
    out.append("\nThe REST documents (OpenAPI) are in [../openapi/](../openapi/); every difference between the two "
               "wire shapes is listed in [../wire-mapping.md](../wire-mapping.md).\n")
    out.append("## Calling the API\n")
    out.append("Start the platform with `fxplat up`, then get a token that carries the scopes of the RPCs you call "
               "(each RPC's page names its scope):\n")
    scopes_all = sorted({s for name in CATALOG for s in scopes(name).values()})
    out.append("```sh\nexport TOKEN=$(fxplat token " + " ".join(f"--scope {s}" for s in scopes_all) + ")\n```\n")
    out.append("`curl` sends it as `authorization: Bearer $TOKEN`, `buf curl` as the same metadata; `fxplat call` "
               "mints its own in dev mode (or sends `FXPLAT_TOKEN`). gRPC reflection (v1 and v1alpha) needs no token, "
               "so `buf curl` and grpcurl find every RPC by name.\n")
    out.append("## Errors every RPC can return\n")
    out.append("Errors are typed and mean the same on both transports. gRPC: the status code, a message, and in the "
               "`grpc-status-details-bin` trailer a `google.rpc.Status` whose details hold a `google.rpc.ErrorInfo` "
               "(domain `fxplat`, a stable UPPER_SNAKE `reason`, `metadata`) and, for bad input, a "
               "`google.rpc.BadRequest` naming each bad field. REST: the HTTP status and an "
               "`application/problem+json` body with the same `code`, `reason`, `detail` and `field_violations`.\n")
    out.append("| gRPC code | HTTP |\n|---|---|")
    out += [f"| `{code}` | {m.http_status} |" for code, m in error_table.TABLE.items()]
    out.append("\nBesides the errors each RPC lists, any RPC can return:\n")
    out.append("| gRPC code | HTTP | When |\n|---|---|---|")
    out += [f"| `{code}` | {error_table.TABLE[code].http_status} | {when} |" for code, when in PLATFORM_ERRORS]
    out.append(f"\nFor example, {rpc} of an unknown symbol over each transport (each exits non-zero, curl "
               "excepted: without `--fail-with-body` it prints the problem and exits 0):\n")
    out.append(example_block(service, rpc, "curl", plain_curl, expect="error"))
    out.append(example_block(service, rpc, "buf-curl", cmds["buf-curl"], expect="error"))
    out.append(example_block(service, rpc, "fxplat", cmds["fxplat"], expect="error"))
    out.append("`buf curl` prints the status as JSON with each detail's type (`google.rpc.BadRequest`, "
               "`google.rpc.ErrorInfo`) and its bytes in unpadded base64, whatever the server sends: it renders an "
               "error with connect-go's error JSON, which decodes a detail only with the message types compiled into "
               "buf (google.rpc.Status is, the error details are not); the types it fetched through reflection and "
               "`--schema` are not consulted for errors. To read a detail as JSON, decode its bytes with `buf convert` "
               f"and the error types in [{ERROR_TYPES}]({ERROR_TYPES}) (a descriptor set of the google.rpc files the "
               "server's reflection serves; googleapis' `google/rpc/error_details.proto` does as well). From the "
               "repository's root, with `jq` padding the base64 for `base64 -d`:\n")
    out.append(example_block(service, rpc, "buf-convert", decoded_detail(cmds["buf-curl"]), expect="error"))
    out.append("Clients that decode `Any` through reflection (grpcurl, generated or dynamic clients) get the details as "
               "messages directly: the reflected file of every service comes with `google/rpc/error_details.proto` "
               "and `status.proto`, and `google.rpc.BadRequest` is found by symbol.\n")
    return "\n".join(out).rstrip() + "\n"


def decoded_detail(buf_curl: str, detail: str = "google.rpc.BadRequest") -> str:
    """The `buf curl` command piped into the decoding of one error detail to JSON."""
    pad = '("=" * ((4 - (.value | length) % 4) % 4))'
    return " \\\n  | ".join([
        f"{buf_curl} 2>&1 >/dev/null",
        f"jq -r '.details[] | select(.type == \"{detail}\") | .value + {pad}'",
        "base64 -d",
        f"npx buf convert {OUT.relative_to(ROOT)}/{ERROR_TYPES} --type {detail} --from -#format=binpb "
        "--to -#format=json"])


def error_types() -> str:
    """The google.rpc error types as a descriptor set in JSON (each file after its imports), for `buf convert`."""
    ordered: dict[str, object] = {}

    def add(file) -> None:
        for dependency in file.dependencies:
            add(dependency)
        ordered.setdefault(file.name, file)

    for file in reflection.ERROR_FILES:
        add(file)
    fds = descriptor_pb2.FileDescriptorSet()
    for file in ordered.values():
        file.CopyToProto(fds.file.add())
    return json_format.MessageToJson(fds, indent=1) + "\n"


def render_all() -> dict[str, str]:
    examples_doc = yaml.safe_load(EXAMPLES.read_text())
    all_pages = pages(descriptor_set())
    types = Types(all_pages)
    docs = {f"{page.slug}.md": render_page(page, types, examples_doc) for page in all_pages.values()}
    docs["README.md"] = render_index(all_pages, examples_doc)
    docs[ERROR_TYPES] = error_types()
    return docs


def committed() -> set[str]:
    return {p.name for p in OUT.glob("*.md")} | ({ERROR_TYPES} if (OUT / ERROR_TYPES).exists() else set())


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--check", action="store_true",
                        help="exit 1 if a committed file differs from what the protos give")
    check = parser.parse_args().check
    docs = render_all()
    if check:
        stale = sorted(n for n, text in docs.items() if not (OUT / n).exists() or (OUT / n).read_text() != text)
        stale += sorted(f"{n} (no longer generated)" for n in committed() - set(docs))
        if stale:
            sys.exit("docs/api is stale; run `python scripts/gen_api_docs.py` and commit: " + ", ".join(stale))
        print(f"docs/api is current ({len(docs)} files)")
        return
    OUT.mkdir(parents=True, exist_ok=True)
    for stale in committed() - set(docs):
        (OUT / stale).unlink()
    for name, text in docs.items():
        (OUT / name).write_text(text)
    print(f"wrote {len(docs)} files into {OUT.relative_to(ROOT)}")


if __name__ == "__main__":
    main()
