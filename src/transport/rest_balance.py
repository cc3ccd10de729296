"""REST over several replicas with no balancer in front: a service's REST URL may list base URLs, comma-separated
(`FXPLAT_<SERVICE>_REST_URL=http://10.0.0.1:8001,http://10.0.0.2:8001`), as its gRPC target may list addresses.

Requests take the listed replicas in turn (round robin). A replica that refuses the connection is skipped for a
moment and the request goes at once to the next one: nothing was sent, so this is safe for any call, writes
included. A replica that answers 503 (draining, overloaded) is skipped for a moment too, but its answer is returned:
whether to repeat the call is the caller's decision (the adapters repeat a refusal that never ran), and the repeat
then lands on another replica. With one URL none of this is in the way (ClientFactory uses plain httpx then).
"""
from __future__ import annotations

import itertools
import time

import httpx

SKIP_S = 1.0  # how long a replica that refused or answered 503 is passed over (unless every replica is)


class SpreadTransport(httpx.AsyncBaseTransport):
    """An httpx transport that sends each request to one of `bases` (the client's base_url is the first of them)."""

    def __init__(self, bases: list[str], inner: httpx.AsyncBaseTransport) -> None:
        if len(bases) < 2:
            raise ValueError("SpreadTransport needs at least two base URLs")
        self._bases = [httpx.URL(b) for b in bases]
        self._inner = inner
        self._turn = itertools.cycle(range(len(bases)))
        self._skip_until = [0.0] * len(bases)

    def _order(self) -> list[int]:
        """Every replica once, starting at the next in turn; those being skipped last."""
        first = next(self._turn)
        ring = [(first + i) % len(self._bases) for i in range(len(self._bases))]
        now = time.monotonic()
        return sorted(ring, key=lambda i: self._skip_until[i] > now)  # stable: keeps the turn order otherwise

    def _to(self, request: httpx.Request, i: int) -> httpx.Request:
        base, home = self._bases[i], self._bases[0]
        path = request.url.raw_path.decode()
        prefix = home.raw_path.decode().rstrip("/")
        if prefix and path.startswith(prefix):
            path = path[len(prefix):]
        url = request.url.copy_with(scheme=base.scheme, host=base.host, port=base.port,
                                    raw_path=(base.raw_path.decode().rstrip("/") + path).encode())
        request.url = url
        request.headers["Host"] = url.netloc.decode()
        return request

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        order = self._order()
        for n, i in enumerate(order):
            try:
                response = await self._inner.handle_async_request(self._to(request, i))
            except (httpx.ConnectError, httpx.ConnectTimeout):
                self._skip_until[i] = time.monotonic() + SKIP_S
                if n == len(order) - 1:
                    raise
                continue
            if response.status_code == 503:
                self._skip_until[i] = time.monotonic() + SKIP_S
            return response
        raise AssertionError("unreachable")  # pragma: no cover

    async def aclose(self) -> None:
        await self._inner.aclose()
