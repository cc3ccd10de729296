"""The `fxplat` command line."""
from __future__ import annotations

import asyncio
import logging
import sys
from pathlib import Path
from typing import Annotated, Optional

import typer

from fxplat import config

app = typer.Typer(help="fxplat: Forex analysis services on REST and gRPC, with a feature-flagged migration layer.",
                  no_args_is_help=True, pretty_exceptions_enable=False, add_completion=False)
data_app = typer.Typer(help="Manage market data.", no_args_is_help=True)
app.add_typer(data_app, name="data")

DataDir = Annotated[Optional[Path], typer.Option("--data-dir", envvar="FXPLAT_DATA_DIR",
                                                 help="Data directory (default ~/.local/share/fxplat).")]


def _fail(message: str, code: int = 2) -> None:
    typer.secho(f"error: {message}", fg="red", err=True)
    raise typer.Exit(code)


def _logging(verbose: bool = False) -> None:
    logging.basicConfig(level=logging.DEBUG if verbose else logging.INFO, stream=sys.stderr,
                        format="%(asctime)s %(levelname)-5s %(name)s: %(message)s", datefmt="%H:%M:%S")


@app.command()
def up(
    service: Annotated[Optional[list[str]], typer.Option("--service", "-s", help="Start only this service (repeatable).")] = None,
    host: Annotated[str, typer.Option(envvar="FXPLAT_HOST", help="Interface to listen on.")] = config.DEFAULT_HOST,
    rest_port: Annotated[Optional[int], typer.Option(help="REST port (with one --service).")] = None,
    grpc_port: Annotated[Optional[int], typer.Option(help="gRPC port (with one --service).")] = None,
    no_grpc: Annotated[bool, typer.Option("--no-grpc", help="Serve REST only, as before the gRPC server ships.")] = False,
    data_dir: DataDir = None,
    verbose: Annotated[bool, typer.Option("--verbose", "-v")] = False,
) -> None:
    """Start the services (all that exist, or --service NAME), each on REST and gRPC. Ctrl-C stops cleanly."""
    from fxplat import runner
    from fxplat.catalog import CATALOG

    names = service or list(CATALOG)
    unknown = [n for n in names if n not in CATALOG]
    if unknown:
        _fail(f"unknown service {', '.join(unknown)}; available: {', '.join(CATALOG)}")
    if (rest_port or grpc_port) and len(names) != 1:
        _fail("--rest-port/--grpc-port need exactly one --service")
    ports = {names[0]: (rest_port or config.ports(names[0])[0], grpc_port or config.ports(names[0])[1])} \
        if (rest_port or grpc_port) else None
    _logging(verbose)
    try:
        asyncio.run(runner.serve(names, host=host, data_dir=config.data_dir(data_dir), grpc_enabled=not no_grpc,
                                 ports=ports))
    except OSError as exc:
        _fail(str(exc))


@data_app.command("import")
def data_import(
    file: Annotated[Path, typer.Argument(help="CSV with a header: time/date/datetime/timestamp, open, high, low, close[, volume].")],
    symbol: Annotated[str, typer.Option("--symbol", help="Symbol the file holds, e.g. EURUSD.")],
    timeframe: Annotated[Optional[str], typer.Option("--timeframe", help="M1..D1; inferred from the times if omitted.")] = None,
    data_dir: DataDir = None,
) -> None:
    """Import OHLCV bars from a CSV file; they take precedence over the synthetic data for that symbol."""
    from services.common.errors import DomainError
    from services.common.market_types import Timeframe
    from services.market_analysis.store import import_csv

    if not file.is_file():
        _fail(f"no such file: {file}")
    try:
        report = import_csv(file, symbol, Timeframe.parse(timeframe, "--timeframe") if timeframe else None,
                            config.data_dir(data_dir))
    except DomainError as exc:
        _fail(exc.message)
    typer.echo(f"imported {report.rows} {report.timeframe.value} bars of {report.symbol} "
               f"({report.first_time:%Y-%m-%d %H:%M} .. {report.last_time:%Y-%m-%d %H:%M} UTC)"
               + (f", replacing {report.replaced_rows}" if report.replaced_rows else ""))


def main() -> None:  # pragma: no cover
    app()
