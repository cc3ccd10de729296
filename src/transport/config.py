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
    path.mkdir(parents=True, exist_ok=True)
    return path


def _env(service: str, what: str) -> str | None:
    return os.environ.get(f"FXPLAT_{service.upper()}_{what}")


def host() -> str:
    return os.environ.get("FXPLAT_HOST", DEFAULT_HOST)


def _seconds(name: str, default: float) -> float:
    raw = os.environ.get(name)
    if raw is None or raw == "":
        return default
    try:
        value = float(raw)
    except ValueError:
        raise ValueError(f"{name} must be a number of seconds, not {raw!r}") from None
    if not 0 <= value <= 3600:
        raise ValueError(f"{name} must be between 0 and 3600 seconds, not {raw!r}")
    return value


def drain_delay_s() -> float:
    """FXPLAT_DRAIN_DELAY_S: seconds a stopping server keeps serving while reporting not ready."""
    return _seconds("FXPLAT_DRAIN_DELAY_S", DEFAULT_DRAIN_DELAY_S)


def grace_s() -> float:
    """FXPLAT_GRACE_S: seconds calls in flight get to finish once a stopping server refuses new ones."""
    return _seconds("FXPLAT_GRACE_S", DEFAULT_GRACE_S)


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
    rest_url: str  # e.g. http://127.0.0.1:8001 (https:// with TLS)
    grpc_target: str  # e.g. 127.0.0.1:50051 or dns:///market.ns.svc:50051


def endpoint(service: str) -> Endpoint:
    """Where clients reach `service`: FXPLAT_<SERVICE>_REST_URL / _GRPC_TARGET, else the default host and ports."""
    rest, grpc = ports(service)
    h = host()
    rest_url = _env(service, "REST_URL") or f"{'https' if tls_on() else 'http'}://{h}:{rest}"
    return Endpoint(rest_url, _env(service, "GRPC_TARGET") or f"{h}:{grpc}")
