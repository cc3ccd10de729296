"""`fxplat flags set / kill-switch` edit flags.yaml in place: comments and order kept, invalid edits refused with the
file unchanged, and a running evaluator follows the edit within 2 s."""
from __future__ import annotations

import asyncio
import os
import sys
from pathlib import Path

import pytest

from adapters.flags import Flags

ROOT = Path(__file__).resolve().parent.parent
FXPLAT = str(Path(sys.executable).with_name("fxplat"))


@pytest.fixture
def flags_file(tmp_path) -> Path:
    path = tmp_path / "flags.yaml"
    path.write_text((ROOT / "flags.yaml").read_text())
    return path


async def fxplat(*args: str, flags_file: Path) -> tuple[int, str, str]:
    proc = await asyncio.create_subprocess_exec(FXPLAT, *args, env={**os.environ, "FXPLAT_FLAGS": str(flags_file)},
                                                stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE)
    out, err = await asyncio.wait_for(proc.communicate(), 60)
    return proc.returncode, out.decode(), err.decode()


def comments(text: str) -> list[str]:
    return [line.strip() for line in text.splitlines() if line.strip().startswith("#")]


async def test_set_keeps_comments_and_order(flags_file):
    before = flags_file.read_text()
    assert (await fxplat("flags", "set", "causal_analysis", "--grpc", "25", "--shadow", "10",
                         flags_file=flags_file))[0] == 0
    assert (await fxplat("flags", "set", "market_analysis", "--grpc", "0", "--method", "ComputeIndicators",
                         flags_file=flags_file))[0] == 0
    code, out, err = await fxplat("flags", "kill-switch", "on", flags_file=flags_file)
    assert code == 0, err
    after = flags_file.read_text()
    assert comments(after) == comments(before)
    keys = [line.split(":")[0] for line in after.splitlines() if line.strip() and not line.strip().startswith("#")]
    assert keys[:3] == ["kill_switch", "services", "  market_analysis"]
    flags = Flags(flags_file, unleash_url="").snapshot().flags
    assert flags.kill_switch is True
    assert (flags.services["causal_analysis"].grpc, flags.services["causal_analysis"].shadow) == (25, 10)
    assert flags.services["market_analysis"].methods["ComputeIndicators"].grpc == 0
    assert flags.services["market_analysis"].grpc == 100  # untouched


@pytest.mark.parametrize("args, message", [
    (["set", "backtesting", "--grpc", "150"], "services.backtesting.grpc: must be between 0 and 100, got 150"),
    (["set", "nowhere", "--grpc", "10"], "unknown service"),
    (["set", "market_analysis", "--grpc", "10", "--method", "get_candles"], "not a gRPC method name"),
    (["set", "market_analysis"], "nothing to change"),
    (["kill-switch", "maybe"], "on or off"),
])
async def test_invalid_edits_are_refused_and_the_file_is_unchanged(flags_file, args, message):
    before = flags_file.read_bytes()
    code, out, err = await fxplat("flags", *args, flags_file=flags_file)
    assert code != 0 and message in err and "Traceback" not in err, err
    assert flags_file.read_bytes() == before
    assert not [p for p in flags_file.parent.iterdir() if p.name != "flags.yaml"]  # no temp file left behind


async def test_a_running_evaluator_follows_the_edit_within_2s(flags_file):
    with Flags(flags_file, unleash_url="") as flags:
        assert flags.use_grpc("backtesting", "RunBacktest")
        code, _, err = await fxplat("flags", "set", "backtesting", "--grpc", "0", flags_file=flags_file)
        assert code == 0, err
        for _ in range(40):  # 2 s, bounded
            if not flags.use_grpc("backtesting", "RunBacktest"):
                break
            await asyncio.sleep(0.05)
        assert not flags.use_grpc("backtesting", "RunBacktest")


async def test_show(flags_file):
    code, out, err = await fxplat("flags", "show", flags_file=flags_file)
    assert code == 0, err
    assert f"file:{flags_file}" in out and "market_analysis" in out and "analysis_coordinator" in out
    code, out, err = await fxplat("flags", "show", "--json", flags_file=flags_file)
    import json
    shown = json.loads(out)
    assert shown["source"] == f"file:{flags_file}" and shown["services"]["backtesting"]["grpc"] == 100
