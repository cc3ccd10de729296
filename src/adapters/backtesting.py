"""Backtesting through the flags: implements the Backtesting interface over whichever transport each call gets."""
from __future__ import annotations

import dataclasses
from uuid import uuid4

from adapters.core import FlaggedCaller, MethodPolicy
from services.backtesting.models import Backtest, Backtesting, BacktestPage, BacktestRequest, ListBacktestsQuery

POLICIES = {
    # A write, never shadowed; safe to retry and to replay over REST because run_backtest always sends a key.
    "RunBacktest": MethodPolicy(idempotent=True, read=False, kind="compute"),
    "GetBacktest": MethodPolicy(idempotent=True, read=True),
    "ListBacktests": MethodPolicy(idempotent=True, read=True),
    "DeleteBacktest": MethodPolicy(idempotent=False, read=False),
}


class BacktestingAdapter:
    def __init__(self, caller: FlaggedCaller[Backtesting]) -> None:
        self.caller = caller

    async def run_backtest(self, request: BacktestRequest) -> Backtest:
        # The key is chosen once, before routing: the gRPC attempt, its REST fallback and the REST retries all carry
        # it, so a run that was stored but whose answer was lost is returned from the store, never stored twice.
        if not request.idempotency_key:
            request = dataclasses.replace(request, idempotency_key=uuid4().hex)
        return await self.caller.call("RunBacktest", "run_backtest", request)

    async def get_backtest(self, backtest_id: str) -> Backtest:
        return await self.caller.call("GetBacktest", "get_backtest", backtest_id)

    async def list_backtests(self, query: ListBacktestsQuery) -> BacktestPage:
        return await self.caller.call("ListBacktests", "list_backtests", query)

    async def delete_backtest(self, backtest_id: str) -> None:
        await self.caller.call("DeleteBacktest", "delete_backtest", backtest_id)
