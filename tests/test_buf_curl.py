"""A generic gRPC client, knowing nothing of fxplat, calls GetCandles by name through server reflection (`buf curl`,
npm @bufbuild/buf, installed by scripts/install.sh)."""
from __future__ import annotations

import asyncio
import json
import shutil
from datetime import datetime, timezone
from pathlib import Path

import pytest

from services.common.market_types import TimeRange
from services.market_analysis.models import CandlesQuery

ROOT = Path(__file__).resolve().parent.parent
BUF = ROOT / "node_modules" / ".bin" / "buf"


@pytest.fixture(scope="module")
def buf() -> str:
    path = BUF if BUF.exists() else shutil.which("buf")
    if path is None:
        pytest.skip("buf is not installed: run scripts/install.sh (npm install of @bufbuild/buf) to run this test")
    return str(path)


async def test_buf_curl_get_candles_through_reflection(buf, market_host, market_clients, tokens):
    request = {"symbol": "EURUSD", "timeframe": "TIMEFRAME_H1", "range": {"start": "2025-03-03T00:00:00Z"}, "limit": 3}
    url = f"http://{market_host.grpc_target}/forex.market_analysis.v1.MarketAnalysisService/GetCandles"
    proc = await asyncio.create_subprocess_exec(
        buf, "curl", "--protocol", "grpc", "--http2-prior-knowledge", "--data", json.dumps(request),
        "--header", f"authorization: Bearer {tokens()}", url,  # reflection is open; GetCandles needs the token
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE)
    out, err = await asyncio.wait_for(proc.communicate(), 60)
    assert proc.returncode == 0, err.decode()
    body = json.loads(out)
    march = TimeRange(datetime(2025, 3, 3, tzinfo=timezone.utc))
    expected = (await market_clients["domain"].get_candles(CandlesQuery("EURUSD", range=march, limit=3))).series
    assert body["candles"]["close"] == expected.close.tolist()
    assert [int(t) for t in body["candles"]["time"]] == expected.time.tolist()
    assert body["nextPageToken"]

