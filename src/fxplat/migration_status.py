"""`fxplat migration status`: where the REST -> gRPC migration stands, per service and method, asked of the running
platform rather than read from a list:

- gRPC implemented: the server's reflection lists the service and its methods, and a probe call (an empty request,
  which every write refuses with INVALID_ARGUMENT or NOT_FOUND before doing anything) answers with anything but
  UNIMPLEMENTED;
- parity evidence: the parity tests that exercise the method (when run from a checkout) and the shadow comparisons in
  the canary store (count, mismatch rate, last seen);
- the share the flags give it, its rollout's state, and the recommended next step.
"""
from __future__ import annotations

import re
from dataclasses import asdict, dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

import grpc
from google.protobuf import descriptor_pb2
from grpc_reflection.v1alpha import reflection_pb2, reflection_pb2_grpc
from rich.console import Console
from rich.table import Table

from adapters import canary
from adapters.connect import KITS
from adapters.flag_schema import FlagsConfig
from fxplat.catalog import CATALOG
from fxplat.credentials import client_factory
from rollout.flag_writers import share_of
from rollout.model import Thresholds
from rollout.store import RolloutStore
from transport import config
from transport.client_factory import ClientFactory

PROBE_TIMEOUT_S = 3.0
_TESTS = Path(__file__).resolve().parents[2] / "tests"  # present in a checkout, absent in an installed package


@dataclass
class MethodStatus:
    service: str
    method: str
    grpc_implemented: str  # "yes", "no", "unknown"
    grpc_probe: str  # what the live check saw
    parity_tests: list[str] = field(default_factory=list)
    shadow_samples: int = 0
    mismatch_rate: float | None = None
    last_seen: str | None = None
    share: int = 0
    rollout: str = "none"
    next_step: str = ""

    def to_json(self) -> dict[str, Any]:
        return asdict(self)


async def _served_methods(channel: grpc.aio.Channel, service: str) -> tuple[bool, set[str]]:
    """(the server lists `service` in reflection, the methods its reflected descriptor declares)."""
    call = reflection_pb2_grpc.ServerReflectionStub(channel).ServerReflectionInfo(timeout=PROBE_TIMEOUT_S)
    await call.write(reflection_pb2.ServerReflectionRequest(list_services=""))
    listed = {s.name for s in (await call.read()).list_services_response.service}
    methods: set[str] = set()
    if service in listed:
        await call.write(reflection_pb2.ServerReflectionRequest(file_containing_symbol=service))
        response = await call.read()
        package, _, name = service.rpartition(".")
        for raw in response.file_descriptor_response.file_descriptor_proto:
            fd = descriptor_pb2.FileDescriptorProto.FromString(raw)
            if fd.package == package:
                methods |= {m.name for s in fd.service if s.name == name for m in s.method}
    await call.done_writing()
    return service in listed, methods


async def _probe(channel: grpc.aio.Channel, service: str, method: str) -> str:
    """The status code an empty request gets: OK or a domain error means the method is served."""
    rpc = channel.unary_unary(f"/{service}/{method}")  # bytes in, bytes out
    try:
        await rpc(b"", timeout=PROBE_TIMEOUT_S)
        return "OK"
    except grpc.aio.AioRpcError as exc:
        return exc.code().name


async def _live(factory: ClientFactory, name: str, target: str) -> dict[str, tuple[str, str]]:
    """method -> (implemented yes/no/unknown, what was seen)."""
    entry = CATALOG[name]
    contract = [m.name for m in entry.grpc_methods(None)]
    channel = factory.channel(target)
    try:
        listed, served = await _served_methods(channel, entry.grpc_service)
    except grpc.aio.AioRpcError as exc:
        return {m: ("unknown", f"reflection: {exc.code().name}") for m in contract}
    if not listed:
        return {m: ("no", "service not in reflection") for m in contract}
    out = {}
    for method in dict.fromkeys([*contract, *sorted(served)]):
        if method not in served:
            out[method] = ("no", "not in the reflected service")
            continue
        code = await _probe(channel, entry.grpc_service, method)
        if code == "UNIMPLEMENTED":
            out[method] = ("no", "probe: UNIMPLEMENTED")
        elif code in ("UNAVAILABLE", "DEADLINE_EXCEEDED"):
            out[method] = ("unknown", f"probe: {code}")
        else:
            out[method] = ("yes", f"probe: {code}")
    return out


def _snake(name: str) -> str:
    return re.sub(r"(?<!^)(?=[A-Z])", "_", name).lower()


def _parity_tests(method: str) -> list[str]:
    if not _TESTS.is_dir():
        return []
    needle = _snake(method)
    return sorted(p.name for p in _TESTS.glob("test_*parity*.py") if needle in p.read_text(encoding="utf-8"))


def _next_step(s: MethodStatus, t: Thresholds, rollout_state: str) -> str:
    if s.grpc_implemented == "no":
        return "implement the gRPC method (calls fall back to REST until then)"
    if s.grpc_implemented == "unknown":
        return "start the service's gRPC server (fxplat up) and check again"
    if rollout_state in ("running", "paused"):
        return f"rollout {rollout_state}: watch `fxplat rollout status {s.service}`"
    if s.mismatch_rate is not None and s.shadow_samples and s.mismatch_rate > t.max_mismatch_rate:
        return f"fix the mismatches (`fxplat canary report --service {s.service}`) before rolling out"
    if s.share >= 100:
        return "done: all calls on gRPC"
    if not _is_read(s.service, s.method):
        return f"a write (never shadowed: parity from the tests); moves with `fxplat rollout start {s.service}`"
    if s.shadow_samples < t.min_samples:
        return f"collect parity evidence: `fxplat flags set {s.service} --shadow 10` ({s.shadow_samples} of " \
               f"{t.min_samples} samples)"
    return f"`fxplat rollout start {s.service}` (or `--method {s.method}` alone)"


def _is_read(service: str, method: str) -> bool:
    policy = KITS[service].policies.get(method)
    return policy is None or policy.read


async def collect(flags: FlagsConfig, data_dir: Path, since: datetime | None,
                  endpoints: dict[str, config.Endpoint] | None = None) -> list[MethodStatus]:
    endpoints = endpoints or {}
    defaults = Thresholds()
    store = canary.CanaryStore(canary.database_url(data_dir))
    rollouts = RolloutStore.for_data_dir(data_dir)
    try:
        reports = {(r.service, r.method): r for r in canary.report(await store.comparisons(since=since))}
        last_seen: dict[tuple[str, str], datetime] = {}
        for c in await store.comparisons(since=since):
            last_seen[(c.service, c.method)] = c.at
        latest = {r.service: r for r in await rollouts.latest()}
        rows = []
        async with client_factory() as factory:
            for name in CATALOG:
                target = (endpoints.get(name) or config.endpoint(name)).grpc_target
                for method, (implemented, seen) in (await _live(factory, name, target)).items():
                    row = MethodStatus(name, method, implemented, seen, _parity_tests(method))
                    report = reports.get((name, method))
                    if report:
                        row.shadow_samples, row.mismatch_rate = report.samples, report.mismatch_rate
                        row.last_seen = last_seen[(name, method)].isoformat(timespec="seconds")
                    row.share = 0 if flags.kill_switch else share_of(flags, name, method)
                    r = latest.get(name)
                    state = ""
                    if r is not None and r.method in ("", method):
                        state = r.state
                        row.rollout = f"{r.id} {r.state} at {r.percent} %"
                    row.next_step = _next_step(row, defaults, state)
                    rows.append(row)
        return rows
    finally:
        await store.close()
        await rollouts.close()


def print_table(rows: list[MethodStatus]) -> None:
    table = Table(title="migration status (gRPC checked live: reflection + probe)")
    for col in ("service", "method", "gRPC", "probe", "shadow samples", "mismatch", "last seen", "share", "rollout",
                "next step"):
        table.add_column(col)
    for r in rows:
        style = {"yes": "green", "no": "bold red"}.get(r.grpc_implemented, "yellow")
        table.add_row(r.service, r.method, f"[{style}]{r.grpc_implemented}[/]", r.grpc_probe, str(r.shadow_samples),
                      "-" if r.mismatch_rate is None else f"{r.mismatch_rate:.2%}", r.last_seen or "-",
                      f"{r.share} %", r.rollout, r.next_step)
    Console(width=200).print(table)


def to_markdown(rows: list[MethodStatus], since_text: str) -> str:
    migrated = sum(r.grpc_implemented == "yes" for r in rows)
    lines = [
        "# Migration status",
        "",
        f"Generated by `fxplat migration status --markdown` on {datetime.now().astimezone():%Y-%m-%d %H:%M %Z} from the "
        f"running platform: gRPC checked live (reflection and a probe call per method), shadow samples of the last "
        f"{since_text} from the canary store, shares from the flags, rollouts from the rollout store.",
        "",
        f"**{migrated} of {len(rows)} methods serve gRPC.**",
        "",
        "| service | method | gRPC implemented | live check | parity tests | shadow samples | mismatch rate | "
        "last seen (UTC) | gRPC share | rollout | next step |",
        "|---|---|---|---|---|---:|---:|---|---:|---|---|",
    ]
    for r in rows:
        lines.append(f"| {r.service} | {r.method} | {r.grpc_implemented} | {r.grpc_probe} | "
                     f"{', '.join(r.parity_tests) or '-'} | {r.shadow_samples} | "
                     f"{'-' if r.mismatch_rate is None else f'{r.mismatch_rate:.2%}'} | {r.last_seen or '-'} | "
                     f"{r.share} % | {r.rollout} | {r.next_step} |")
    return "\n".join(lines) + "\n"
