"""Target forms and listen addresses with real processes: a name with several addresses (in a mount namespace with a
hosts file of the test's own, never the machine's /etc/hosts) spreads calls over them, and a replica added under the
name gets its share within a minute, through the servers' max connection age; `fxplat up --host ::` serves both
transports over IPv6 (or refuses with a clear message where IPv6 is off)."""
from __future__ import annotations

import asyncio
import json
import shutil
import subprocess
import sys
import time
from pathlib import Path

import grpc
import httpx
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc

from gray import ALL_GRPC, FXPLAT, Replica, base_env, free_port, stop_all

HERE = Path(__file__).parent
HOSTS = ("127.0.0.2", "127.0.0.3", "127.0.0.4")


@pytest.mark.slow
@pytest.mark.timeout(400)
@pytest.mark.skipif(shutil.which("unshare") is None, reason="needs unshare (util-linux)")
@pytest.mark.parametrize("form", ["dns:///fxmarket.test:{port}", "fxmarket.test:{port}"])
async def test_a_name_spreads_calls_and_a_new_replica_gets_its_share(tmp_path, form):
    flags = tmp_path / "flags.yaml"
    flags.write_text(ALL_GRPC)
    env = base_env(flags, FXPLAT_MAX_CONNECTION_AGE_S="4", FXPLAT_GRACE_S="2")
    rest, grpc_port = free_port(*HOSTS), free_port(*HOSTS)
    replicas = [Replica("market_analysis", h, rest, grpc_port, tmp_path / "data", env, tmp_path / f"{h}.log")
                for h in HOSTS]
    hosts = tmp_path / "hosts"
    hosts.write_text("127.0.0.1 localhost\n127.0.0.2 fxmarket.test\n127.0.0.3 fxmarket.test\n")
    client = None
    try:
        for r in replicas[:2]:
            r.start()
        await asyncio.gather(*(r.ready() for r in replicas[:2]))
        script = (f"mount --bind {hosts} /etc/hosts && exec {sys.executable} {HERE / 'gray_load.py'} "
                  f"{form.format(port=grpc_port)} {replicas[0].rest_url} 75 {flags}")
        client = subprocess.Popen(["unshare", "-m", "sh", "-c", script], env={**env, "PYTHONPATH": str(HERE)},
                                  stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        for _ in range(600):  # bounded: the client process is up and calling (60 s on a busy box)
            assert client.poll() is None, client.communicate()[1][-2000:]
            if sum([await r.served() for r in replicas[:2]]) > 50:
                break
            await asyncio.sleep(0.1)
        base = [await r.served() for r in replicas[:2]]
        await asyncio.sleep(3.0)
        counts = [await r.served() - b for r, b in zip(replicas[:2], base)]
        assert min(counts) > 0.25 * sum(counts), f"calls not spread over the name's two addresses: {counts}"

        replicas[2].start()
        await replicas[2].ready()
        with open(hosts, "a") as f:  # in place: the bind mount holds this inode
            f.write("127.0.0.4 fxmarket.test\n")
        added = time.monotonic()
        share = 0.0
        base = [await r.served() for r in replicas]
        while time.monotonic() - added < 60.0:  # bounded
            await asyncio.sleep(2.0)
            now = [await r.served() for r in replicas]
            delta = [n - b for n, b in zip(now, base)]
            share = delta[2] / max(1.0, sum(delta))
            if share >= 0.2 and sum(delta) > 50:
                break
            base = now if sum(delta) > 300 else base  # a sliding view of the recent calls
        assert share >= 0.2, f"the new replica got {share:.0%} of the calls within 60 s"
        print(f"{form}: the new replica had {share:.0%} of the calls {time.monotonic() - added:.1f} s after it was added")
        client.terminate()
        out, err = client.communicate(timeout=30)
        assert client.returncode in (0, -15), err[-2000:]
    finally:
        if client is not None and client.poll() is None:
            client.kill()
            client.wait()
        stop_all(replicas)


@pytest.mark.timeout(300)
async def test_up_on_ipv6_any_serves_both_transports_or_refuses_clearly(tmp_path):
    flags = tmp_path / "flags.yaml"
    flags.write_text(ALL_GRPC)
    rest, grpc_port = free_port("::1"), free_port("::1")
    log = tmp_path / "up.log"
    with open(log, "wb") as out:
        proc = subprocess.Popen([FXPLAT, "up", "--service", "market_analysis", "--host", "::", "--rest-port",
                                 str(rest), "--grpc-port", str(grpc_port), "--data-dir", str(tmp_path / "data")],
                                env=base_env(flags), stdout=out, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL)
    try:
        served = False
        async with httpx.AsyncClient(timeout=1) as http:
            for _ in range(1200):  # bounded: 120 s on a busy box
                if proc.poll() is not None:
                    break
                try:
                    served = (await http.get(f"http://[::1]:{rest}/readyz")).status_code == 200
                except httpx.HTTPError:
                    pass
                if served:
                    break
                await asyncio.sleep(0.1)
        if not served:  # refused: one clear line, never a traceback
            text = log.read_text()
            assert proc.wait(10) != 0 and "error:" in text and "Traceback" not in text, text[-3000:]
            return
        for host in ("[::1]", "127.0.0.1"):  # both transports, over IPv6 and (dual stack) IPv4
            async with grpc.aio.insecure_channel(f"{host}:{grpc_port}") as channel:
                reply = await health_pb2_grpc.HealthStub(channel).Check(health_pb2.HealthCheckRequest(), timeout=5)
                assert reply.status == health_pb2.HealthCheckResponse.SERVING
            async with httpx.AsyncClient(timeout=5) as http:
                assert (await http.get(f"http://{host}:{rest}/healthz")).status_code == 200
    finally:
        if proc.poll() is None:
            proc.terminate()
            assert proc.wait(30) == 0
