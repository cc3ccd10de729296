"""The fault proxy that other fault tests rely on does what each mode says, against a loopback echo server."""
from __future__ import annotations

import asyncio
import time

import pytest

from faultproxy import FaultProxy


@pytest.fixture
async def echo_port():
    async def echo(reader, writer):
        while data := await reader.read(1024):
            writer.write(data)
            await writer.drain()
        writer.close()

    server = await asyncio.start_server(echo, "127.0.0.1", 0)
    yield server.sockets[0].getsockname()[1]
    server.close()


async def _roundtrip(port: int, timeout: float = 1.0) -> bytes:
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    try:
        writer.write(b"ping")
        await writer.drain()
        return await asyncio.wait_for(reader.read(4), timeout)
    finally:
        writer.close()


async def test_each_mode(echo_port):
    async with FaultProxy("127.0.0.1", echo_port) as proxy:
        assert await _roundtrip(proxy.port) == b"ping"
        proxy.mode = "blackhole"
        with pytest.raises(TimeoutError):
            await _roundtrip(proxy.port, timeout=0.3)
        proxy.mode = "refuse"
        try:
            got = await _roundtrip(proxy.port)
        except (ConnectionError, OSError):
            got = b""
        assert got == b"", "a refused connection must not answer"
        proxy.mode, proxy.delay_s = "delay", 0.2
        start = time.monotonic()
        assert await _roundtrip(proxy.port) == b"ping"
        assert time.monotonic() - start >= 0.4  # 0.2 s each way
        proxy.mode = "pass"
        assert await _roundtrip(proxy.port) == b"ping"
