"""Load through the market adapter for the scale-out test, run as its own process (inside a mount namespace whose
/etc/hosts the test controls): `python gray_load.py TARGET REST_URL SECONDS FLAGS`; prints one JSON line at the end
with the calls made, the failures and how many were served over gRPC."""
from __future__ import annotations

import asyncio
import json
import sys

from adapters.connect import connect
from adapters.flags import Flags
from gray import Load
from services.market_analysis.models import CandlesQuery
from transport.client_factory import ClientFactory
from transport.config import Endpoint


async def main(target: str, rest_url: str, seconds: float, flags_path: str) -> None:
    flags = Flags(flags_path, unleash_url="")
    try:
        async with ClientFactory() as factory:
            adapter = connect("market_analysis", Endpoint(rest_url, target), factory=factory, flags=flags,
                              caller="gray-scale")
            load = Load().start(lambda: adapter.get_candles(CandlesQuery("EURUSD", limit=20)))
            await asyncio.sleep(seconds)
            await load.stop()
    finally:
        flags.close()
    print(json.dumps({"calls": len(load.calls), "failures": [repr(f) for f in load.failures[:5]],
                      "failed": len(load.failures), "grpc": sum(c[2] == "grpc" for c in load.calls)}), flush=True)


if __name__ == "__main__":
    asyncio.run(main(sys.argv[1], sys.argv[2], float(sys.argv[3]), sys.argv[4]))
