"""The one place that makes gRPC channels and httpx clients: pooled and reused per target, closed together. With a
token source, every call they carry sends its bearer token (see transport.auth), whoever made the client."""
from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import grpc
import httpx

from transport import config, rest_balance
from transport.auth import BearerAuth, BearerChannel, TokenSource
from transport.grpc_server import MAX_MESSAGE_BYTES

CHANNEL_OPTIONS = [
    ("grpc.max_receive_message_length", MAX_MESSAGE_BYTES),
    ("grpc.max_send_message_length", MAX_MESSAGE_BYTES),
    # Keepalive finds a dead peer on an idle connection; servers accept pings this often (see grpc_server).
    ("grpc.keepalive_time_ms", 30_000),
    ("grpc.keepalive_timeout_ms", 10_000),
    # Retries are the adapter's job (one budget, fallback to REST); the channel must not retry on its own.
    ("grpc.enable_retries", 0),
    # Reconnect to a restarted server within seconds (the default backoff grows to 120 s), so a recovered gRPC
    # server gets traffic back soon after the breaker's trial call.
    ("grpc.initial_reconnect_backoff_ms", 200),
    ("grpc.max_reconnect_backoff_ms", 3_000),
    # Despite its name this is the timeout of one connection attempt (C-core's min connect timeout): at 200 ms a
    # server 300 ms away never connected. The adapter's attempt bound, not this, limits how long a call waits.
    ("grpc.min_reconnect_backoff_ms", 10_000),
    # A name is re-resolved when a connection ends (a replica gone, or its max connection age reached): allow that
    # every few seconds rather than the default 30 s, so a replica added under the name gets traffic soon.
    ("grpc.dns_min_time_between_resolutions_ms", 2_000),
]


def service_config(health_service: str | None) -> str:
    """round_robin for every target: a dns:/// name, an ipv4:/ipv6: list or a name with several addresses all spread
    their calls over every address (the default, pick_first, sends all to one). With `health_service`, each replica's
    grpc.health.v1 status of that service is watched: one reporting NOT_SERVING (draining) gets no new calls."""
    config: dict = {"loadBalancingConfig": [{"round_robin": {}}]}
    if health_service:
        config["healthCheckConfig"] = {"serviceName": health_service}
    return json.dumps(config)


@dataclass(frozen=True)
class ClientSettings:
    """What another process needs to make the same clients (the token source stays behind: tokens travel per call)."""

    ca: bytes | None
    tls: bool


class ClientFactory:
    def __init__(self, *, ca_file: Path | None = None, tls: bool | None = None, token_source: TokenSource | None = None,
                 max_connections: int = 100, timeout_s: float = 30.0) -> None:
        """`tls`: gRPC channels use TLS (default: when a CA bundle is given; without one, the system's roots).
        `token_source`: the bearer token every call sends; None sends none (and adds no interceptor's cost)."""
        self._ca = Path(ca_file).read_bytes() if ca_file else None
        self._tls = self._ca is not None if tls is None else tls
        self.token_source = token_source
        self._channels: dict[tuple, grpc.aio.Channel] = {}
        self._http: dict[str, httpx.AsyncClient] = {}
        self._limits = httpx.Limits(max_connections=max_connections, max_keepalive_connections=max_connections)
        self._timeout = httpx.Timeout(timeout_s, connect=5.0)

    @classmethod
    def from_settings(cls, settings: ClientSettings, token_source: TokenSource | None) -> "ClientFactory":
        factory = cls(tls=settings.tls, token_source=token_source)
        factory._ca = settings.ca
        return factory

    @property
    def settings(self) -> ClientSettings:
        return ClientSettings(self._ca, self._tls)

    def channel(self, target: str, *, tls: bool | None = None,
                health_service: str | None = None) -> grpc.aio.Channel | BearerChannel:
        """A shared channel to `target` (host:port, dns:///name:port, ipv4:a:p,b:p, ...); TLS unless `tls` says
        otherwise; calls spread over every address of the target, skipping those whose `health_service` is not
        SERVING."""
        tls = self._tls if tls is None else tls
        key = (target, tls, health_service)
        if key not in self._channels:
            options = [*CHANNEL_OPTIONS, ("grpc.service_config", service_config(health_service))]
            if tls:
                creds = grpc.ssl_channel_credentials(root_certificates=self._ca)
                channel = grpc.aio.secure_channel(target, creds, options=options)
            else:
                channel = grpc.aio.insecure_channel(target, options=options)
            self._channels[key] = BearerChannel(channel, self.token_source) if self.token_source else channel
        return self._channels[key]

    def http(self, base_url: str) -> httpx.AsyncClient:
        """A shared keep-alive HTTP client for one service root (verifies TLS with the configured CA bundle).
        `base_url` may list several replicas' roots, comma-separated: requests then spread over them and skip one
        that refuses (transport.rest_balance)."""
        if base_url not in self._http:
            verify: object = True
            if self._ca is not None:
                import ssl

                verify = ssl.create_default_context(cadata=self._ca.decode())
            auth = BearerAuth(self.token_source) if self.token_source else None
            bases = config.split_rest_url(base_url)
            transport = None
            if len(bases) > 1:
                transport = rest_balance.SpreadTransport(
                    bases, httpx.AsyncHTTPTransport(verify=verify, limits=self._limits))
            self._http[base_url] = httpx.AsyncClient(base_url=bases[0] if bases else base_url, limits=self._limits,
                                                     timeout=self._timeout, verify=verify, auth=auth,
                                                     transport=transport)
        return self._http[base_url]

    async def close(self) -> None:
        for ch in self._channels.values():
            await ch.close()
        for client in self._http.values():
            await client.aclose()
        self._channels.clear()
        self._http.clear()

    async def __aenter__(self) -> "ClientFactory":
        return self

    async def __aexit__(self, *exc) -> None:
        await self.close()
