"""Logging, set up once for the process: JSON lines when stderr is not a terminal (collectors parse them), readable
text when it is. Every record carries the request id and trace id of the call it was logged in, and the two server
wrappers write one `fxplat.calls` line per served call through `call` (successful reads sampled when their rate is
high, see `sample_calls`)."""
from __future__ import annotations

import logging
import os
import sys
import threading
import time
from typing import IO

import orjson

from transport import config, context, tracing

FORMAT_ENV = "FXPLAT_LOG_FORMAT"
FORMATS = ("auto", "json", "console")
CALLS = logging.getLogger("fxplat.calls")

# Attributes every LogRecord has; anything else on a record came through `extra=` and goes into the JSON line.
_STANDARD = frozenset(logging.LogRecord("", 0, "", 0, "", (), None).__dict__) | {"message", "asctime", "taskName"}


_MSG = "%s %s/%s %s %.1f ms"  # transport service/method code duration
_UNLOGGED_MSG = _MSG + " (+%d unlogged)"  # ... and the method's successes left out since its previous line


class _CallRecord(logging.LogRecord):
    """The record of one served call. LogRecord.__init__ splits a source path, looks up the thread and process names
    and more (about half the cost of a call's log line); here the attributes that never change are set once, so a
    formatter still finds every standard attribute."""

    _fixed: dict = {}

    def __init__(self, args: tuple, fields: dict, msg: str = _MSG) -> None:  # noqa: super().__init__ skipped on purpose (see above)
        now = time.time()
        d = self.__dict__
        if not self._fixed:
            proto = logging.LogRecord("fxplat.calls", logging.INFO, __file__, 0, "", (), None, "call")
            type(self)._fixed = {k: v for k, v in proto.__dict__.items()
                                 if k not in ("created", "msecs", "relativeCreated", "thread", "process", "taskName")}
        d.update(self._fixed)
        d["msg"], d["args"], d["created"] = msg, args, now
        d["msecs"] = int((now - int(now)) * 1000) + 0.0
        d["relativeCreated"] = (now - logging._startTime) * 1000
        d["thread"], d["process"], d["taskName"] = threading.get_ident(), os.getpid(), None
        d.update(fields)


class _Sampled:
    """Successful calls of one read method on one transport in the current second: how many were logged, and how
    many went unlogged since its last line."""

    __slots__ = ("second", "logged", "unlogged")

    def __init__(self) -> None:
        self.second, self.logged, self.unlogged = -1, 0, 0


_per_second = config.DEFAULT_CALL_LOG_RATE  # `fxplat up` sets FXPLAT_CALL_LOG_RATE's (setup)
_reads: dict[tuple[str, str, str], _Sampled] = {}  # (service, method, transport) of the methods that may be sampled


def sample_reads(service: str, methods: list[str]) -> None:
    """Name `service`'s read methods: only their successes are sampled. Every other call (a write, whose line is its
    audit record, or any error) is always logged."""
    for method in methods:
        for transport in ("grpc", "rest"):
            _reads.setdefault((service, method, transport), _Sampled())


def sample_calls(per_second: int) -> None:
    """Log at most `per_second` successful calls per second of each read method on each transport (0: every call). A
    line after a cut carries `unlogged`: the method's successful calls left out since its previous line. Writes and
    errors are always logged, and the metrics count every call. At a few hundred calls per second the log line is ~7 %
    of a small call's server CPU; a line per read at that rate tells ops nothing the metrics do not."""
    global _per_second
    _per_second = per_second
    for sampled in _reads.values():
        sampled.second, sampled.logged, sampled.unlogged = -1, 0, 0


def call(service: str, method: str, transport: str, code: str, seconds: float, request_id: str, trace_id: str) -> None:
    """The log line of a served call: every error and write, and successful reads up to the sampling rate
    (`sample_calls`).

    The record is built directly and handed to the logger's handlers: `Logger.info` would also walk the stack
    (findCaller) for fields no formatter here prints. Same fields, about a third of the CPU."""
    if not CALLS.isEnabledFor(logging.INFO):
        return
    unlogged = 0
    if code == "OK" and _per_second and (sampled := _reads.get((service, method, transport))) is not None:
        second = int(time.monotonic())
        if second != sampled.second:
            sampled.second, sampled.logged = second, 0
        if sampled.logged >= _per_second:
            sampled.unlogged += 1
            return
        sampled.logged += 1
        unlogged, sampled.unlogged = sampled.unlogged, 0
    ms = round(seconds * 1000, 3)
    fields = {"service": service, "method": method, "transport": transport, "code": code, "duration_ms": ms,
              "request_id": request_id, "trace_id": trace_id}
    args, msg = (transport, service, method, code, ms), _MSG
    if unlogged:
        fields["unlogged"], args, msg = unlogged, (*args, unlogged), _UNLOGGED_MSG
    CALLS.handle(_CallRecord(args, fields, msg))


class _CallIds(logging.Filter):
    """Stamps a record logged during a call with the call's request id and trace id (unless it names its own)."""

    def filter(self, record: logging.LogRecord) -> bool:
        if not hasattr(record, "request_id") and (rid := context.request_id.get()):
            record.request_id = rid
        if not hasattr(record, "trace_id") and (tid := tracing.trace_id()):
            record.trace_id = tid
        return True


class JsonFormatter(logging.Formatter):
    """One JSON object per line: ts, level, logger, msg, the record's extra fields and, on errors, the traceback."""

    _second, _stamp = -1, ""  # the formatted second of the last record: strftime once a second, not per line

    def format(self, record: logging.LogRecord) -> str:
        second = int(record.created)
        if second != self._second:
            self._second, self._stamp = second, time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(second))
        line = {"ts": f"{self._stamp}.{int(record.msecs):03d}Z", "level": record.levelname.lower(),
                "logger": record.name, "msg": record.getMessage()}
        for k, v in record.__dict__.items():
            if k not in _STANDARD:
                line[k] = v
        if record.exc_info:
            line["exc"] = self.formatException(record.exc_info)
        return orjson.dumps(line, default=str).decode()


class ConsoleFormatter(logging.Formatter):
    """Human-readable: time, level, logger, message, then the call's ids when there is a call."""

    def __init__(self) -> None:
        super().__init__("%(asctime)s %(levelname)-5s %(name)s: %(message)s", datefmt="%H:%M:%S")

    def format(self, record: logging.LogRecord) -> str:
        text = super().format(record)
        ids = " ".join(f"{k}={v}" for k in ("request_id", "trace_id") if (v := getattr(record, k, "")))
        if not ids:
            return text
        head, _, tail = text.partition("\n")  # ids on the message line, before any traceback
        return f"{head}  [{ids}]" + (f"\n{tail}" if tail else "")


def resolve(fmt: str, stream: IO[str] | None = None) -> str:
    """'auto' -> 'console' on a terminal, else 'json'."""
    if fmt not in FORMATS:
        raise ValueError(f"log format must be one of {', '.join(FORMATS)}, not {fmt!r}")
    if fmt != "auto":
        return fmt
    stream = stream or sys.stderr
    return "console" if hasattr(stream, "isatty") and stream.isatty() else "json"


def handler(fmt: str = "auto", stream: IO[str] | None = None) -> logging.Handler:
    """A stream handler (stderr by default) writing `fmt`, with the call ids stamped on."""
    out = logging.StreamHandler(stream or sys.stderr)
    out.addFilter(_CallIds())
    out.setFormatter(JsonFormatter() if resolve(fmt, stream) == "json" else ConsoleFormatter())
    return out


def setup(fmt: str = "auto", *, verbose: bool = False) -> None:
    """Send every logger (uvicorn's and grpc's included) through one handler on stderr; sample successful calls' lines
    at FXPLAT_CALL_LOG_RATE (ValueError when it is not a number in range)."""
    sample_calls(config.call_log_rate())
    root = logging.getLogger()
    for old in root.handlers[:]:
        root.removeHandler(old)
    root.addHandler(handler(fmt))
    root.setLevel(logging.DEBUG if verbose else logging.INFO)
    logging.getLogger("httpx").setLevel(logging.WARNING)  # one INFO line per call between services is noise
