"""`fxplat db upgrade`: create or upgrade every store's tables up front (services.common.schema), in the database
DATABASE_URL names or, without it, in the SQLite files of the data directory. Services do the same on first use,
under the same lock, so running this beside live replicas is safe; running it first (a deploy step, an init
container) means no replica pays for it during a call."""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from sqlalchemy import create_engine
from sqlalchemy.engine import make_url

from services.common import schema, storage


@dataclass(frozen=True)
class Upgraded:
    component: str
    database: str  # the URL without its password
    before: int
    after: int


def _components() -> list[tuple[schema.Component, str]]:
    """Every store: its schema component and its SQLite file name (used without DATABASE_URL)."""
    from adapters import canary
    from services.analysis_coordinator import store as analyses
    from services.backtesting import store as backtests
    from services.market_analysis import store as market

    return [(schema.component(backtests.metadata), "backtests.sqlite"),
            (schema.component(analyses.metadata), "analyses.sqlite"),
            (schema.component(canary.metadata), "canary.sqlite"),
            (market.SCHEMA, market.DB_FILE)]


def upgrade(data_dir: Path) -> list[Upgraded]:
    done = []
    for component, sqlite_file in _components():
        url = storage.sync_url(storage.database_url(None, data_dir, sqlite_file))
        engine = create_engine(url)
        try:
            with engine.begin() as conn:
                before, after = schema.upgrade(conn, component)
        finally:
            engine.dispose()
        done.append(Upgraded(component.name, make_url(url).render_as_string(hide_password=True), before, after))
    return done
