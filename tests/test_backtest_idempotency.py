"""A RunBacktest stores once per idempotency key, whichever transports carry its attempts: the same key over gRPC, over
REST and through the adapter gives one backtest; and when the gRPC answer is lost after the write, the adapter's REST
fallback carries the key the adapter chose and gets the stored backtest back instead of storing a second one."""
from __future__ import annotations

import asyncio
import socket
import struct
import time
from datetime import datetime, timezone
from uuid import uuid4

import pytest
import test_backtest_parity

from adapters.connect import connect
from adapters.core import last_call
from transport.config import Endpoint
from services.backtesting.models import BacktestRequest, ListBacktestsQuery
from services.common.errors import Unavailable
from transport.client_factory import ClientFactory

MARCH = test_backtest_parity.MARCH


async def stored_since(domain, since: datetime, request: BacktestRequest) -> list:
    """Backtests of the request's symbol and strategy stored since `since` (a window only this test writes in)."""
    query = ListBacktestsQuery(symbol=request.symbol, strategy=request.strategy, created_after=since, page_size=100)
    return list((await domain.list_backtests(query)).backtests)


async def test_one_key_one_backtest_on_every_path(backtesting_host, backtesting_clients, factory, platform_flags):
    request = BacktestRequest("EURGBP", "sma_cross", {"fast": 3, "slow": 12}, range=MARCH, idempotency_key=uuid4().hex)
    adapter = connect("backtesting", Endpoint(backtesting_host.rest_url, backtesting_host.grpc_target),
                      factory=factory, flags=platform_flags)
    since = datetime.now(timezone.utc)
    first = await backtesting_clients["grpc"].run_backtest(request)
    again = [await backtesting_clients["rest"].run_backtest(request),
             await adapter.run_backtest(request), await adapter.run_backtest(request)]
    assert all(b == first for b in again)
    assert [s.id for s in await stored_since(backtesting_clients["domain"], since, request)] == [first.summary.id]


class HoldingProxy:
    """A TCP proxy on 127.0.0.1 in front of a server port. Forwards both ways; once `armed`, it drops what the server
    sends, so a call reaches the server but its answer never reaches the client; `reset()` then aborts every
    connection with an RST, as a crashed peer or a broken network would."""

    def __init__(self, target_port: int) -> None:
        self.target_port = target_port
        self.armed = False
        self.port = 0
        self._server: asyncio.Server | None = None
        self._writers: list[asyncio.StreamWriter] = []

    async def start(self) -> None:
        self._server = await asyncio.start_server(self._connection, "127.0.0.1", 0)
        self.port = self._server.sockets[0].getsockname()[1]

    async def _connection(self, client_r: asyncio.StreamReader, client_w: asyncio.StreamWriter) -> None:
        server_r, server_w = await asyncio.open_connection("127.0.0.1", self.target_port)
        self._writers += [client_w, server_w]
        await asyncio.gather(self._pipe(client_r, server_w, from_server=False),
                             self._pipe(server_r, client_w, from_server=True))

    async def _pipe(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter, *, from_server: bool) -> None:
        try:
            while data := await reader.read(65536):
                if from_server and self.armed:
                    continue
                writer.write(data)
                await writer.drain()
        except ConnectionError:
            pass
        finally:
            writer.close()

    def reset(self) -> None:
        while self._writers:
            w = self._writers.pop()
            if not w.transport.is_closing():
                w.get_extra_info("socket").setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
                w.transport.abort()  # with linger 0: an RST, not a FIN

    async def close(self) -> None:
        self.reset()
        if self._server is not None:
            self._server.close()
            await self._server.wait_closed()


async def test_lost_grpc_answer_falls_back_to_rest_without_storing_twice(backtesting_host, backtesting_clients,
                                                                        platform_flags, tokens):
    domain = backtesting_clients["domain"]
    # No idempotency key: the adapter picks one.
    request = BacktestRequest("USDCAD", "bollinger_breakout", {"period": 15}, range=MARCH)
    proxy = HoldingProxy(backtesting_host.grpc_port)
    await proxy.start()
    try:
        async with ClientFactory(token_source=tokens) as own_factory:
            adapter = connect("backtesting", Endpoint(backtesting_host.rest_url, f"127.0.0.1:{proxy.port}"),
                              factory=own_factory, flags=platform_flags)
            await adapter.list_backtests(ListBacktestsQuery(page_size=1))  # the HTTP/2 connection, through the proxy
            assert last_call.get().transport == "grpc"

            async def run_and_record():
                result = await adapter.run_backtest(request)
                return result, last_call.get()  # the record lives in this task's context

            since = datetime.now(timezone.utc)
            proxy.armed = True
            call = asyncio.create_task(run_and_record())
            deadline = time.monotonic() + 10
            while not (stored := await stored_since(domain, since, request)):  # the write happened ...
                assert time.monotonic() < deadline, "the backtest was never stored"
                assert not call.done(), call
                await asyncio.sleep(0.02)
            proxy.reset()  # ... and its answer is lost
            result, record = await asyncio.wait_for(call, 10)
    finally:
        await proxy.close()
    assert (record.transport, record.fallback_reason) == ("rest", "unavailable")
    assert result.summary.id == stored[0].id
    assert [s.id for s in await stored_since(domain, since, request)] == [result.summary.id]


async def test_a_delete_is_never_replayed_but_reads_fall_back(backtesting_host, backtesting_clients, factory,
                                                              platform_flags):
    """DeleteBacktest cannot carry an idempotency key: when its gRPC attempt fails in a way that may have run it, the
    caller gets UNAVAILABLE rather than a REST replay (which would answer NOT_FOUND for a delete that succeeded)."""
    stored = await backtesting_clients["domain"].run_backtest(
        BacktestRequest("NZDUSD", "sma_cross", {"fast": 3, "slow": 12}, range=MARCH))
    dead_grpc = Endpoint(backtesting_host.rest_url, "127.0.0.1:9")  # nothing listens on the discard port
    adapter = connect("backtesting", dead_grpc, factory=factory, flags=platform_flags)
    with pytest.raises(Unavailable):
        await adapter.delete_backtest(stored.summary.id)
    assert last_call.get().transport == "grpc" and not last_call.get().fell_back
    assert await adapter.get_backtest(stored.summary.id) == stored  # a read falls back to REST
    assert last_call.get().fallback_reason == "unavailable"
