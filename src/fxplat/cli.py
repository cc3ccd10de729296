"""The `fxplat` command line."""
from __future__ import annotations

import asyncio
import json
import os
from datetime import datetime
from pathlib import Path
from typing import Annotated, Optional

import typer

from transport import config

app = typer.Typer(help="fxplat: Forex analysis services on REST and gRPC, with a feature-flagged migration layer.",
                  no_args_is_help=True, pretty_exceptions_enable=False, add_completion=False)
data_app = typer.Typer(help="Manage market data.", no_args_is_help=True)
app.add_typer(data_app, name="data")
flags_app = typer.Typer(help="Show and edit the transport flags (flags.yaml; running services follow within ~1 s).",
                        no_args_is_help=True)
app.add_typer(flags_app, name="flags")
db_app = typer.Typer(help="The stores' database: DATABASE_URL (PostgreSQL), else SQLite files in the data directory.",
                      no_args_is_help=True)
app.add_typer(db_app, name="db")
canary_app = typer.Typer(help="Compare the transports on live traffic (shadow calls) and decide a rollout.",
                         no_args_is_help=True)
app.add_typer(canary_app, name="canary")

DataDir = Annotated[Optional[Path], typer.Option("--data-dir", envvar="FXPLAT_DATA_DIR",
                                                 help="Data directory (default ~/.local/share/fxplat).")]


def _fail(message: str, code: int = 2) -> None:
    typer.secho(f"error: {message}", fg="red", err=True)
    raise typer.Exit(code)


def _fail_domain(exc) -> None:
    """A service's typed error as one readable message (plus each bad field); exit 2 for bad input, 1 otherwise."""
    where = f" [{exc.field}]" if exc.field else ""
    details = "".join(f"\n  {v.field}: {v.description}" for v in exc.violations[1:])
    if exc.code == "UNAUTHENTICATED":
        details += ("\n  set FXPLAT_TOKEN (`fxplat token --scope ...`); in dev mode the CLI mints one from the data "
                    "directory of `fxplat up` (FXPLAT_DATA_DIR)")
    _fail(f"{exc.code}{where}: {exc.message}{details}", code=2 if exc.code in ("INVALID_ARGUMENT", "NOT_FOUND") else 1)


def _served(record) -> None:
    """On stderr: which transport served the call, after any fallback."""
    if record is None:
        return
    note = f" (fell back from gRPC: {record.fallback_reason})" if record.fell_back else ""
    typer.secho(f"served by {record.transport}{note} in {record.latency_s * 1000:.1f} ms, {record.attempts} attempt(s)",
                err=True, fg="cyan")


def _observability(log_format: str, verbose: bool, names: list[str]) -> None:
    """Logs (one line per served call) and tracing (off unless FXPLAT_OTEL_EXPORTER says console or otlp)."""
    from transport import logs, tracing

    try:
        logs.setup(log_format, verbose=verbose)
        tracing.configure(service_name=f"fxplat.{names[0]}" if len(names) == 1 else "fxplat")
    except ValueError as exc:
        _fail(str(exc))


FlagsOpt = Annotated[Optional[Path], typer.Option("--flags", envvar="FXPLAT_FLAGS",
                                                  help="Flags file (default ./flags.yaml).")]


def _flags(path: Optional[Path]):
    from adapters.flag_schema import FlagsError
    from adapters.flags import Flags

    try:
        evaluator = Flags(path)
    except FlagsError as exc:
        _fail(str(exc))
    if evaluator.from_server:
        evaluator.start()  # decide from the server's flags (its first fetch), not from the bootstrap file
    return evaluator


@app.command()
def up(
    service: Annotated[Optional[list[str]], typer.Option("--service", "-s", help="Start only this service (repeatable).")] = None,
    host: Annotated[str, typer.Option(envvar="FXPLAT_HOST", help="Interface to listen on.")] = config.DEFAULT_HOST,
    rest_port: Annotated[Optional[int], typer.Option(help="REST port (with one --service).")] = None,
    grpc_port: Annotated[Optional[int], typer.Option(help="gRPC port (with one --service).")] = None,
    no_grpc: Annotated[bool, typer.Option("--no-grpc", help="Serve REST only, as before the gRPC server ships.")] = False,
    data_dir: DataDir = None,
    flags: FlagsOpt = None,
    auth: Annotated[Optional[str], typer.Option(envvar="FXPLAT_AUTH", show_default="dev",
                                                help="dev (a generated secret), on or off (no checks at all).")] = None,
    log_format: Annotated[str, typer.Option("--log-format", envvar="FXPLAT_LOG_FORMAT",
                                            help="json, console, or auto: console on a terminal, else json.")] = "auto",
    verbose: Annotated[bool, typer.Option("--verbose", "-v")] = False,
    # the drain on SIGTERM (transport.config)
    drain_delay: Annotated[Optional[float], typer.Option(
        "--drain-delay", help="On SIGTERM: seconds to keep serving while reporting not ready / NOT_SERVING, for load "
        "balancers to notice (FXPLAT_DRAIN_DELAY_S; default 0).", show_default=False)] = None,
    grace: Annotated[Optional[float], typer.Option(
        "--grace", help="Then: seconds calls in flight get to finish while new ones are refused (FXPLAT_GRACE_S; "
        "default 5).", show_default=False)] = None,
    # processes (fxplat.supervisor)
    workers: Annotated[Optional[int], typer.Option(
        "--workers", envvar="FXPLAT_WORKERS", show_default="1",
        help="Processes per service, sharing its ports (SO_REUSEPORT): use more cores.")] = None,
    single_process: Annotated[bool, typer.Option(
        "--single-process", help="Every service in this one process and event loop (tests, debugging).")] = False,
) -> None:
    """Start the services (all that exist, or --service NAME), each on REST and gRPC, each in processes of its own
    (a supervisor restarts any that dies). Ctrl-C / SIGTERM drains and stops cleanly (exit 0). Service processes run
    on uvloop when it is installed; FXPLAT_EVENT_LOOP=asyncio runs them on the standard library's loop."""
    from transport.auth import AuthConfig

    names = service or list(config.SERVICES)  # (the supervisor never loads the services: no catalog here)
    unknown = [n for n in names if n not in config.SERVICES]
    if unknown:
        _fail(f"unknown service {', '.join(unknown)}; available: {', '.join(config.SERVICES)}")
    explicit = rest_port is not None or grpc_port is not None  # 0 asks for a free port
    if explicit and len(names) != 1:
        _fail("--rest-port/--grpc-port need exactly one --service")
    names = [n for n in config.SERVICES if n in names]  # dependencies first
    defaults = config.ports(names[0])
    ports = {names[0]: (defaults[0] if rest_port is None else rest_port,
                        defaults[1] if grpc_port is None else grpc_port)} if explicit else None
    _observability(log_format, verbose, names)
    path = config.data_dir(data_dir)
    try:
        # In dev mode this writes the secret file once, before any child reads it.
        auth_config, tls = AuthConfig.from_env(auth).for_serving(path), config.server_tls()
        n_workers = config.workers(workers)
        drain_delay = config.drain_delay_s() if drain_delay is None else drain_delay
        grace = config.grace_s() if grace is None else grace
        config.max_connection_age_s()
        config.event_loop()
    except ValueError as exc:  # auth, TLS, workers, drain or loop settings misconfigured: say what to set
        _fail(str(exc))
    if drain_delay < 0 or grace < 0:
        _fail("--drain-delay and --grace must be >= 0 seconds")
    if auth_config.mode == "dev" and auth_config.secret_file and os.environ.get("DATABASE_URL"):
        typer.secho(f"warning: DATABASE_URL says replicas share state, but dev auth signs with {auth_config.secret_file}, "
                    "private to this data directory: give every replica the same FXPLAT_AUTH_SECRET", fg="yellow",
                    err=True)
    if single_process and n_workers > 1:
        _fail("--workers needs the supervisor: drop --single-process")
    if not single_process:
        # Children (and the supervisor's own kill limit) read the drain settings from the environment.
        os.environ["FXPLAT_DRAIN_DELAY_S"], os.environ["FXPLAT_GRACE_S"] = str(drain_delay), str(grace)
        from fxplat.supervisor import Supervisor, run as supervise

        child_args = ["--data-dir", str(path), "--log-format", log_format] + (["--flags", str(flags)] if flags else []) \
            + (["--auth", auth] if auth else []) + (["--verbose"] if verbose else [])
        all_ports = {n: config.ports(n) for n in names} | (ports or {})
        try:
            status = supervise(Supervisor(names, host, all_ports, workers=n_workers, grpc_enabled=not no_grpc,
                                          child_args=child_args))
        except OSError as exc:
            _fail(str(exc))
        raise typer.Exit(status)
    from fxplat import runner
    from transport import allocator, event_loop

    allocator.tune()  # large pages without a page fault per byte (see transport.allocator)
    try:
        event_loop.run(runner.serve(names, host=host, data_dir=path, flags=_flags(flags), auth=auth_config, tls=tls,
                                    grpc_enabled=not no_grpc, ports=ports, grace=grace, drain_delay=drain_delay))
    except OSError as exc:
        _fail(str(exc))


@app.command()
def token(
    scope: Annotated[list[str], typer.Option("--scope", help="A scope to grant (repeatable), e.g. market:read.",
                                             show_default=False)],
    ttl: Annotated[str, typer.Option(help="Lifetime: 30s, 15m, 1h, 7d.")] = "1h",
    sub: Annotated[str, typer.Option(help="Who the token is for (the `sub` claim).")] = "dev",
    data_dir: DataDir = None,
) -> None:
    """Mint a bearer token and print it: signed with FXPLAT_AUTH_SECRET or FXPLAT_AUTH_PRIVATE_KEY, or in dev mode
    with the secret `fxplat up` keeps in the data directory.
    Use: curl -H "authorization: Bearer $(fxplat token --scope market:read)" ..."""
    from fxplat.credentials import mint

    try:
        typer.echo(mint(scope, ttl=ttl, sub=sub, data_dir=data_dir))
    except ValueError as exc:
        _fail(str(exc))


@data_app.command("import")
def data_import(
    file: Annotated[Path, typer.Argument(help="CSV of bars: time (or date, time), open, high, low, close[, volume]; "
                                              "header optional; , ; or tab; pandas and MetaTrader exports as they are.")],
    symbol: Annotated[Optional[str], typer.Option("--symbol", help="Symbol the file holds, e.g. EURUSD (needed unless "
                                                                "the file has a ticker/symbol column).")] = None,
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


@app.command("call")
def call_cmd(
    service: Annotated[str, typer.Argument(help="e.g. market_analysis")],
    method: Annotated[str, typer.Argument(help="gRPC method name, e.g. GetCandles")],
    data: Annotated[str, typer.Option("--data", "-d", help="Request as protobuf JSON, e.g. '{\"symbol\": \"EURUSD\"}'.")] = "{}",
    transport: Annotated[str, typer.Option(help="auto (by flags), grpc or rest.")] = "auto",
    flags: FlagsOpt = None,
) -> None:
    """Call any method through the flagged adapter: the JSON result on stdout; on stderr, who served it."""
    from fxplat import calls
    from services.common.errors import DomainError

    if transport not in ("auto", "grpc", "rest"):
        _fail(f"--transport must be auto, grpc or rest, not {transport!r}")
    evaluator = _flags(flags)
    try:
        result, record = asyncio.run(calls.call(service, method, data, transport=transport, flags=evaluator))
    except DomainError as exc:
        _fail_domain(exc)
    finally:
        evaluator.close()
    typer.echo(calls.to_json(result))
    _served(record)


@app.command()
def analyze(
    symbols: Annotated[list[str], typer.Argument(help="Symbols to analyse (1-6), e.g. EURUSD GBPUSD.", show_default=False)],
    timeframe: Annotated[str, typer.Option("--timeframe", "-t", help="Bar length, M1..D1.")] = "H1",
    strategy: Annotated[str, typer.Option(help="sma_cross, rsi_reversion or bollinger_breakout.")] = "sma_cross",
    param: Annotated[Optional[list[str]], typer.Option("--param", "-p", help="Strategy parameter NAME=NUMBER (repeatable), e.g. fast=10.")] = None,
    start: Annotated[Optional[datetime], typer.Option(help="Range start (inclusive, UTC), e.g. 2025-03-01.")] = None,
    end: Annotated[Optional[datetime], typer.Option(help="Range end (exclusive, UTC).")] = None,
    idempotency_key: Annotated[str, typer.Option(help="Retry-safe key: the same key returns the stored analysis.")] = "",
    as_json: Annotated[bool, typer.Option("--json", help="Print the report as JSON (the REST shape).")] = False,
    transport: Annotated[str, typer.Option(help="auto (by flags), grpc or rest: how to reach the coordinator.")] = "auto",
    flags: FlagsOpt = None,
) -> None:
    """Run an analysis through the Analysis Coordinator (market summaries, causality, correlations and a backtest per
    symbol, fanned out concurrently) and print the report, with which transport served every component call."""
    from rich.console import Console

    from fxplat import analyze as an
    from services.analysis_coordinator.models import AnalysisRequest
    from services.analysis_coordinator.rest import analysis_json
    from services.common.errors import DomainError
    from services.common.market_types import TimeRange, Timeframe

    if transport not in ("auto", "grpc", "rest"):
        _fail(f"--transport must be auto, grpc or rest, not {transport!r}")
    evaluator = _flags(flags)
    try:
        request = AnalysisRequest(tuple(symbols), Timeframe.parse(timeframe, "--timeframe"), TimeRange(start, end),
                                  strategy, an.parse_params(param or []), idempotency_key)
        with Console(stderr=True).status(f"analysing {', '.join(symbols)} ...", spinner="dots"):
            analysis, record = asyncio.run(an.run(request, flags=evaluator, transport=transport))
    except DomainError as exc:
        _fail_domain(exc)
    finally:
        evaluator.close()
    if as_json:
        typer.echo(json.dumps(analysis_json(analysis), indent=2))
    else:
        an.print_report(analysis)
    _served(record)


# --- streams (issue 17): fxplat watch ------------------------------------------------------------------------------

@app.command()
def watch(
    symbols: Annotated[list[str], typer.Argument(help="Symbols to watch (1-20), e.g. EURUSD GBPUSD.", show_default=False)],
    as_json: Annotated[bool, typer.Option("--json", help="One JSON line per quote instead of the live table.")] = False,
    count: Annotated[Optional[int], typer.Option("--count", "-n", min=1, help="Stop after this many quotes.")] = None,
    duration: Annotated[Optional[float], typer.Option("--duration", min=0.1, help="Stop after this many seconds.")] = None,
    after: Annotated[str, typer.Option(help="Resume after SYMBOL:SEQUENCE[,...] (an SSE event id).")] = "",
    transport: Annotated[str, typer.Option(help="auto (by flags), grpc or rest.")] = "auto",
    flags: FlagsOpt = None,
) -> None:
    """Watch live quotes (StreamQuotes) through the streaming adapter: a live table with the transport in use and
    any failover, or --json lines. The stream survives the gRPC path failing (it resumes over SSE, no gap)."""
    from fxplat import watch as watcher
    from services.common.errors import DomainError

    if transport not in ("auto", "grpc", "rest"):
        _fail(f"--transport must be auto, grpc or rest, not {transport!r}")
    evaluator = _flags(flags)
    try:
        asyncio.run(watcher.run(symbols, flags=evaluator, transport=transport, as_json=as_json, count=count,
                                duration=duration, after=after))
    except DomainError as exc:
        _fail_domain(exc)
    except KeyboardInterrupt:
        raise typer.Exit(130)
    finally:
        evaluator.close()


@app.command()
def status(
    as_json: Annotated[bool, typer.Option("--json", help="Machine-readable output.")] = False,
    flags: FlagsOpt = None,
) -> None:
    """Each service: its endpoints and whether they answer, its flag state, and its gRPC breaker as seen from here."""
    from rich.console import Console
    from rich.table import Table

    from fxplat import calls

    evaluator = _flags(flags)
    try:
        report = asyncio.run(calls.status(evaluator))
    finally:
        evaluator.close()
    if as_json:
        typer.echo(calls.to_json(report))
        return
    table = Table(title=f"fxplat status — flags from {report['flags_source']}"
                        + ("  [bold red]KILL SWITCH ON: all REST[/]" if report["kill_switch"] else ""))
    for col in ("service", "REST", "gRPC", "gRPC share", "overrides", "shadow", "breaker"):
        table.add_column(col)
    for name, s in report["services"].items():
        overrides = ", ".join(f"{m}={p}%" for m, p in s["method_overrides"].items()) or "-"
        # resilience (issue 11): each caller's breaker towards this service, with how often it opened
        held = "\n".join(f"{caller}: {b.get('state', '?')} ({b['trips']} trips)" for caller, b in s["breakers"].items())
        c = s["breaker_config"]
        rule = (f"\nopens at {c['failure_rate']:.0%} failed or {c['slow_rate']:.0%} slow of >= {c['min_calls']} in "
                f"{c['window_size']}{' s' if c['window'] == 'time' else ' calls'}")
        table.add_row(name, f"{s['rest_url']} {s['rest']}", f"{s['grpc_target']} {s['grpc']}",
                      f"{s['grpc_percent']}% ({s['stickiness']})", overrides, f"{s['shadow_percent']}%",
                      (held or s["breaker"]) + rule)
    Console().print(table)
    if report["flags_error"]:
        typer.secho(f"flags: last edit rejected: {report['flags_error']}", fg="yellow", err=True)


@app.command()
def bench(
    json_file: Annotated[Optional[Path], typer.Option("--json", help="Also write the rows and ratios to this file.")] = None,
    quick: Annotated[bool, typer.Option("--quick", help="Fewer sizes and iterations (a smoke run, ~40 s).")] = False,
    streams: Annotated[bool, typer.Option("--streams", help="Instead: live quotes, gRPC stream vs SSE, 1 and 100 "
                                                            "subscribers: quotes/s and server CPU per quote.")] = False,
    # worker processes (fxplat.bench_workers)
    workers: Annotated[bool, typer.Option(
        "--workers", help="Instead: throughput of fxplat up --workers 2 vs 1 on gRPC and REST, with server CPU per "
                          "call and the load generator's CPU (~2 min).")] = False,
) -> None:
    """Benchmark REST vs gRPC through the adapters, and the adapter vs a raw stub, against a Market Analysis server
    started in a separate process, beside bare, route and domain floors and the analysis fan-out; prints p50/p99,
    16-caller throughput and the ratios with their targets and ceilings (~3 min)."""
    if streams:  # issue 17: src/fxplat/bench_streams.py
        from fxplat.bench_streams import run_stream_bench

        run_stream_bench(json_path=json_file, quick=quick, log=lambda line: typer.echo(line, err=True))
        return
    if workers:
        from fxplat.bench_workers import run_workers_bench

        run_workers_bench(json_path=json_file, quick=quick, log=lambda line: typer.echo(line, err=True))
        return
    from fxplat.bench import run_bench

    run_bench(json_path=json_file, quick=quick, log=lambda line: typer.echo(line, err=True))


@flags_app.command("show")
def flags_show(
    as_json: Annotated[bool, typer.Option("--json", help="Machine-readable output.")] = False,
    flags: FlagsOpt = None,
) -> None:
    """The flags in force and where they come from (a file, or an Unleash server when UNLEASH_URL is set)."""
    from rich.console import Console
    from rich.table import Table

    evaluator = _flags(flags)
    try:
        evaluator.start()  # with a server: the first fetch, so what is shown is what services see
        snap = evaluator.snapshot()
    finally:
        evaluator.close()
    shown = {"source": snap.source, "loaded_at": snap.loaded_at.isoformat(), "kill_switch": snap.flags.kill_switch,
             "services": {name: svc.model_dump() for name, svc in snap.flags.services.items()}}
    if as_json:
        typer.echo(json.dumps(shown, indent=2))
        return
    table = Table(title=f"flags from {snap.source}" + ("  [bold red]KILL SWITCH ON: all REST[/]"
                                                      if snap.flags.kill_switch else ""))
    for col in ("service", "gRPC %", "stickiness", "shadow %", "method overrides"):
        table.add_column(col)
    for name, svc in snap.flags.services.items():
        overrides = ", ".join(f"{m}={o.grpc}%" for m, o in svc.methods.items()) or "-"
        table.add_row(name, str(svc.grpc), svc.stickiness, str(svc.shadow), overrides)
    Console(width=120).print(table)
    if snap.error:
        typer.secho(f"last edit rejected: {snap.error}", fg="yellow", err=True)


def _flags_path(path: Optional[Path]) -> Path:
    from adapters.flags import find_flags_file

    found = find_flags_file(path)
    if found is None:
        _fail("no flags file: pass --flags FILE or set FXPLAT_FLAGS (or run from a directory with flags.yaml)")
    if os.environ.get("UNLEASH_URL"):
        typer.secho(f"note: UNLEASH_URL is set, so services follow the Unleash server, not {found}", fg="yellow",
                    err=True)
    return found


def _edit_flags(path: Optional[Path], change, reason: str = "") -> None:
    from adapters import flag_edit
    from adapters.flag_schema import FlagsError, parse_flags

    target = _flags_path(path)
    try:
        before = parse_flags(target.read_text(encoding="utf-8"), str(target))
        after = flag_edit.edit(target, change)
    except FlagsError as exc:
        _fail(f"refused, {target} unchanged:\n{exc}")
    typer.echo(f"updated {target}; running services follow within ~1 s")
    _audit_flags(before, after, f"file:{target}", reason)


@flags_app.command("set")
def flags_set(
    service: Annotated[str, typer.Argument(help="e.g. backtesting")],
    grpc: Annotated[Optional[int], typer.Option("--grpc", help="Percent of calls over gRPC, 0-100.")] = None,
    method: Annotated[Optional[str], typer.Option(help="Apply --grpc to this one method (gRPC name, e.g. GetCandles).")] = None,
    shadow: Annotated[Optional[int], typer.Option(help="Percent of read calls also sent to the other transport, 0-100.")] = None,
    reason: Annotated[str, typer.Option("--reason", help="Why (kept in the flag audit log).")] = "",
    flags: FlagsOpt = None,
) -> None:
    """Set a service's (or one method's) gRPC share and/or its shadow share. Comments in the file are kept; an
    invalid value is refused and the file left as it was."""
    from adapters import flag_edit

    if grpc is None and shadow is None:
        _fail("nothing to change: give --grpc PCT and/or --shadow PCT")
    if method and grpc is None:
        _fail("--method applies --grpc to one method: give --grpc PCT too")
    _edit_flags(flags, flag_edit.set_service(service, grpc=grpc, method=method, shadow=shadow), reason)


@flags_app.command("kill-switch")
def flags_kill_switch(
    state: Annotated[str, typer.Argument(help="on: every call of every service over REST, no shadow calls; off: flags as set.")],
    reason: Annotated[str, typer.Option("--reason", help="Why (kept in the flag audit log).")] = "",
    flags: FlagsOpt = None,
) -> None:
    """Turn the global kill switch on or off."""
    from adapters import flag_edit

    if state not in ("on", "off"):
        _fail(f"kill-switch takes on or off, not {state!r}")
    _edit_flags(flags, flag_edit.set_kill_switch(state == "on"), reason)


@canary_app.command("report")
def canary_report(
    service: Annotated[Optional[str], typer.Option(help="Only this service.")] = None,
    since: Annotated[str, typer.Option(help="How far back: e.g. 30m, 6h, 2d; 'all' for everything.")] = "24h",
    as_json: Annotated[bool, typer.Option("--json", help="Machine-readable output.")] = False,
    data_dir: DataDir = None,
) -> None:
    """Per service and method: shadowed samples, mismatch rate, error rate and p50/p99 latency per transport, and a
    verdict (promote / hold / roll back; thresholds in docs/canary.md), with the worst mismatches and their diffs."""
    from fxplat import canary_report as cr

    try:
        start = cr.since(since)
    except ValueError as exc:
        _fail(str(exc))
    rows = asyncio.run(cr.load(config.data_dir(data_dir), start, service))
    if as_json:
        typer.echo(json.dumps(cr.to_json(rows, since), indent=2))
    else:
        cr.print_report(rows, since)


# --- fleet: the shared database ---
@db_app.command("upgrade")
def db_upgrade(data_dir: DataDir = None) -> None:
    """Create or upgrade every store's tables (market data, backtests, analyses, canary comparisons). Safe to run
    while replicas serve and from several places at once: upgrades take turns under a lock, and a second run finds
    nothing to do. Services do it on first use too; run it first in a deployment."""
    from sqlalchemy.exc import SQLAlchemyError

    from fxplat import db

    try:
        done = db.upgrade(config.data_dir(data_dir))
    except (SQLAlchemyError, ImportError, OSError) as exc:
        _fail(f"cannot upgrade the database: {str(exc).splitlines()[0]}", code=1)
    for item in done:
        change = f"version {item.before} -> {item.after}" if item.after != item.before else f"at version {item.after}"
        typer.echo(f"{item.component:<20} {change:<20} {item.database}")
# --- rollout and migration (issue 14): progressive gRPC rollouts, the flag audit log, the migration status -----------
rollout_app = typer.Typer(help="Move a service (or one method) to gRPC step by step, checked at every step; halt, roll "
                               "back, promote. State and audit log in the platform's database.", no_args_is_help=True)
app.add_typer(rollout_app, name="rollout")
migration_app = typer.Typer(help="Where the REST -> gRPC migration stands, per service and method.",
                            no_args_is_help=True)
app.add_typer(migration_app, name="migration")
Reason = Annotated[str, typer.Option("--reason", help="Why (kept in the timeline and the flag audit log).")]
from rollout import model as _rollout_model  # noqa: E402 (stdlib only: cheap at start-up)

_TH = _rollout_model.Thresholds()  # the documented defaults


def _audit_flags(before, after, target: str, reason: str) -> None:
    """Every flag a person changed goes to the audit log (who, when, old -> new, why)."""
    from rollout import audit

    entries = audit.changes(before, after, actor=audit.person(), target=target, why=reason)
    try:
        asyncio.run(audit.record(config.data_dir(None), entries))
    except Exception as exc:  # the edit is made: say loudly that it went unrecorded
        typer.secho(f"warning: flag change not written to the audit log: {type(exc).__name__}: {exc}", fg="yellow",
                    err=True)


def _rollout(work, data_dir: Optional[Path], *, source: bool = False):
    """Run `work(store, source)` with the rollout store (and the metric source) open; rollout errors end the CLI."""
    from adapters.flag_schema import FlagsError
    from rollout.actions import RolloutError
    from rollout.evidence import source_from_env
    from rollout.prom import PrometheusError
    from rollout.store import Conflict, RolloutStore

    async def go():
        path = config.data_dir(data_dir)
        store = RolloutStore.for_data_dir(path)
        src = source_from_env(path) if source else None
        try:
            return await work(store, src)
        finally:
            if src is not None:
                await src.close()
            await store.close()

    try:
        return asyncio.run(go())
    except (RolloutError, FlagsError, PrometheusError, Conflict, ValueError) as exc:
        _fail(str(exc))


@rollout_app.command("start")
def rollout_start(
    service: Annotated[str, typer.Argument(help="e.g. backtesting")],
    method: Annotated[Optional[str], typer.Option(help="Roll out only this method (gRPC name, e.g. GetCandles).")] = None,
    steps: Annotated[str, typer.Option(help="gRPC shares to step through, ending at 100.")] = "1,5,25,50,100",
    interval: Annotated[str, typer.Option(help="How long each step is watched before its checks: 30s, 5m, 1h.")] = "5m",
    max_failed_checks: Annotated[int, typer.Option(help="Failed checks (in all) that roll back to 0 %.")] = 2,
    min_samples: Annotated[int, typer.Option(help="Shadow comparisons a step needs for parity.")] = _TH.min_samples,
    max_mismatch_rate: Annotated[float, typer.Option(help="Shadow mismatches allowed, as a fraction.")] = _TH.max_mismatch_rate,
    error_margin: Annotated[float, typer.Option(help="gRPC error rate may exceed REST's by this (fraction).")] = _TH.error_margin,
    latency_factor: Annotated[float, typer.Option(help="gRPC p99 may be at most REST p99 times this.")] = _TH.latency_factor,
    max_fallback_rate: Annotated[float, typer.Option(help="Fallbacks to REST per gRPC attempt (fraction).")] = _TH.max_fallback_rate,
    max_breaker_opens: Annotated[int, typer.Option(help="Breakers seen open during a step.")] = _TH.max_breaker_opens,
    shadow: Annotated[Optional[int], typer.Option(help="Also set the service's shadow share (percent) for parity.")] = None,
    wait: Annotated[bool, typer.Option("--wait", help="Drive the rollout from here until it ends (the controller).")] = False,
    tick: Annotated[str, typer.Option(help="With --wait: how often the controller looks.")] = "2s",
    reason: Reason = "",
    flags: FlagsOpt = None,
    data_dir: DataDir = None,
) -> None:
    """Start a rollout: set the first step's share now; a controller (`fxplat rollout run`, or --wait) checks each
    step after --interval and advances, halts, or rolls back after --max-failed-checks failed checks."""
    from adapters.flags import find_flags_file
    from rollout import actions, audit, flag_writers
    from rollout.model import Thresholds, parse_duration, parse_steps

    try:
        step_list, interval_s, tick_s = parse_steps(steps), parse_duration(interval), parse_duration(tick, "--tick")
        thresholds = Thresholds(min_samples, max_mismatch_rate, error_margin, latency_factor, max_fallback_rate,
                                max_breaker_opens)
        writer = flag_writers.from_env(find_flags_file(flags))
    except ValueError as exc:
        _fail(str(exc))

    async def work(store, source):
        from fxplat.calls import method_names

        if method and service in config.SERVICES and method not in method_names(service):
            raise actions.RolloutError(f"{service} has no method {method!r}; methods: "
                                       f"{', '.join(method_names(service))}")
        r = await actions.start(store, source, writer, service=service, method=method or "", steps=step_list,
                                interval_s=interval_s, max_failed_checks=max_failed_checks, thresholds=thresholds,
                                actor=audit.person(), why=reason, shadow=shadow)
        typer.echo(f"rollout {r.id} of {r.target}: {r.percent} % on gRPC now ({writer.target}); next check at "
                   f"{r.next_check_at:%H:%M:%S} UTC")
        if wait:
            await _drive(store, source, service, tick_s, rollout_id=r.id)
            r = await store.get(r.id)
            typer.echo(f"rollout {r.id} of {r.target}: {r.state} at {r.percent} %")
        elif not wait:
            typer.echo("a controller must drive it: `fxplat rollout run` (or start with --wait)")
        return r

    r = _rollout(work, data_dir, source=True)
    if r.state == "rolled_back":
        raise typer.Exit(1)


async def _drive(store, source, service, tick_s: float, *, rollout_id=None, until_idle=False,
                 lease_ttl_s: float = 30.0) -> None:
    import signal

    from rollout.controller import Controller

    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    controller = Controller(store, source, lease_ttl_s=lease_ttl_s, say=lambda line: typer.echo(line, err=True))
    typer.echo(f"controller {controller.holder} ({source.name}); Ctrl-C stops it, the rollout stays as stored",
               err=True)
    await controller.run(service=service, tick_s=tick_s, until_idle=until_idle, stop=stop, rollout_id=rollout_id)


@rollout_app.command("run")
def rollout_run(
    service: Annotated[Optional[str], typer.Option(help="Drive only this service's rollout.")] = None,
    tick: Annotated[str, typer.Option(help="How often to look at the rollouts.")] = "2s",
    lease_ttl: Annotated[str, typer.Option(help="How long a lease outlives a controller that stopped renewing it "
                                                "(then another controller takes over).")] = "30s",
    until_idle: Annotated[bool, typer.Option("--until-idle", help="Exit once no rollout is active.")] = False,
    data_dir: DataDir = None,
) -> None:
    """The controller: reconcile every active rollout whose lease it holds (one controller per service at a time),
    until Ctrl-C/SIGTERM. Restart it any time: it continues from the stored state."""
    from rollout.model import parse_duration

    try:
        tick_s, ttl_s = parse_duration(tick, "--tick"), parse_duration(lease_ttl, "--lease-ttl")
    except ValueError as exc:
        _fail(str(exc))
    if ttl_s < 2 * tick_s:
        _fail(f"--lease-ttl ({lease_ttl}) must be at least twice --tick ({tick}): the lease is renewed every tick")
    _rollout(lambda store, source: _drive(store, source, service, tick_s, until_idle=until_idle, lease_ttl_s=ttl_s),
             data_dir, source=True)


@rollout_app.command("status")
def rollout_status(
    service: Annotated[Optional[str], typer.Argument(help="Only this service.")] = None,
    as_json: Annotated[bool, typer.Option("--json", help="Machine-readable output.")] = False,
    data_dir: DataDir = None,
) -> None:
    """The newest rollout of each service: state, share, step, failed checks, next check, the last analysis."""
    from fxplat import rollout_view
    from rollout.controller import lease_name, summary

    async def work(store, _):
        rollouts = await store.latest(service)
        events = await store.events([r.id for r in rollouts])
        checks = {e.rollout_id: e.checks for e in events if e.kind == "analysis"}
        holders = {}
        for r in rollouts:
            held = await store.lease_holder(lease_name(r.service))
            if held:
                holders[r.service] = held[0]
        return rollouts, checks, holders

    rollouts, checks, holders = _rollout(work, data_dir)
    if as_json:
        typer.echo(json.dumps([summary(r) | {"controller": holders.get(r.service), "last_checks": checks.get(r.id, [])}
                               for r in rollouts], indent=2))
    else:
        rollout_view.print_status(rollouts, checks, holders)


def _person_action(action: str, service: str, reason: str, data_dir: Optional[Path]) -> None:
    from rollout import actions, audit

    async def work(store, source):
        who = audit.person()
        if action == "resume":
            return await actions.resume(store, source, service, actor=who, why=reason)
        return await getattr(actions, action)(store, service, actor=who, why=reason)

    r = _rollout(work, data_dir, source=action == "resume")
    typer.echo(f"rollout {r.id} of {r.target}: {r.state}, {r.percent} % on gRPC")


@rollout_app.command("pause")
def rollout_pause(service: Annotated[str, typer.Argument()], reason: Reason = "", data_dir: DataDir = None) -> None:
    """Hold the rollout at its current share: no checks, no steps, until `resume`."""
    _person_action("pause", service, reason, data_dir)


@rollout_app.command("resume")
def rollout_resume(service: Annotated[str, typer.Argument()], reason: Reason = "", data_dir: DataDir = None) -> None:
    """Continue a paused rollout; the current step is watched afresh for one interval."""
    _person_action("resume", service, reason, data_dir)


@rollout_app.command("promote")
def rollout_promote(service: Annotated[str, typer.Argument()], reason: Reason = "", data_dir: DataDir = None) -> None:
    """Skip the remaining steps: 100 % on gRPC now, the rollout ends as promoted."""
    _person_action("promote", service, reason, data_dir)


@rollout_app.command("abort")
def rollout_abort(service: Annotated[str, typer.Argument()], reason: Reason = "", data_dir: DataDir = None) -> None:
    """Stop the rollout and send every call back to REST (0 %). For all services at once: `fxplat flags kill-switch on`."""
    _person_action("abort", service, reason, data_dir)


@rollout_app.command("history")
def rollout_history(
    service: Annotated[Optional[str], typer.Argument(help="Only this service.")] = None,
    as_json: Annotated[bool, typer.Option("--json", help="Machine-readable output.")] = False,
    data_dir: DataDir = None,
) -> None:
    """Every rollout's timeline (starts, steps, each analysis with its checks, halts, rollbacks, a person's actions)
    and the flag audit log (who changed which flag when, old -> new, why)."""
    from fxplat import rollout_view

    async def work(store, _):
        rollouts = await store.rollouts_of(service)
        events = await store.events([r.id for r in rollouts])
        entries = await store.audit_log(flag_prefix=service)
        return rollouts, events, entries

    rollouts, events, entries = _rollout(work, data_dir)
    if as_json:
        typer.echo(json.dumps(rollout_view.history_json(rollouts, events, entries), indent=2))
    else:
        rollout_view.print_history(rollouts, events, entries)


@migration_app.command("status")
def migration_status(
    markdown: Annotated[Optional[Path], typer.Option("--markdown", help="Also write the report as Markdown here.")] = None,
    as_json: Annotated[bool, typer.Option("--json", help="Machine-readable output.")] = False,
    since: Annotated[str, typer.Option(help="Shadow samples from how far back: 30m, 24h, 7d, or all.")] = "7d",
    flags: FlagsOpt = None,
    data_dir: DataDir = None,
) -> None:
    """Per service and method: is gRPC implemented (asked live: reflection and a probe call), parity evidence (shadow
    samples, mismatch rate, last seen), the current share, the rollout state and the recommended next step."""
    from fxplat import canary_report
    from fxplat import migration_status as migration

    try:
        start = canary_report.since(since)
    except ValueError as exc:
        _fail(str(exc))
    evaluator = _flags(flags)
    try:
        rows = asyncio.run(migration.collect(evaluator.snapshot().flags, config.data_dir(data_dir), start))
    finally:
        evaluator.close()
    if markdown:
        markdown.write_text(migration.to_markdown(rows, since), encoding="utf-8")
        typer.echo(f"wrote {markdown}", err=True)
    if as_json:
        typer.echo(json.dumps([r.to_json() for r in rows], indent=2))
    else:
        migration.print_table(rows)
# --- end of rollout and migration ---------------------------------------------------------------------------------


def main() -> None:  # pragma: no cover
    app()
