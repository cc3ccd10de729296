"""The event loop of `fxplat up`'s service processes: uvloop unless FXPLAT_EVENT_LOOP=asyncio, under the supervisor as
in --single-process, and a clear error for anything else. (The drain on uvloop: tests/test_graceful_shutdown.py.)"""
from __future__ import annotations

import os
import signal
import subprocess
import sys
import time

import pytest

MODES = {"supervisor": [], "single-process": ["--single-process"]}


def up(tmp_path, loop: str | None, *args: str) -> subprocess.Popen:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("FXPLAT_", "UNLEASH_", "OTEL_", "DATABASE_URL"))}
    env.update(FXPLAT_AUTH="off", FXPLAT_LOG_FORMAT="console", **({"FXPLAT_EVENT_LOOP": loop} if loop else {}))
    return subprocess.Popen([sys.executable, "-m", "fxplat", "up", "--service", "market_analysis", "--rest-port", "0",
                             "--grpc-port", "0", "--data-dir", str(tmp_path / "data"), *args], env=env, text=True,
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL)


@pytest.mark.timeout(180)
@pytest.mark.parametrize("loop, mode, expected", [(None, "supervisor", "uvloop"), ("asyncio", "supervisor", "asyncio"),
                                                  (None, "single-process", "uvloop"),
                                                  ("asyncio", "single-process", "asyncio")])
def test_service_processes_run_on_uvloop_unless_told_otherwise(tmp_path, loop, mode, expected):
    proc = up(tmp_path, loop, *MODES[mode])
    seen: list[str] = []
    try:
        deadline = time.monotonic() + 150  # bounded: start-up on a busy box
        while time.monotonic() < deadline and (line := proc.stdout.readline()):
            seen.append(line)
            if "Ctrl-C to stop" in line and "fxplat.up" in line:  # the service process says where it listens
                break
        assert f"event loop {expected};" in seen[-1], "".join(seen)
        proc.send_signal(signal.SIGTERM)
        out, _ = proc.communicate(timeout=60)
        assert proc.returncode == 0, "".join(seen) + out
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.communicate()


def test_an_unknown_event_loop_is_a_clear_error(tmp_path):
    proc = up(tmp_path, "trio", "--single-process")
    out, _ = proc.communicate(timeout=60)
    assert proc.returncode != 0
    assert "FXPLAT_EVENT_LOOP must be uvloop or asyncio, not 'trio'" in out and "Traceback" not in out
