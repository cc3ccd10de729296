"""Bad input gets the same typed error, naming the field, in-process, over gRPC and over REST; never a 500."""
from __future__ import annotations

import dataclasses
from datetime import datetime
from uuid import uuid4

import pytest
import test_backtest_parity

from services.backtesting.models import BacktestRequest, ListBacktestsQuery
from services.common.storage import IDEMPOTENCY_KEY_REUSED
from services.common.errors import FailedPrecondition, InvalidArgument, NotFound
from services.common.market_types import TimeRange


WIRES = ("domain", "grpc", "rest")
BASE = BacktestRequest("EURUSD", "sma_cross", {"fast": 5, "slow": 20}, range=test_backtest_parity.MARCH)
KEY = uuid4().hex  # stored with BASE by the `key_in_use` fixture
NO_SUCH_ID = "0" * 32


def run(**changes):
    return lambda c: c.run_backtest(dataclasses.replace(BASE, **changes))


CASES = [  # name, call, error type, field, reason (None: the error type's default)
    ("unknown symbol", run(symbol="XXXYYY"), NotFound, "symbol", None),
    ("unknown strategy", run(strategy="martingale"), InvalidArgument, "strategy", None),
    ("unknown parameter", run(params={"fats": 3}), InvalidArgument, "params.fats", None),
    ("fast >= slow", run(params={"fast": 20, "slow": 10}), InvalidArgument, "params.fast", None),
    ("period < 2", run(strategy="rsi_reversion", params={"period": 1}), InvalidArgument, "params.period", None),
    ("negative spread", run(spread_pips=-0.5), InvalidArgument, "spread_pips", None),
    ("empty range", run(range=TimeRange(datetime(2030, 1, 1), datetime(2030, 2, 1))), InvalidArgument, "range", None),
    ("key reused", run(idempotency_key=KEY, params={"fast": 6, "slow": 20}), FailedPrecondition, None,
     IDEMPOTENCY_KEY_REUSED),
    ("get unknown id", lambda c: c.get_backtest(NO_SUCH_ID), NotFound, "id", None),
    ("delete unknown id", lambda c: c.delete_backtest(NO_SUCH_ID), NotFound, "id", None),
    ("get empty id", lambda c: c.get_backtest(""), NotFound, "id", None),
    ("delete empty id", lambda c: c.delete_backtest(""), NotFound, "id", None),
    ("bad page token", lambda c: c.list_backtests(ListBacktestsQuery(page_token="garbage!")), InvalidArgument,
     "page_token", None),
    ("page size 101", lambda c: c.list_backtests(ListBacktestsQuery(page_size=101)), InvalidArgument, "page_size",
     None),
]


@pytest.fixture(scope="module")
async def key_in_use(backtesting_clients):
    await backtesting_clients["domain"].run_backtest(dataclasses.replace(BASE, idempotency_key=KEY))


@pytest.mark.parametrize("wire", WIRES)
@pytest.mark.parametrize("case", CASES, ids=[c[0] for c in CASES])
async def test_same_error_on_every_transport(backtesting_clients, key_in_use, wire, case):
    _, call, error_type, field, reason = case
    with pytest.raises(error_type) as raised:
        await call(backtesting_clients[wire])
    assert raised.value.field == field
    assert raised.value.reason == (reason or error_type.default_reason)
    with pytest.raises(error_type) as from_domain:
        await call(backtesting_clients["domain"])
    assert raised.value == from_domain.value  # same message, violations and reason


async def test_rest_body_of_the_wrong_type_is_a_problem_not_a_500(backtesting_host, factory):
    http = factory.http(backtesting_host.rest_url)
    resp = await http.post("/v1/backtests", json={"symbol": "EURUSD", "strategy": "sma_cross",
                                                  "params": {"fast": "ten"}})
    assert resp.status_code == 400
    assert resp.headers["content-type"] == "application/problem+json"
    body = resp.json()
    assert body["code"] == "INVALID_ARGUMENT" and body["field_violations"][0]["field"] == "params.fast"
