"""`fxplat watch`: live quotes through the streaming adapter, as a terminal table (rich) or as JSON lines.

The table shows, per symbol, the latest bid/ask/mid, spread in pips, sequence and market time, and below it the
transport carrying the stream and every failover (gRPC -> REST, a drained replica, ...). `--json` prints one line per
quote (with the transport that carried it) and failovers on stderr. `--count` / `--duration` end the watch, for
scripts.
"""
from __future__ import annotations

import asyncio
import json
import sys
import time
from datetime import datetime, timezone
from typing import Any

from adapters.connect import connect
from adapters.streaming import Failover
from fxplat.credentials import client_factory
from services.market_analysis.rest import parse_resume_token
from transport import config


def _iso(unix: float) -> str:
    return datetime.fromtimestamp(unix, timezone.utc).isoformat(timespec="milliseconds").replace("+00:00", "Z")


class _Board:
    """What the live table shows."""

    def __init__(self, symbols: list[str]) -> None:
        self.symbols = symbols
        self.latest: dict[str, Any] = {}
        self.counts = dict.fromkeys(symbols, 0)
        self.failovers: list[Failover] = []
        self.transport = ""
        self.started = time.monotonic()

    def render(self):
        from rich.console import Group
        from rich.table import Table
        from rich.text import Text

        from services.market_analysis.synthetic import SYMBOLS

        table = Table(title="fxplat watch", caption="Ctrl-C to stop")
        for name, justify in (("symbol", "left"), ("bid", "right"), ("ask", "right"), ("mid", "right"),
                              ("spread (pips)", "right"), ("sequence", "right"), ("market time", "left"),
                              ("quotes", "right")):
            table.add_column(name, justify=justify)
        for s in self.symbols:
            q = self.latest.get(s)
            if q is None:
                table.add_row(s, "-", "-", "-", "-", "-", "-", "0")
                continue
            pip = SYMBOLS[s].pip_size if s in SYMBOLS else (0.01 if s.endswith("JPY") else 0.0001)
            table.add_row(s, f"{q.bid:g}", f"{q.ask:g}", f"{q.mid:g}", f"{(q.ask - q.bid) / pip:.1f}",
                          str(q.sequence), _iso(q.time), str(self.counts[s]))
        lines = [Text.assemble(("transport: ", "bold"), (self.transport or "connecting", "cyan"),
                               f"   up {time.monotonic() - self.started:.0f} s")]
        for f in self.failovers[-5:]:
            lines.append(Text(f"{_iso(f.at)}  {f.source} -> {f.target} ({f.reason}), resumed after {f.resumed_after}",
                              style="yellow"))
        return Group(table, *lines)


async def run(symbols: list[str], *, flags, transport: str, as_json: bool, count: int | None,
              duration: float | None, after: str = "") -> int:
    """Watch until `count` quotes or `duration` seconds (either may be None: no limit); returns quotes received."""
    symbols = [s.strip().upper() for s in symbols]
    positions = parse_resume_token(after, "--after") if after else None
    board = _Board(symbols)

    def failed_over(f: Failover) -> None:
        board.failovers.append(f)
        if as_json:
            print(f"failover: {f.source} -> {f.target} ({f.reason}), resumed after {f.resumed_after}",
                  file=sys.stderr, flush=True)

    received = 0
    async with client_factory() as factory:
        adapter = connect("market_analysis", config.endpoint("market_analysis"), factory=factory, flags=flags,
                          caller="cli", force=None if transport == "auto" else transport)
        stream = adapter.stream_quotes(symbols, positions, on_failover=failed_over)
        live = None
        if not as_json:
            from rich.live import Live

            live = Live(board.render(), refresh_per_second=4, transient=False)
            live.start()
        try:
            async with asyncio.timeout(duration), stream:
                async for q in stream:
                    received += 1
                    if as_json:
                        print(json.dumps({"symbol": q.symbol, "sequence": q.sequence, "time": _iso(q.time),
                                          "bid": q.bid, "ask": q.ask, "mid": q.mid, "transport": stream.transport}),
                              flush=True)
                    else:
                        board.latest[q.symbol] = q
                        board.counts[q.symbol] += 1
                        board.transport = stream.transport
                        live.update(board.render())
                    if count is not None and received >= count:
                        break
        except TimeoutError:
            pass  # --duration elapsed
        finally:
            if live is not None:
                live.update(board.render())
                live.stop()
    return received
