"""The fleet: every service as two replicas (separate `fxplat up --service S` processes on 127.0.0.2 and 127.0.0.3)
behind HAProxy (REST over HTTP/1.1, gRPC over h2, on 127.0.0.1), all on one PostgreSQL database. Started once for the
tier's tests by `scripts/fleet_tier.sh`, which provides PostgreSQL (FXPLAT_FLEET_DATABASE_URL) and HAProxy; skipped
by the plain `pytest` run."""
from __future__ import annotations

import os
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

import httpx
import pytest

from transport.config import SERVICES

DATABASE_URL = os.environ.get("FXPLAT_FLEET_DATABASE_URL", "")
HOSTS = ("127.0.0.2", "127.0.0.3")  # replica a, replica b
BALANCER = "127.0.0.1"
START_S = 400.0  # eight replicas import and warm up at once; on a busy 2-core box that takes minutes
FLAGS = """kill_switch: false
services:
""" + "".join(f"  {name}: {{grpc: 50, stickiness: random}}\n" for name in SERVICES)


def pytest_collection_modifyitems(config, items):
    for item in items:
        if "tests/fleet/" in str(item.fspath):
            item.add_marker(pytest.mark.fleet)
            item.add_marker(pytest.mark.timeout(600))
            if not DATABASE_URL:
                item.add_marker(pytest.mark.skip(reason="needs the fleet tier: bash scripts/fleet_tier.sh"))


_handed_out: set[int] = set()


def _free_port(hosts: tuple[str, ...]) -> int:
    """A port free on every one of `hosts`, never one handed out before in this session. The kernel may give the same
    free port twice, and HAProxy binds its listeners with SO_REUSEPORT: two frontends on one port would both start
    and split the connections between them (a gRPC call answered by a REST frontend's 404)."""
    for _ in range(100):
        with socket.socket() as probe:
            probe.bind((hosts[0], 0))
            port = probe.getsockname()[1]
        if port in _handed_out:
            continue
        try:
            for h in hosts:
                with socket.socket() as s:
                    s.bind((h, port))
        except OSError:
            continue
        _handed_out.add(port)
        return port
    raise RuntimeError("no common free port")


@dataclass
class Replica:
    service: str
    host: str
    rest_port: int
    grpc_port: int
    data_dir: Path
    env: dict[str, str]
    log_path: Path
    proc: subprocess.Popen | None = None

    @property
    def rest_url(self) -> str:
        return f"http://{self.host}:{self.rest_port}"

    @property
    def grpc_target(self) -> str:
        return f"{self.host}:{self.grpc_port}"

    def start(self) -> None:
        log = open(self.log_path, "ab")
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "fxplat", "up", "--service", self.service, "--host", self.host,
             "--rest-port", str(self.rest_port), "--grpc-port", str(self.grpc_port),
             "--data-dir", str(self.data_dir), "--log-format", "json"],
            env=self.env, stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL)
        log.close()

    def ready(self) -> bool:
        try:
            return httpx.get(f"{self.rest_url}/readyz", timeout=2).status_code == 200
        except httpx.HTTPError:
            return False

    def wait_ready(self, timeout_s: float = START_S) -> None:
        deadline = time.monotonic() + timeout_s
        while not self.ready():
            assert self.proc is not None and self.proc.poll() is None, \
                f"{self} exited with {self.proc.returncode}:\n{self.log_tail()}"
            assert time.monotonic() < deadline, f"{self} not ready within {timeout_s:.0f}s:\n{self.log_tail()}"
            time.sleep(0.3)

    def stop(self, timeout_s: float = 60.0) -> int:
        """SIGTERM to the replica (its supervisor drains the service process); its exit code."""
        assert self.proc is not None
        self.proc.send_signal(signal.SIGTERM)
        try:
            return self.proc.wait(timeout_s)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
            raise AssertionError(f"{self} did not stop within {timeout_s:.0f}s:\n{self.log_tail()}") from None

    def service_pids(self) -> list[int]:
        """The service process(es) under this replica's supervisor."""
        out = subprocess.run(["pgrep", "-P", str(self.proc.pid), "-f", "single-process"], capture_output=True,
                             text=True).stdout
        return [int(p) for p in out.split()]

    def log_tail(self, n: int = 4000) -> str:
        return self.log_path.read_text(errors="replace")[-n:]

    def __str__(self) -> str:
        return f"{self.service}@{self.host}"


@dataclass
class Fleet:
    replicas: dict[str, list[Replica]]
    front: dict[str, tuple[int, int]]  # service -> HAProxy (REST, gRPC) ports on 127.0.0.1
    secret: str
    workdir: Path
    haproxy: subprocess.Popen | None = None
    env: dict[str, str] = field(default_factory=dict)

    def wait_in_rotation(self, replica: Replica, timeout_s: float = 60.0) -> None:
        wait_in_rotation(self, replica, timeout_s)

    def all(self) -> list[Replica]:
        return [r for replicas in self.replicas.values() for r in replicas]

    def wait_balanced(self, timeout_s: float = 30.0) -> None:
        """Every service answers through the balancer on both ports (HAProxy's checks have seen the replicas)."""
        deadline = time.monotonic() + timeout_s
        for service, (rest, _) in self.front.items():
            while True:
                try:
                    if httpx.get(f"http://{BALANCER}:{rest}/readyz", timeout=2).status_code == 200:
                        break
                except httpx.HTTPError:
                    pass
                assert time.monotonic() < deadline, f"{service} not reachable through HAProxy"
                time.sleep(0.3)


def _server_states(fleet: Fleet) -> dict[tuple[str, str], str]:
    """(backend, server) -> HAProxy's status (UP, DOWN, ...), from its stats socket."""
    with socket.socket(socket.AF_UNIX) as s:
        s.settimeout(5)
        s.connect(str(fleet.workdir / "haproxy.sock"))
        s.sendall(b"show stat\n")
        data = b""
        while chunk := s.recv(65536):
            data += chunk
    rows = [line.split(",") for line in data.decode().splitlines() if line and not line.startswith("#")]
    return {(r[0], r[1]): r[17] for r in rows if len(r) > 17 and r[1] not in ("FRONTEND", "BACKEND")}


def wait_in_rotation(fleet: Fleet, replica: "Replica", timeout_s: float = 60.0) -> None:
    """Until HAProxy sends `replica` traffic again on both transports."""
    letter = "ab"[fleet.replicas[replica.service].index(replica)]
    keys = [(f"{replica.service}_{t}", letter) for t in ("rest", "grpc")]
    deadline = time.monotonic() + timeout_s
    while True:
        states = _server_states(fleet)
        if all(states.get(k, "").startswith("UP") for k in keys):
            return
        assert time.monotonic() < deadline, f"HAProxy has not put {replica} back: {[states.get(k) for k in keys]}"
        time.sleep(0.25)


def _haproxy_config(fleet: Fleet) -> str:
    lines = ["global", "    maxconn 4000", f"    stats socket {fleet.workdir}/haproxy.sock mode 600 level admin",
             "defaults", "    mode http", "    timeout connect 2s",
             "    timeout client 60s", "    timeout server 60s", "    timeout http-request 10s", "    retries 3",
             "    option redispatch", "    timeout check 3s"]
    for service, (rest, grpc) in fleet.front.items():
        # REST: HTTP/1.1 both sides. A replica whose /readyz answers 503 (draining) leaves within one check; a
        # connection refused or closed without an answer is retried on the other replica.
        lines += [f"frontend {service}_rest", f"    bind {BALANCER}:{rest}", f"    default_backend {service}_rest",
                  f"backend {service}_rest", "    balance roundrobin", "    option httpchk GET /readyz",
                  "    http-check expect status 200", "    retry-on conn-failure empty-response 503",
                  "    default-server inter 500ms fall 3 rise 2"]
        lines += [f"    server {chr(97 + i)} {r.host}:{r.rest_port} check" for i, r in enumerate(fleet.replicas[service])]
        # gRPC: h2 both sides, balanced per call (stream). HAProxy 2.6 cannot send a gRPC health check (a binary
        # request, the answer in trailers), so the check is the same process's /readyz, on its REST port: it turns
        # 503 exactly when gRPC health turns NOT_SERVING.
        lines += [f"frontend {service}_grpc", f"    bind {BALANCER}:{grpc} proto h2",
                  f"    default_backend {service}_grpc", f"backend {service}_grpc", "    balance roundrobin",
                  "    option httpchk GET /readyz", "    http-check expect status 200",
                  "    retry-on conn-failure empty-response", "    default-server inter 500ms fall 3 rise 2"]
        lines += [f"    server {chr(97 + i)} {r.host}:{r.grpc_port} proto h2 check port {r.rest_port} check-proto h1"
                  for i, r in enumerate(fleet.replicas[service])]
    return "\n".join(lines) + "\n"


@pytest.fixture(scope="session")
def fleet(tmp_path_factory):
    haproxy = shutil.which("haproxy") or "/usr/sbin/haproxy"
    workdir = tmp_path_factory.mktemp("fleet")
    secret = secrets.token_hex(32)
    front = {s: (_free_port((BALANCER,)), _free_port((BALANCER,))) for s in SERVICES}
    (workdir / "flags.yaml").write_text(FLAGS)
    env = {k: v for k, v in os.environ.items() if not k.startswith(("FXPLAT_", "UNLEASH_", "PROMETHEUS_"))}
    env |= {"DATABASE_URL": DATABASE_URL, "FXPLAT_AUTH": "on", "FXPLAT_AUTH_SECRET": secret,
            "FXPLAT_FLAGS": str(workdir / "flags.yaml"), "FXPLAT_DRAIN_DELAY_S": "1", "FXPLAT_GRACE_S": "5",
            "PYTHONUNBUFFERED": "1"}
    for service, (rest, grpc) in front.items():  # the services reach each other through the balancer
        env[f"FXPLAT_{service.upper()}_REST_URL"] = f"http://{BALANCER}:{rest}"
        env[f"FXPLAT_{service.upper()}_GRPC_TARGET"] = f"{BALANCER}:{grpc}"
    replicas: dict[str, list[Replica]] = {}
    for service in SERVICES:
        rest, grpc = _free_port(HOSTS), _free_port(HOSTS)
        replicas[service] = []
        for i, host in enumerate(HOSTS):
            data_dir = workdir / f"{service}-{'ab'[i]}"  # private per replica: shared state must be in the database
            data_dir.mkdir()
            replicas[service].append(Replica(service, host, rest, grpc, data_dir, env,
                                             workdir / f"{service}-{'ab'[i]}.log"))
    fleet = Fleet(replicas, front, secret, workdir, env=env)
    (workdir / "haproxy.cfg").write_text(_haproxy_config(fleet))
    check = subprocess.run([haproxy, "-c", "-q", "-f", str(workdir / "haproxy.cfg")], capture_output=True, text=True)
    assert check.returncode == 0, f"haproxy rejects its configuration:\n{check.stderr}"
    try:
        for replica in fleet.all():
            replica.start()
        for replica in fleet.all():
            replica.wait_ready()
        fleet.haproxy = subprocess.Popen([haproxy, "-db", "-f", str(workdir / "haproxy.cfg")],
                                         stdout=open(workdir / "haproxy.log", "wb"), stderr=subprocess.STDOUT)
        fleet.wait_balanced()
        for replica in fleet.all():
            wait_in_rotation(fleet, replica)
        yield fleet
    finally:
        for replica in fleet.all():
            if replica.proc is not None and replica.proc.poll() is None:
                replica.proc.send_signal(signal.SIGTERM)
        for replica in fleet.all():
            if replica.proc is not None:
                try:
                    replica.proc.wait(30)
                except subprocess.TimeoutExpired:
                    replica.proc.kill()
                    replica.proc.wait()
        if fleet.haproxy is not None:
            fleet.haproxy.terminate()
            fleet.haproxy.wait(10)


@pytest.fixture(scope="session")
def fleet_env(fleet):
    """The caller's side: endpoints are the balancer's, tokens signed with the fleet's secret."""
    from fxplat.catalog import scopes
    from transport.auth import AuthConfig, MintedTokens

    saved = dict(os.environ)
    os.environ.update({k: v for k, v in fleet.env.items() if k.startswith("FXPLAT_") or k == "DATABASE_URL"})
    os.environ["FXPLAT_TOKEN"] = MintedTokens(AuthConfig(mode="on", secret=fleet.secret).signer(), sub="fleet-test",
                                              scopes=scopes())()
    yield fleet
    os.environ.clear()
    os.environ.update(saved)
