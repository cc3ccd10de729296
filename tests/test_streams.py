"""Live streams (StreamQuotes, WatchCandles) on both transports against the session's Market Analysis host: the
generator is deterministic and consistent with the candles, gRPC, SSE and NDJSON carry identical quotes, resume
continues exactly, errors are typed alike, caps hold, every stream logs one line, and foreign clients (buf curl,
curl -N) read them."""
from __future__ import annotations

import asyncio
import json
import logging
import os
import shutil
import signal
from pathlib import Path

import httpx
import numpy as np
import pytest

from services.common import errors as E
from services.common.market_types import Timeframe
from services.market_analysis import synthetic
from services.market_analysis.models import CandlesQuery
from services.market_analysis.quotes import QuoteHub, QuoteSettings
from services.market_analysis.rest import quote_from_json
from transport import context, streams

ROOT = Path(__file__).resolve().parent.parent
BUF = ROOT / "node_modules" / ".bin" / "buf"
SYMBOLS = ["EURUSD", "GBPUSD", "USDJPY"]


async def take(stream, n: int, timeout: float = 15.0) -> list:
    """The first `n` items of a client item stream (transport.*ItemStream), opened and closed here."""
    await stream.open()
    got: list = []
    try:
        async with asyncio.timeout(timeout):
            while len(got) < n:
                got += await stream.next()
    finally:
        await stream.close()
    return got[:n]


@pytest.fixture
def stream_settings():
    """Replace the process's stream settings for one test, then restore them."""
    before = streams.limits().settings

    def use(**kw) -> streams.StreamLimits:
        return streams.use_settings(streams.StreamSettings(**kw))

    yield use
    streams.use_settings(before)


# --- the generator ----------------------------------------------------------------------------------------------

def _hub(**kw) -> QuoteHub:
    from services.market_analysis.domain import MarketAnalysisDomain

    return MarketAnalysisDomain(None, QuoteSettings(**kw)).quotes


def test_quote_mids_span_exactly_each_bar_and_closed_candles_are_the_bars():
    for per_bar in (4, 9):
        replay = _hub(per_bar=per_bar).replay("GBPUSD")
        bars = synthetic.m1("GBPUSD")
        mids = np.array([q.mid for q in replay.quotes(0, 500 * per_bar)]).reshape(500, per_bar)
        assert np.array_equal(mids[:, 0], bars.open[:500]) and np.array_equal(mids[:, -1], bars.close[:500])
        assert np.array_equal(mids.max(1), bars.high[:500]) and np.array_equal(mids.min(1), bars.low[:500])
    quotes = replay.quotes(10**6, 10**6 + 2000)
    assert all(q.bid < q.mid < q.ask for q in quotes)
    h1 = synthetic.candles("GBPUSD", Timeframe.H1)
    closed = replay.candles(Timeframe.H1, 0, 60 * 9 * 30, 100)
    assert len(closed) >= 20
    for c in closed:
        i = int(np.searchsorted(h1.time, c.time))
        assert (c.open, c.high, c.low, c.close, c.volume) == (h1.open[i], h1.high[i], h1.low[i], h1.close[i],
                                                               h1.volume[i])
        assert (c.sequence + 1) % 9 == 0  # closed by the last quote of a bar


def test_quote_n_is_reproducible_and_seeded():
    a, b, other = _hub(seed=7).replay("EURUSD"), _hub(seed=7).replay("EURUSD"), _hub(seed=8).replay("EURUSD")
    start = 123_456_789
    assert a.quotes(start, start + 300) == b.quotes(start, start + 300)
    # Any window of the same sequences is the same quotes: resuming from any position continues identically.
    assert a.quotes(start + 17, start + 40) == a.quotes(start, start + 300)[17:40]
    assert [q.bid for q in other.quotes(start, start + 300)] != [q.bid for q in a.quotes(start, start + 300)]


async def test_subscribers_share_one_generator_and_resume_exactly():
    hub = _hub(rate=200)
    await asyncio.to_thread(synthetic.warm, (Timeframe.M1,))
    live = await hub.quotes(["EURUSD", "USDJPY"])
    first = []
    async with asyncio.timeout(10):
        while len(first) < 40:
            first += await live.next(1.0)
    after = {"EURUSD": first[9].sequence}  # resume EURUSD after its 5th quote, USDJPY from the start of `first`
    assert [q.symbol for q in first[:4]] == ["EURUSD", "USDJPY", "EURUSD", "USDJPY"]
    resumed = await hub.quotes(["EURUSD"], after)
    again = []
    async with asyncio.timeout(10):
        while len(again) < 10:
            again += await resumed.next(1.0)
    assert again[:10] == [q for q in first if q.symbol == "EURUSD"][5:15]
    assert len(hub._feeds) == 2  # EURUSD shared by both subscriptions, USDJPY by one
    live.close()
    resumed.close()
    assert not hub._feeds


async def test_resume_positions_are_checked():
    hub = _hub()
    with pytest.raises(E.InvalidArgument, match="older than"):
        await hub.quotes(["EURUSD"], {"EURUSD": 5})
    with pytest.raises(E.InvalidArgument, match="future"):
        await hub.quotes(["EURUSD"], {"EURUSD": hub.sequence_now() + 10**6})
    with pytest.raises(E.InvalidArgument, match="not requested"):
        await hub.quotes(["EURUSD"], {"GBPUSD": hub.sequence_now()})
    with pytest.raises(E.InvalidArgument, match="repeat"):
        await hub.quotes(["EURUSD", "eurusd"])
    with pytest.raises(E.NotFound):
        await hub.quotes(["NOPE"])
    with pytest.raises(E.InvalidArgument, match="at least one"):
        await hub.quotes([])


# --- both transports ------------------------------------------------------------------------------------------------

async def test_parity_first_quotes_identical_over_grpc_sse_and_ndjson(market_host, market_clients, tokens):
    head = market_host.impl.quotes.sequence_now()
    after = {s: head - 30 for s in SYMBOLS}
    n = 60
    over_grpc = await take(market_clients["grpc"].stream_quotes(SYMBOLS, after), n)
    over_sse = await take(market_clients["rest"].stream_quotes(SYMBOLS, after), n)
    lines = []
    async with httpx.AsyncClient(base_url=market_host.rest_url, timeout=15) as http:
        async with http.stream("GET", "/v1/quotes/stream", params={"symbols": ",".join(SYMBOLS), "after": ",".join(
                f"{s}:{p}" for s, p in after.items())}, headers={"accept": "application/x-ndjson",
                                                                 "authorization": f"Bearer {tokens()}"}) as resp:
            assert resp.status_code == 200 and resp.headers["content-type"].startswith("application/x-ndjson")
            async for line in resp.aiter_lines():
                obj = json.loads(line)
                if "symbol" in obj:
                    lines.append(quote_from_json(obj))
                if len(lines) == n:
                    break
    expected = sorted((q for s in SYMBOLS for q in market_host.impl.quotes.replay(s).quotes(head - 29, head - 9)),
                      key=lambda q: (q.sequence, SYMBOLS.index(q.symbol)))
    assert over_grpc == over_sse == lines == expected
    assert over_grpc[0].sequence == head - 29 and over_grpc[-1].sequence == head - 10


async def test_sse_ids_resume_through_last_event_id(market_host, tokens):
    head = market_host.impl.quotes.sequence_now()
    auth = {"authorization": f"Bearer {tokens()}"}
    params = {"symbols": "EURUSD,GBPUSD", "after": f"EURUSD:{head - 20},GBPUSD:{head - 20}"}

    async def events(headers: dict, n: int) -> list[tuple[str, dict]]:
        out, current = [], {}
        async with httpx.AsyncClient(base_url=market_host.rest_url, timeout=15) as http:
            async with http.stream("GET", "/v1/quotes/stream", params=params, headers={**auth, **headers}) as resp:
                assert resp.headers["content-type"].startswith("text/event-stream")
                async for line in resp.aiter_lines():
                    if line.startswith(("id:", "data:")):
                        current[line[:line.index(":")]] = line.split(":", 1)[1].strip()
                    elif not line and "data" in current:
                        out.append((current["id"], json.loads(current["data"])))
                        current = {}
                        if len(out) == n:
                            return out
        return out

    first = await events({}, 10)
    assert first[2][0] == f"EURUSD:{head - 18},GBPUSD:{head - 19}"  # the id covers every symbol
    resumed = await events({"last-event-id": first[4][0]}, 5)
    assert [d for _, d in resumed] == [d for _, d in first[5:10]]


async def test_closed_candles_match_get_candles_on_both_transports(market_host, market_clients):
    head = market_host.impl.quotes.sequence_now()
    after = head - 4 * 60  # the last 60 M1 bars' closes: at least one M5 bar
    got = {name: await take(market_clients[name].watch_candles("EURUSD", "M5", after), 3)
           for name in ("grpc", "rest")}
    assert got["grpc"] == got["rest"]
    m5 = synthetic.candles("EURUSD", Timeframe.M5)
    for c in got["grpc"]:
        i = int(np.searchsorted(m5.time, c.time))
        assert c.close == m5.close[i] and c.high == m5.high[i] and c.timeframe is Timeframe.M5


@pytest.mark.parametrize("transport", ["grpc", "rest"])
async def test_errors_are_typed_alike(market_host, market_clients, transport):
    client = market_clients[transport]
    head = market_host.impl.quotes.sequence_now()
    cases = [
        (client.stream_quotes(["NOPE"]), E.NotFound),
        (client.stream_quotes(["EURUSD"], {"EURUSD": 3}), E.InvalidArgument),
        (client.watch_candles("EURUSD", "M1", head + 10**7), E.InvalidArgument),
    ]
    for stream, error in cases:
        with pytest.raises(error) as caught:
            await take(stream, 1, timeout=10)
        assert caught.value.code == error.code


async def test_missing_token_is_unauthenticated_on_both(market_host, factory):
    from services.market_analysis.grpc import MarketAnalysisGrpcClient
    from services.market_analysis.rest import MarketAnalysisRestClient
    from transport.client_factory import ClientFactory

    async with ClientFactory() as anonymous:
        for client in (MarketAnalysisGrpcClient(anonymous.channel(market_host.grpc_target)),
                       MarketAnalysisRestClient(anonymous.http(market_host.rest_url))):
            with pytest.raises(E.Unauthenticated):
                await take(client.stream_quotes(["EURUSD"]), 1, timeout=10)


async def test_cap_per_token_is_resource_exhausted_on_both(market_clients, stream_settings):
    stream_settings(max_per_token=2, heartbeat_s=0.5)
    held = [market_clients["grpc"].stream_quotes(["EURUSD"]), market_clients["rest"].stream_quotes(["EURUSD"])]
    for s in held:
        await s.open()
    try:
        for transport in ("grpc", "rest"):
            with pytest.raises(E.ResourceExhausted, match="per token"):
                await take(market_clients[transport].stream_quotes(["GBPUSD"]), 1, timeout=10)
    finally:
        for s in held:
            await s.close()
    await asyncio.sleep(0.5)
    assert len(await take(market_clients["grpc"].stream_quotes(["GBPUSD"]), 1)) == 1  # slots come back


async def test_idle_streams_send_heartbeats(market_clients, stream_settings):
    stream_settings(heartbeat_s=0.2)
    for transport in ("grpc", "rest"):
        stream = market_clients[transport].watch_candles("EURUSD", "D1")  # a D1 bar closes rarely: idle
        assert await stream.open() == 0.2
        beats = 0
        async with asyncio.timeout(5):
            while beats < 3:
                assert await stream.next() == []
                beats += 1
        await stream.close()


async def test_a_coalescing_window_sends_fewer_larger_messages_in_order_with_nothing_lost(market_host, market_clients,
                                                                                       stream_settings):
    # 250 ms at the default 10 quotes/s (a tick every 100 ms): each message carries at least two ticks' quotes.
    stream_settings(coalesce_ms=250)
    for transport in ("grpc", "rest"):
        stream = market_clients[transport].stream_quotes(SYMBOLS)
        await stream.open()
        messages: list[list] = []
        try:
            async with asyncio.timeout(15):
                while sum(map(len, messages)) < 60:
                    if batch := await stream.next():
                        messages.append(batch)
        finally:
            await stream.close()
        quotes = [q for m in messages for q in m]
        first = quotes[0].sequence
        # In order, none skipped or repeated: exactly the generator's quotes from the first one on.
        expected = sorted((q for s in SYMBOLS for q in market_host.impl.quotes.replay(s).quotes(first, first + 20)),
                          key=lambda q: (q.sequence, SYMBOLS.index(q.symbol)))
        assert quotes[:60] == expected
        if transport == "grpc":  # one gRPC message is one batch (SSE events are read as the bytes arrive)
            assert all(len(m) >= 2 * len(SYMBOLS) for m in messages), [len(m) for m in messages]


async def test_one_log_line_per_stream_with_count_and_ending(market_host, market_clients, caplog):
    caplog.set_level(logging.INFO, logger="fxplat.calls")
    head = market_host.impl.quotes.sequence_now()
    # This test's streams carry their own request id: a stream an earlier test closed may log its end meanwhile (the
    # server notices a REST client gone at its next write), and that line is not this test's.
    rid = f"one-line-per-stream-{os.getpid()}"
    token = context.request_id.set(rid)
    try:
        for transport in ("grpc", "rest"):
            await take(market_clients[transport].stream_quotes(["EURUSD"], {"EURUSD": head - 10}), 5)
    finally:
        context.request_id.reset(token)

    def lines() -> list[logging.LogRecord]:
        return [r for r in caplog.records if getattr(r, "stream", False) and r.method == "StreamQuotes"
                and r.request_id == rid]

    async with asyncio.timeout(5):
        while len(lines()) < 2:
            await asyncio.sleep(0.05)
    assert sorted(r.transport for r in lines()) == ["grpc", "rest"]
    for r in lines():
        assert r.code == "CANCELLED" and r.items >= 5 and "went away" in r.ended
    assert not [r for r in caplog.records if r.name == "fxplat.calls" and not getattr(r, "stream", False)
                and r.method == "StreamQuotes"]  # the REST call middleware does not log it a second time
    assert len(lines()) == 2


async def test_streams_end_unavailable_when_the_service_drains(data_dir, auth, factory):
    from adapters.connect import KITS
    from fxplat.catalog import BuildContext, build_host

    host = await build_host("market_analysis", BuildContext(data_dir, auth=auth), "127.0.0.1", 0, 0)
    await host.start()
    try:
        kit = KITS["market_analysis"]
        grpc_stream = kit.grpc_client(factory.channel(host.grpc_target)).stream_quotes(["EURUSD"])
        rest_stream = kit.rest_client(factory.http(host.rest_url)).stream_quotes(["EURUSD"])
        await grpc_stream.open()
        await rest_stream.open()
        stopping = asyncio.create_task(host.stop(grace=5))
        for stream in (grpc_stream, rest_stream):
            with pytest.raises(E.Unavailable) as caught:
                async with asyncio.timeout(5):
                    while True:
                        await stream.next()
            assert caught.value.reason == "SHUTTING_DOWN"
            await stream.close()
        await asyncio.wait_for(stopping, 10)
    finally:
        await host.stop(grace=0)


# --- foreign clients --------------------------------------------------------------------------------------------------

async def test_buf_curl_receives_stream_quotes(market_host, tokens):
    buf = str(BUF) if BUF.exists() else shutil.which("buf")
    if buf is None:
        pytest.skip("buf is not installed: run scripts/install.sh")
    head = market_host.impl.quotes.sequence_now()
    request = {"symbols": ["EURUSD"], "resume_after": [{"symbol": "EURUSD", "sequence": str(head - 20)}]}
    url = f"http://{market_host.grpc_target}/forex.market_analysis.v1.MarketAnalysisService/StreamQuotes"
    proc = await asyncio.create_subprocess_exec(
        buf, "curl", "--protocol", "grpc", "--http2-prior-knowledge", "--data", json.dumps(request),
        "--header", f"authorization: Bearer {tokens()}", url,
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE, start_new_session=True)
    out, quotes = b"", []
    try:
        async with asyncio.timeout(60):
            while len(quotes) < 5:
                chunk = await proc.stdout.read(4096)
                assert chunk, (await proc.stderr.read()).decode()
                out += chunk
                quotes = [q for m in _json_objects(out.decode()) for q in m.get("quotes", [])]
    finally:  # npm's buf is a node launcher with the real binary as its child: end the whole group
        os.killpg(proc.pid, signal.SIGKILL)
        await proc.wait()
    assert [int(q["sequence"]) for q in quotes[:5]] == list(range(head - 19, head - 14))
    expected = market_host.impl.quotes.replay("EURUSD").quotes(head - 19, head - 14)
    assert [q["bid"] for q in quotes[:5]] == [q.bid for q in expected]


def _json_objects(text: str) -> list[dict]:
    """The complete JSON objects in a stream of concatenated ones (buf curl prints one per message)."""
    decoder, out, text = json.JSONDecoder(), [], text.strip()
    while text:
        try:
            obj, end = decoder.raw_decode(text)
        except json.JSONDecodeError:  # the last one, cut where we stopped reading
            break
        out.append(obj)
        text = text[end:].strip()
    return out


async def test_curl_n_receives_the_sse_stream(market_host, tokens):
    head = market_host.impl.quotes.sequence_now()
    url = f"{market_host.rest_url}/v1/quotes/stream?symbols=EURUSD&after=EURUSD:{head - 20}"
    proc = await asyncio.create_subprocess_exec(
        "curl", "-sN", "-H", f"authorization: Bearer {tokens()}", url,
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE)
    out = b""
    try:
        async with asyncio.timeout(30):
            while out.count(b"\n\n") < 5:
                chunk = await proc.stdout.read(4096)
                assert chunk, (await proc.stderr.read()).decode()
                out += chunk
    finally:
        proc.kill()
        await proc.wait()
    events = out.decode().split("\n\n")[:5]
    assert events[0].startswith(f"id: EURUSD:{head - 19}\nevent: quote\ndata: ")
    assert [json.loads(e.split("data: ", 1)[1])["sequence"] for e in events] == list(range(head - 19, head - 14))


async def test_fxplat_watch_json_prints_one_line_per_quote_and_stops_at_count(market_host, tokens, tmp_path):
    import sys

    flags = tmp_path / "flags.yaml"
    flags.write_text("services:\n  market_analysis: {grpc: 100}\n")
    env = {k: v for k, v in os.environ.items() if not k.startswith(("FXPLAT_", "UNLEASH_", "OTEL_"))}
    env.update(FXPLAT_TOKEN=tokens(), FXPLAT_FLAGS=str(flags), FXPLAT_MARKET_ANALYSIS_REST_URL=market_host.rest_url,
               FXPLAT_MARKET_ANALYSIS_GRPC_TARGET=market_host.grpc_target)
    head = market_host.impl.quotes.sequence_now()
    proc = await asyncio.create_subprocess_exec(
        str(Path(sys.executable).with_name("fxplat")), "watch", "EURUSD", "GBPUSD", "--json", "--count", "6",
        "--after", f"EURUSD:{head - 10},GBPUSD:{head - 10}", env=env,
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE)
    out, err = await asyncio.wait_for(proc.communicate(), 90)
    assert proc.returncode == 0, err.decode()
    lines = [json.loads(line) for line in out.decode().splitlines()]
    assert [(q["symbol"], q["sequence"]) for q in lines] == [
        (s, head - 9 + i) for i in range(3) for s in ("EURUSD", "GBPUSD")]
    assert {q["transport"] for q in lines} == {"grpc"}
    expected = market_host.impl.quotes.replay("EURUSD").quotes(head - 9, head - 6)
    assert [q["bid"] for q in lines if q["symbol"] == "EURUSD"] == [q.bid for q in expected]


# --- the benchmark's floor servers ----------------------------------------------------------------------------------

async def test_stream_floors_send_the_same_quotes_as_the_platform_clients_read_them(factory, tmp_path):
    """`fxplat bench --streams` compares the platform with bare servers (fxplat.stream_floor): both floors must carry
    the same quotes per message, in the platform's encodings, readable by the platform's own stream clients."""
    import socket
    import subprocess
    import sys

    from fxplat.stream_floor import tick_quotes
    from services.market_analysis.grpc import MarketAnalysisGrpcClient
    from services.market_analysis.rest import MarketAnalysisRestClient

    expected = tick_quotes(20.0, 4, 100.0)  # 2 quotes per symbol per 100 ms tick
    assert len(expected) == 8
    for transport in ("grpc", "rest"):
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            port = s.getsockname()[1]
        proc = subprocess.Popen([sys.executable, "-m", "fxplat.stream_floor", transport, str(port), "20", "4", "100"],
                                stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        try:
            client = MarketAnalysisGrpcClient(factory.channel(f"127.0.0.1:{port}")) if transport == "grpc" else \
                MarketAnalysisRestClient(factory.http(f"http://127.0.0.1:{port}"))
            async with asyncio.timeout(30):
                while True:  # until the floor listens
                    try:
                        got = await take(client.stream_quotes(["EURUSD"]), 16)
                        break
                    except E.Unavailable:
                        await asyncio.sleep(0.2)
            assert got == expected + expected, transport
        finally:
            proc.terminate()
            try:
                proc.wait(10)
            except subprocess.TimeoutExpired:  # never leave a floor server behind
                proc.kill()
                proc.wait(5)
