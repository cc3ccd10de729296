"""Schema creation and upgrades (services.common.schema, `fxplat db upgrade`) and the worker setting: safe from several
processes at once, and a store made by an older release is brought up to date without losing data."""
from __future__ import annotations

import asyncio
import os
import sqlite3
import sys

import pytest

from services.common.market_types import Timeframe
from services.market_analysis.store import ImportedStore, db_path, import_csv
from transport import config

OLD_MARKET_SCHEMA = """
CREATE TABLE candles (symbol TEXT NOT NULL, timeframe TEXT NOT NULL, time INTEGER NOT NULL, open REAL NOT NULL,
    high REAL NOT NULL, low REAL NOT NULL, close REAL NOT NULL, volume REAL NOT NULL,
    PRIMARY KEY (symbol, timeframe, time)) WITHOUT ROWID;
CREATE TABLE imports (symbol TEXT NOT NULL, timeframe TEXT NOT NULL, rows INTEGER NOT NULL, first_time INTEGER NOT NULL,
    last_time INTEGER NOT NULL, digits INTEGER NOT NULL, source TEXT NOT NULL, imported_at INTEGER NOT NULL,
    PRIMARY KEY (symbol, timeframe));
"""


async def _fxplat(*args: str) -> tuple[int, str, str]:
    proc = await asyncio.create_subprocess_exec(sys.executable, "-m", "fxplat", *args,
                                                stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
                                                env={k: v for k, v in os.environ.items() if k != "DATABASE_URL"})
    out, err = await asyncio.wait_for(proc.communicate(), 120)
    return proc.returncode, out.decode(), err.decode()


@pytest.mark.timeout(300)
async def test_db_upgrade_from_several_processes_at_once(tmp_path):
    results = await asyncio.gather(*(_fxplat("db", "upgrade", "--data-dir", str(tmp_path)) for _ in range(4)))
    assert [code for code, _, _ in results] == [0] * 4, [err for _, _, err in results]
    # Exactly one process made each store; the others found it done.
    made = [line.split()[0] for _, out, _ in results for line in out.splitlines() if "->" in line]
    assert sorted(made) == ["analyses", "backtests", "canary_comparisons", "market"]
    with sqlite3.connect(tmp_path / "market.sqlite") as conn:
        assert conn.execute("SELECT component, version FROM fxplat_schema").fetchall() == [("market", 2)]


def test_a_market_store_from_before_revisions_is_upgraded_and_keeps_its_data(tmp_path):
    with sqlite3.connect(db_path(tmp_path)) as conn:
        conn.executescript(OLD_MARKET_SCHEMA)
        conn.execute("INSERT INTO candles VALUES ('OLDUSD', 'H1', 1735689600, 1, 2, 0.5, 1.5, 7)")
        conn.execute("INSERT INTO imports VALUES ('OLDUSD', 'H1', 1, 1735689600, 1735689600, 1, 'old.csv', 0)")
    csv = tmp_path / "new.csv"
    csv.write_text("time,open,high,low,close\n2025-01-01T00:00:00Z,1,2,0.5,1.5\n2025-01-01T01:00:00Z,1,2,0.5,1.5\n")
    import_csv(csv, "NEWUSD", Timeframe.H1, tmp_path)
    store = ImportedStore(tmp_path)
    assert store.symbols() == ["NEWUSD", "OLDUSD"]
    assert store.load("OLDUSD").volume.tolist() == [7.0]
    assert store.timeframes("NEWUSD")[0].revision != 0 and store.timeframes("OLDUSD")[0].revision == 0


@pytest.mark.parametrize("raw", ["0", "65", "two"])
def test_workers_setting_is_checked(monkeypatch, raw):
    monkeypatch.setenv("FXPLAT_WORKERS", raw)
    with pytest.raises(ValueError, match="workers|FXPLAT_WORKERS"):
        config.workers()


async def test_single_process_refuses_several_workers(tmp_path):
    code, _, err = await _fxplat("up", "--single-process", "--workers", "2", "--data-dir", str(tmp_path))
    assert code == 2 and "--workers needs the supervisor" in err
