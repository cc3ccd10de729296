"""Where things are and how servers stop: the one module that reads the platform's deployment settings, used by
transport/, adapters/, the supervisor and the CLI alike. The data directory, each service's endpoints (defaults from
DESIGN.md, overridable by env), the TLS files (FXPLAT_TLS_CERT / FXPLAT_TLS_KEY for servers, FXPLAT_TLS_CA for clients)
the drain settings (FXPLAT_DRAIN_DELAY_S, FXPLAT_GRACE_S) and how many processes serve each service (FXPLAT_WORKERS)."""
from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from transport.server import TlsFiles

SERVICES = ("market_analysis", "causal_analysis", "backtesting", "analysis_coordinator")
DEFAULT_PORTS = {  # (REST, gRPC)
    "market_analysis": (8001, 50051),
    "causal_analysis": (8002, 50052),
    "backtesting": (8003, 50053),
    "analysis_coordinator": (8004, 50054),
}
DEFAULT_HOST = "127.0.0.1"
# Draining (SIGTERM): readiness and gRPC health turn NOT_SERVING at once, the server keeps serving for the drain delay
# (a load balancer's or Kubernetes' preStop window to notice), then refuses new calls and gives those in flight the
# grace period. Kubernetes' terminationGracePeriodSeconds must exceed their sum.
DEFAULT_DRAIN_DELAY_S = 0.0
DEFAULT_GRACE_S = 5.0
# gRPC connections end after this age (clients reconnect and re-resolve, so new replicas get traffic).
DEFAULT_MAX_CONNECTION_AGE_S = 120.0
# Processes per service under `fxplat up` (its supervisor): more than one share the service's ports through
# SO_REUSEPORT, and the kernel spreads connections over them.
DEFAULT_WORKERS = 1
MAX_WORKERS = 64


def data_dir(explicit: str | Path | None = None) -> Path:
    """--data-dir, else FXPLAT_DATA_DIR, else $XDG_DATA_HOME/fxplat (~/.local/share/fxplat)."""
    if explicit:
        path = Path(explicit)
    elif os.environ.get("FXPLAT_DATA_DIR"):
        path = Path(os.environ["FXPLAT_DATA_DIR"])
    else:
        path = Path(os.environ.get("XDG_DATA_HOME") or Path.home() / ".local" / "share") / "fxplat"
    path = path.expanduser()
    path.mkdir(mode=0o700, parents=True, exist_ok=True)  # private: tokens' secret, market data, backtests
    return path


def _env(service: str, what: str) -> str | None:
    return os.environ.get(f"FXPLAT_{service.upper()}_{what}")


def host() -> str:
    return os.environ.get("FXPLAT_HOST", DEFAULT_HOST)


def _seconds(name: str, default: float) -> float:
    return _env_number(name, default, 0, 3600)


def reach(listen_host: str) -> str:
    """The host a client connects to for a server listening on `listen_host`: a wildcard address is reached over
    loopback, and an IPv6 literal is bracketed (for URLs and gRPC targets)."""
    h = {"0.0.0.0": "127.0.0.1", "::": "::1", "": "127.0.0.1"}.get(listen_host, listen_host)
    return f"[{h}]" if ":" in h else h


def drain_delay_s() -> float:
    """FXPLAT_DRAIN_DELAY_S: seconds a stopping server keeps serving while reporting not ready."""
    return _seconds("FXPLAT_DRAIN_DELAY_S", DEFAULT_DRAIN_DELAY_S)


def grace_s() -> float:
    """FXPLAT_GRACE_S: seconds calls in flight get to finish once a stopping server refuses new ones."""
    return _seconds("FXPLAT_GRACE_S", DEFAULT_GRACE_S)


def max_connection_age_s() -> float:
    """FXPLAT_MAX_CONNECTION_AGE_S: seconds after which a gRPC server ends a connection (GOAWAY; calls on it finish
    within the grace period), so its clients re-resolve their target and spread over the replicas there now."""
    return _seconds("FXPLAT_MAX_CONNECTION_AGE_S", DEFAULT_MAX_CONNECTION_AGE_S) or DEFAULT_MAX_CONNECTION_AGE_S
def workers(explicit: int | None = None) -> int:
    """--workers, else FXPLAT_WORKERS, else 1: processes serving each service."""
    raw = explicit if explicit is not None else os.environ.get("FXPLAT_WORKERS") or DEFAULT_WORKERS
    try:
        value = int(raw)
    except ValueError:
        raise ValueError(f"FXPLAT_WORKERS must be a whole number of processes, not {raw!r}") from None
    if not 1 <= value <= MAX_WORKERS:
        raise ValueError(f"workers must be between 1 and {MAX_WORKERS}, not {raw!r}")
    return value


def event_loop() -> str:
    """FXPLAT_EVENT_LOOP: the event loop `fxplat up`'s service processes run on, "uvloop" or "asyncio" (the standard
    library's); unset: uvloop when it is installed (uvicorn[standard] brings it), else asyncio."""
    raw = (os.environ.get("FXPLAT_EVENT_LOOP") or "").strip().lower()
    if raw not in ("", "uvloop", "asyncio"):
        raise ValueError(f"FXPLAT_EVENT_LOOP must be uvloop or asyncio, not {os.environ['FXPLAT_EVENT_LOOP']!r}")
    try:
        import uvloop  # noqa: F401
    except ImportError:
        if raw == "uvloop":
            raise ValueError("FXPLAT_EVENT_LOOP=uvloop, but uvloop is not installed (pip install uvloop)") from None
        return "asyncio"
    return raw or "uvloop"


def ports(service: str) -> tuple[int, int]:
    rest, grpc = DEFAULT_PORTS[service]
    return int(_env(service, "REST_PORT") or rest), int(_env(service, "GRPC_PORT") or grpc)


def server_tls() -> TlsFiles | None:
    """FXPLAT_TLS_CERT and FXPLAT_TLS_KEY (PEM files): servers serve both transports over TLS."""
    from transport.server import TlsFiles

    cert, key = os.environ.get("FXPLAT_TLS_CERT"), os.environ.get("FXPLAT_TLS_KEY")
    if bool(cert) != bool(key):
        raise ValueError("FXPLAT_TLS_CERT and FXPLAT_TLS_KEY must be set together")
    return TlsFiles(Path(cert), Path(key)) if cert and key else None


def tls_ca() -> Path | None:
    """FXPLAT_TLS_CA: the CA bundle clients verify servers with."""
    ca = os.environ.get("FXPLAT_TLS_CA")
    return Path(ca) if ca else None


def tls_on() -> bool:
    """TLS is on when this process serves it or trusts a CA for it: endpoints are then https:// and channels TLS."""
    return bool(os.environ.get("FXPLAT_TLS_CERT") or os.environ.get("FXPLAT_TLS_CA"))


@dataclass(frozen=True)
class Endpoint:
    rest_url: str  # e.g. http://127.0.0.1:8001 (https:// with TLS); replicas' roots comma-separated
    grpc_target: str  # e.g. 127.0.0.1:50051 or dns:///market.ns.svc:50051

    @property
    def rest_urls(self) -> list[str]:
        """Each REST root `rest_url` lists (one, unless replicas are listed without a balancer in front)."""
        return split_rest_url(self.rest_url)


def split_rest_url(rest_url: str) -> list[str]:
    """The REST roots a REST URL setting lists, in order, without trailing slashes."""
    return [u.strip().rstrip("/") for u in rest_url.split(",") if u.strip()]


def endpoint(service: str) -> Endpoint:
    """Where clients reach `service`: FXPLAT_<SERVICE>_REST_URL / _GRPC_TARGET, else the default host and ports."""
    rest, grpc = ports(service)
    h = reach(host())
    rest_url = _env(service, "REST_URL") or f"{'https' if tls_on() else 'http'}://{h}:{rest}"
    return Endpoint(rest_url, _env(service, "GRPC_TARGET") or f"{h}:{grpc}")


# --- input limits (transport.limits) --------------------------------------------------------------------------------
# What one request may weigh. The API's requests are small (the largest real one, a RunAnalysis of 20 symbols, is
# ~1 KB); answers are what grow. Defaults leave wide room and stop a body of hundreds of MB before it is read.
DEFAULT_MAX_BODY_BYTES = 4 << 20  # REST request body and gRPC request message: 4 MiB (gRPC's own default)
DEFAULT_MAX_HEADER_BYTES = 32 << 10  # all REST request headers together: 32 KiB
DEFAULT_MAX_TOKEN_BYTES = 8 << 10  # the bearer token: 8 KiB (a JWT with every scope is ~300 bytes)


@dataclass(frozen=True)
class InputLimits:
    body_bytes: int = DEFAULT_MAX_BODY_BYTES
    header_bytes: int = DEFAULT_MAX_HEADER_BYTES
    token_bytes: int = DEFAULT_MAX_TOKEN_BYTES


def _bytes(name: str, default: int) -> int:
    raw = os.environ.get(name)
    if raw is None or raw == "":
        return default
    if not raw.strip().isdigit() or int(raw) < 1024:
        raise ValueError(f"{name} must be a whole number of bytes, at least 1024, not {raw!r}")
    return int(raw)


def input_limits() -> InputLimits:
    """FXPLAT_MAX_BODY_BYTES (REST body and gRPC request message), FXPLAT_MAX_HEADER_BYTES (REST headers together, gRPC metadata),
    FXPLAT_MAX_TOKEN_BYTES (bearer token)."""
    return InputLimits(_bytes("FXPLAT_MAX_BODY_BYTES", DEFAULT_MAX_BODY_BYTES),
                       _bytes("FXPLAT_MAX_HEADER_BYTES", DEFAULT_MAX_HEADER_BYTES),
                       _bytes("FXPLAT_MAX_TOKEN_BYTES", DEFAULT_MAX_TOKEN_BYTES))


DEFAULT_CALL_LOG_RATE = 100


def call_log_rate() -> int:
    """FXPLAT_CALL_LOG_RATE: successful reads logged per second per method and transport before the rest of that
    second's are only counted (writes and errors are always logged); 0 logs every call."""
    return int(_env_number("FXPLAT_CALL_LOG_RATE", DEFAULT_CALL_LOG_RATE, 0, 1_000_000))


# --- live streams (StreamQuotes, WatchCandles; see docs/streams.md) ---------------------------------------------------

def _env_number(name: str, default: float, low: float, high: float) -> float:
    raw = os.environ.get(name)
    if raw is None or raw == "":
        return default
    try:
        value = float(raw)
    except ValueError:
        raise ValueError(f"{name} must be a number, not {raw!r}") from None
    if not low <= value <= high:
        raise ValueError(f"{name} must be between {low:g} and {high:g}, not {raw!r}")
    return value


def quote_settings() -> dict:
    """The quote generator: FXPLAT_QUOTES_RATE (quotes/s per symbol), FXPLAT_QUOTES_PER_BAR (quotes per replayed
    bar, so bars/s = rate / per bar), FXPLAT_QUOTES_SEED, FXPLAT_QUOTES_LAG_BOUND (quotes per symbol a consumer may
    lag before it is conflated), FXPLAT_CANDLES_LAG_BOUND (bars before a slow WatchCandles consumer is ended).
    Replicas that must resume each other's streams need the same values."""
    return {"rate": _env_number("FXPLAT_QUOTES_RATE", 10.0, 0.001, 100_000),
            "per_bar": int(_env_number("FXPLAT_QUOTES_PER_BAR", 4, 4, 3600)),
            "seed": int(_env_number("FXPLAT_QUOTES_SEED", 1, 0, 2**31)),
            "lag_bound": int(_env_number("FXPLAT_QUOTES_LAG_BOUND", 256, 1, 1_000_000)),
            "candle_lag_bound": int(_env_number("FXPLAT_CANDLES_LAG_BOUND", 64, 1, 1_000_000))}


def stream_settings() -> dict:
    """Stream plumbing: FXPLAT_STREAM_HEARTBEAT_S, FXPLAT_MAX_STREAMS (per process), FXPLAT_MAX_STREAMS_PER_TOKEN,
    FXPLAT_STREAM_COALESCE_MS (how long a stream gathers items into one message, 0..250)."""
    return {"heartbeat_s": _env_number("FXPLAT_STREAM_HEARTBEAT_S", 5.0, 0.05, 300),
            "coalesce_ms": _env_number("FXPLAT_STREAM_COALESCE_MS", 0.0, 0, 250),
            "max_streams": int(_env_number("FXPLAT_MAX_STREAMS", 1000, 1, 1_000_000)),
            "max_per_token": int(_env_number("FXPLAT_MAX_STREAMS_PER_TOKEN", 32, 1, 1_000_000))}


# --- Every environment variable the platform reads ------------------------------------------------------------------
# One registry, so code, manifests (deploy/k8s) and docs (docs/deployment.md) cannot drift: tests/test_env_registry.py
# fails when the code reads a variable missing here (or one here is read nowhere), tests/test_manifests.py when a
# manifest sets one missing here, and the configuration table in docs/deployment.md is generated from it
# (scripts/gen_deploy.py). A new setting: read it where it belongs, add its line here, rerun the script.

@dataclass(frozen=True)
class EnvVar:
    name: str  # FXPLAT_<SERVICE>_... stands for one variable per service (FXPLAT_MARKET_ANALYSIS_..., ...)
    default: str  # what applies when unset, as a reader should see it
    meaning: str
    flag: str = ""  # the `fxplat up` option that sets the same thing, when it does not read this variable itself
    read_by: str = ""  # "" = this package; else the library that reads it (we only document it)

    def names(self) -> list[str]:
        if "<SERVICE>" not in self.name:
            return [self.name]
        return [self.name.replace("<SERVICE>", service.upper()) for service in SERVICES]


def _per_service(index: int) -> str:
    return ", ".join(f"{s} {DEFAULT_PORTS[s][index]}" for s in SERVICES)


ENV_VARS: tuple[EnvVar, ...] = (
    # where services listen and are found
    EnvVar("FXPLAT_HOST", DEFAULT_HOST, "Interface the servers listen on (0.0.0.0 in a container), and the host of "
           "the default endpoints clients use."),
    EnvVar("FXPLAT_<SERVICE>_REST_PORT", _per_service(0), "REST port of the service.", flag="--rest-port"),
    EnvVar("FXPLAT_<SERVICE>_GRPC_PORT", _per_service(1), "gRPC port of the service.", flag="--grpc-port"),
    EnvVar("FXPLAT_<SERVICE>_REST_URL", "http://FXPLAT_HOST:<REST port> (https:// with TLS)",
           "Base URL callers reach the service's REST API at (a Kubernetes ClusterIP Service, a load balancer), or several "
           "replicas' base URLs comma-separated: calls then take them in turn and skip one that refuses."),
    EnvVar("FXPLAT_<SERVICE>_GRPC_TARGET", "FXPLAT_HOST:<gRPC port>",
           "gRPC target callers dial; dns:///name:port resolves every address and balances calls round_robin "
           "(a headless Service)."),
    # storage
    EnvVar("FXPLAT_DATA_DIR", "$XDG_DATA_HOME/fxplat", "Data directory: SQLite files (without DATABASE_URL) and "
           "dev mode's auth secret."),
    EnvVar("XDG_DATA_HOME", "~/.local/share", "Base of the default data directory."),
    EnvVar("DATABASE_URL", "SQLite files in the data directory", "postgresql://user:password@host/db stores "
           "backtests, analyses and canary comparisons in PostgreSQL (needs the postgres extra)."),
    # input limits (transport.limits)
    EnvVar("FXPLAT_MAX_BODY_BYTES", f"{DEFAULT_MAX_BODY_BYTES}", "Largest REST request body and gRPC request message "
           "(bytes); larger ones are refused 413 / RESOURCE_EXHAUSTED before they are read."),
    EnvVar("FXPLAT_MAX_HEADER_BYTES", f"{DEFAULT_MAX_HEADER_BYTES}", "Largest total size of a REST request's "
           "headers (refused 431) and of a gRPC call's metadata (RESOURCE_EXHAUSTED), in bytes."),
    EnvVar("FXPLAT_MAX_TOKEN_BYTES", f"{DEFAULT_MAX_TOKEN_BYTES}", "Largest bearer token (bytes) either transport "
           "accepts."),
    EnvVar("FXPLAT_MAX_CONNECTION_AGE_S", f"{DEFAULT_MAX_CONNECTION_AGE_S:g}", "Seconds after which a gRPC server "
           "ends a connection (its calls get the grace to finish): clients reconnect and re-resolve, so new replicas "
           "get traffic."),
    # live streams (docs/streams.md); replicas that resume each other's streams need the same quote settings
    EnvVar("FXPLAT_QUOTES_RATE", "10", "Quotes per second per symbol the generator publishes."),
    EnvVar("FXPLAT_QUOTES_PER_BAR", "4", "Quotes per replayed bar (bars per second = rate / per bar)."),
    EnvVar("FXPLAT_QUOTES_SEED", "1", "Seed of the deterministic quote generator."),
    EnvVar("FXPLAT_QUOTES_LAG_BOUND", "256", "Quotes per symbol a consumer may lag before it is conflated."),
    EnvVar("FXPLAT_CANDLES_LAG_BOUND", "64", "Closed bars a WatchCandles consumer may lag before it is ended "
           "RESOURCE_EXHAUSTED."),
    EnvVar("FXPLAT_STREAM_HEARTBEAT_S", "5", "Seconds between heartbeats on an idle stream."),
    EnvVar("FXPLAT_STREAM_COALESCE_MS", "0", "Milliseconds a stream gathers items into one message (0..250; "
           "fewer, larger messages for that much latency)."),
    EnvVar("FXPLAT_MAX_STREAMS", "1000", "Open streams one process serves at most."),
    EnvVar("FXPLAT_MAX_STREAMS_PER_TOKEN", "32", "Open streams one bearer token may hold at most."),
    # stopping
    EnvVar("FXPLAT_DRAIN_DELAY_S", f"{DEFAULT_DRAIN_DELAY_S:g}", "Seconds a stopping server keeps serving while "
           "/readyz and gRPC health report it not ready, so load balancers move away first."),
    EnvVar("FXPLAT_GRACE_S", f"{DEFAULT_GRACE_S:g}", "Seconds calls in flight get to finish once a stopping server "
           "refuses new ones."),
    # processes' event loop (transport.event_loop)
    EnvVar("FXPLAT_EVENT_LOOP", "uvloop when installed, else asyncio", "Event loop of the service processes: uvloop "
           "(faster per call) or asyncio (the standard library's)."),
    # TLS
    EnvVar("FXPLAT_TLS_CERT", "unset (plaintext)", "Server certificate chain (PEM file); with FXPLAT_TLS_KEY both "
           "transports serve TLS."),
    EnvVar("FXPLAT_TLS_KEY", "unset", "Server private key (PEM file)."),
    EnvVar("FXPLAT_TLS_CA", "unset", "CA bundle (PEM) clients verify servers with; endpoints become https://."),
    # auth
    EnvVar("FXPLAT_AUTH", "dev", "dev (a secret generated in the data directory), on (needs a key below) or off."),
    EnvVar("FXPLAT_AUTH_SECRET", "unset", "HS256 shared secret (at least 32 characters) that signs and verifies "
           "tokens."),
    EnvVar("FXPLAT_AUTH_ACCEPT_SECRET", "unset", "A second HS256 secret whose tokens are accepted too (never used "
           "to sign): the next or the previous key while rotating FXPLAT_AUTH_SECRET."),
    EnvVar("FXPLAT_AUTH_PUBLIC_KEY", "unset", "RS256 public key (PEM file) that verifies tokens."),
    EnvVar("FXPLAT_AUTH_PRIVATE_KEY", "unset", "RS256 private key (PEM file) services sign their calls to each "
           "other with."),
    EnvVar("FXPLAT_SERVICE_TOKEN", "unset (services mint their own)", "A ready bearer token services send to each "
           "other when they hold no signing key."),
    EnvVar("FXPLAT_TOKEN", "unset (the CLI mints one in dev mode)", "Bearer token the CLI (call, analyze, status) "
           "sends."),
    # flags
    EnvVar("FXPLAT_FLAGS", "./flags.yaml (else built-in defaults)", "Flags file; read live, so a mounted ConfigMap "
           "edit applies within seconds."),
    EnvVar("UNLEASH_URL", "unset (flags from the file)", "Unleash client API URL; the flags file is then only the "
           "bootstrap."),
    EnvVar("UNLEASH_API_TOKEN", "unset", "Unleash client (backend) token."),
    EnvVar("UNLEASH_ADMIN_URL", "unset", "Unleash base URL for `python -m adapters.unleash_admin` (pushes flags.yaml "
           "to the server)."),
    EnvVar("UNLEASH_ADMIN_TOKEN", "unset", "Unleash admin token for adapters.unleash_admin."),
    EnvVar("UNLEASH_PROJECT", "default", "Unleash project adapters.unleash_admin writes to."),
    EnvVar("UNLEASH_ENVIRONMENT", "development", "Unleash environment adapters.unleash_admin writes to."),
    # processes (fxplat.supervisor)
    EnvVar("FXPLAT_WORKERS", f"{DEFAULT_WORKERS}", "Processes serving each service on one port pair (SO_REUSEPORT).",
           flag="--workers"),
    EnvVar("PROMETHEUS_MULTIPROC_DIR", "unset (one process)", "Directory where worker processes keep their metrics so "
           "/metrics sums them; the supervisor sets it when --workers is above 1.", read_by="prometheus-client"),
    EnvVar("FXPLAT_READY_FD", "unset", "Internal: the pipe a child process reports readiness on (set by the "
           "supervisor)."),
    EnvVar("FXPLAT_REUSE_PORT", "unset", "Internal: the child shares its ports with other workers (set by the "
           "supervisor)."),
    EnvVar("FXPLAT_SUPERVISOR_PID", "unset", "Internal: the supervisor a child dies with (set by the supervisor)."),
    EnvVar("FXPLAT_WORKER", "unset", "Internal: the worker number a child logs (set by the supervisor)."),
    # memory (transport.allocator): glibc's own variables; any of them set, fxplat leaves the allocator as configured
    EnvVar("MALLOC_MMAP_THRESHOLD_", "16 MiB (set by each service process)", "glibc: blocks above this size are "
           "mapped afresh. Set it (or the next two) to choose the allocator's thresholds yourself."),
    EnvVar("MALLOC_TRIM_THRESHOLD_", "32 MiB (set by each service process)", "glibc: freed memory kept at the heap's "
           "top for reuse."),
    EnvVar("GLIBC_TUNABLES", "unset", "glibc's tunables; when set, fxplat leaves the allocator's thresholds to it."),
    # rollouts (src/rollout)
    EnvVar("PROMETHEUS_URL", "unset (the services' own /metrics and the canary store)", "Prometheus the rollout "
           "controller, `fxplat migration status` and the status page query (PromQL over its HTTP API)."),
    EnvVar("FXPLAT_METRICS_URLS", "unset", "Without PROMETHEUS_URL: more /metrics URLs (comma-separated) the rollout "
           "checks read besides each service's own, e.g. a calling process's."),
    EnvVar("FXPLAT_ACTOR", "the login name", "Who the flag audit log names for a change made from this shell."),
    # observability
    EnvVar("FXPLAT_LOG_FORMAT", "auto", "json, console, or auto (console on a terminal, else json)."),
    EnvVar("FXPLAT_CALL_LOG_RATE", str(DEFAULT_CALL_LOG_RATE), "Successful reads logged per second per method and "
           "transport; beyond it they are counted, and the method's next line says how many went unlogged "
           "(`unlogged`). Writes and errors are always logged. 0 logs every call."),
    EnvVar("FXPLAT_OTEL_EXPORTER", "off", "OpenTelemetry spans: off, console or otlp."),
    EnvVar("OTEL_SERVICE_NAME", "fxplat.<service>", "Service name on the spans."),
    EnvVar("OTEL_EXPORTER_OTLP_ENDPOINT", "http://localhost:4318", "Where OTLP spans go.",
           read_by="opentelemetry-sdk"),
)


def env_names() -> set[str]:
    """Every variable name the registry covers, per-service ones expanded."""
    return {name for var in ENV_VARS for name in var.names()}
