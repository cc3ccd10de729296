"""`fxplat call` and `fxplat status`: reach any service through its flagged adapter, from the command line.

Requests and results use the protobuf JSON mapping (the same JSON `buf curl` takes), converted through the services'
own gRPC codecs, so one table of RPCs (each service's `methods(impl)`) serves the server skin and the CLI alike.
"""
from __future__ import annotations

import asyncio
import json
from dataclasses import asdict
from typing import Any

import grpc
import httpx
from google.protobuf import json_format, message_factory
from google.protobuf.descriptor_pool import Default as default_pool
from grpc_health.v1 import health_pb2, health_pb2_grpc

from adapters import resilience
from adapters.connect import KITS, connect
from adapters.core import last_call
from adapters.flags import Flags
from transport import config
from fxplat.catalog import CATALOG
from fxplat.credentials import client_factory
from services.common.errors import InvalidArgument, NotFound
from transport.client_factory import ClientFactory


def _methods(service: str, impl: Any) -> dict:
    return {m.name: m for m in CATALOG[service].grpc_methods(impl)}


def method_names(service: str) -> list[str]:
    return list(_methods(service, None))


def _response_class(service: str, method: str):
    desc = default_pool().FindServiceByName(CATALOG[service].grpc_service).methods_by_name[method].output_type
    return message_factory.GetMessageClass(desc)


def check_target(service: str, method: str) -> None:
    if service not in KITS:
        raise NotFound(f"unknown service {service!r}; available: {', '.join(KITS)}", field="service")
    names = method_names(service)
    if method not in names:
        raise NotFound(f"{service} has no method {method!r}; methods: {', '.join(names)}", field="method")


async def call(service: str, method: str, data: str, *, transport: str, flags: Flags) -> tuple[dict, Any]:
    """Run one RPC through the adapter; returns (result as proto JSON, the adapter's CallRecord)."""
    check_target(service, method)
    rpc = _methods(service, None)[method]
    try:
        request = json_format.Parse(data or "{}", rpc.request_type())
    except json_format.ParseError as exc:
        raise InvalidArgument(f"--data is not a valid {rpc.request_type.DESCRIPTOR.name}: {exc}", field="data") from None
    async with client_factory() as factory:
        adapter = connect(service, config.endpoint(service), factory=factory, flags=flags, caller="cli",
                          force=None if transport == "auto" else transport)
        response = await _methods(service, adapter)[method].call(request)
        record = last_call.get()
    if isinstance(response, bytes):
        response = _response_class(service, method).FromString(response)
    return json_format.MessageToDict(response, preserving_proto_field_name=True), record


_BREAKER_STATES = {0: "closed", 1: "half-open", 2: "open"}


def _breakers(metrics_text: str) -> dict[str, dict[str, dict]]:
    """From one process's /metrics: target service -> calling service -> {state, trips} of the breakers its services'
    adapters hold."""
    from prometheus_client.parser import text_string_to_metric_families

    found: dict[str, dict[str, dict]] = {}
    for family in text_string_to_metric_families(metrics_text):
        for sample in family.samples:
            svc, caller = sample.labels.get("service"), sample.labels.get("caller")
            if caller not in config.SERVICES:
                continue  # a breaker of some other client in that process (a script, a test), not a service's
            if sample.name == "fxplat_client_breaker_state":
                found.setdefault(svc, {}).setdefault(caller, {"trips": 0})["state"] = \
                    _BREAKER_STATES.get(int(sample.value), "?")
            elif sample.name == "fxplat_client_breaker_trips_total":
                found.setdefault(svc, {}).setdefault(caller, {"trips": 0})["trips"] += int(sample.value)
    return found


async def _probe(service: str, factory: ClientFactory) -> dict:
    ep = config.endpoint(service)
    out: dict[str, Any] = {"rest_url": ep.rest_url, "grpc_target": ep.grpc_target, "breakers_held": {}}
    try:
        r = await factory.http(ep.rest_url).get("/healthz", timeout=1.0)
        out["rest"] = "up" if r.status_code == 200 else f"HTTP {r.status_code}"
        metrics = await factory.http(ep.rest_url).get("/metrics", timeout=1.0)
        if metrics.status_code == 200:
            out["breakers_held"] = _breakers(metrics.text)
    except httpx.HTTPError as exc:
        out["rest"] = f"down ({type(exc).__name__})"
    try:
        stub = health_pb2_grpc.HealthStub(factory.channel(ep.grpc_target))
        name = CATALOG[service].grpc_service if service in CATALOG else ""  # "" = the server overall
        resp = await stub.Check(health_pb2.HealthCheckRequest(service=name), timeout=1.0)
        out["grpc"] = "up" if resp.status == health_pb2.HealthCheckResponse.SERVING else \
            health_pb2.HealthCheckResponse.ServingStatus.Name(resp.status).lower()
    except grpc.aio.AioRpcError as exc:
        out["grpc"] = f"down ({exc.code().name})"
    return out


async def status(flags: Flags) -> dict:
    snap = flags.snapshot()
    result: dict[str, Any] = {"flags_source": snap.source, "flags_loaded_at": snap.loaded_at.isoformat(),
                              "flags_error": snap.error, "kill_switch": snap.flags.kill_switch, "services": {}}
    async with client_factory() as factory:
        probes = await asyncio.gather(*(_probe(name, factory) for name in config.SERVICES))
        # Every running service's breakers towards each service it calls, as its /metrics tells them.
        held: dict[str, dict[str, dict]] = {}
        for probe in probes:
            for target, callers in probe.pop("breakers_held").items():
                held.setdefault(target, {}).update(callers)
        for name, probe in zip(config.SERVICES, probes):
            svc_flags = snap.flags.services[name]
            breakers = held.get(name, {})
            states = [b.get("state", "closed") for b in breakers.values()]
            result["services"][name] = {
                **probe,
                "implemented": name in CATALOG,
                "grpc_percent": svc_flags.grpc,
                "stickiness": svc_flags.stickiness,
                "shadow_percent": svc_flags.shadow,
                "method_overrides": {m: o.grpc for m, o in svc_flags.methods.items()},
                # The worst state among the callers' breakers (closed when nobody calls it yet), each caller's
                # state and how often it opened, and the settings they judge by (adapters.resilience).
                "breaker": next((s for s in ("open", "half-open") if s in states), "closed"),
                "breakers": breakers,
                "breaker_config": asdict(resilience.for_service(name).breaker),
            }
    return result


def to_json(obj: Any) -> str:
    return json.dumps(obj, indent=2, default=lambda o: asdict(o) if hasattr(o, "__dataclass_fields__") else str(o))
