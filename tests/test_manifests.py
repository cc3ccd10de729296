"""The Kubernetes manifests (deploy/k8s): current with the code, valid against the Kubernetes API schemas offline,
setting only variables the platform reads, and describing pods that really start and stop as the manifests say
(the pod's command and environment, run here as a process)."""
from __future__ import annotations

import asyncio
import copy
import importlib.util
import os
import secrets
import signal
import subprocess
import sys
import time
from pathlib import Path

import grpc
import httpx
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc

from transport import config

ROOT = Path(__file__).resolve().parents[1]
FXPLAT = str(Path(sys.executable).with_name("fxplat"))


def _script(name: str):
    spec = importlib.util.spec_from_file_location(name, ROOT / "scripts" / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


validate = _script("validate_manifests")
gen = _script("gen_deploy")


@pytest.fixture(scope="module")
def docs() -> list[dict]:
    return validate.render()


def find(docs, kind: str, name: str) -> dict:
    found = validate._find(docs, kind, name)
    assert found is not None, f"no {kind}/{name}"
    return found


def test_manifests_and_the_docs_table_are_current():
    result = subprocess.run([sys.executable, str(ROOT / "scripts" / "gen_deploy.py"), "--check"],
                            capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stderr


def test_manifests_validate_offline_against_the_kubernetes_schemas(docs):
    assert len(docs) > 20
    assert validate.schema_errors(docs) == []
    assert validate.consistency_errors(docs) == []
    assert validate.unknown_env(docs) == []


def test_the_validator_rejects_what_kubernetes_would(docs):
    broken = copy.deepcopy(find(docs, "Deployment", "backtesting"))
    broken["spec"]["replicas"] = "two"
    broken["spec"]["template"]["spec"]["containers"][0]["livenessProbe"]["httpGets"] = {}  # a typo'd field
    errors = validate.schema_errors([broken])
    assert len(errors) == 1 and "Deployment/backtesting" in errors[0]


def test_a_manifest_setting_a_variable_the_platform_does_not_read_fails(docs):
    docs = copy.deepcopy(docs)
    container = find(docs, "Deployment", "market-analysis")["spec"]["template"]["spec"]["containers"][0]
    container["env"] = [{"name": "FXPLAT_GRACE_SECONDS", "value": "10"}]  # a plausible misspelling
    find(docs, "ConfigMap", "fxplat-settings")["data"]["FXPLAT_WORKER_COUNT"] = "2"
    problems = validate.unknown_env(docs)
    assert any("FXPLAT_GRACE_SECONDS" in p and "Deployment/market-analysis" in p for p in problems), problems
    assert sum("FXPLAT_WORKER_COUNT," in p for p in problems) == len(config.SERVICES), problems  # every pod takes it


def test_termination_grace_must_cover_prestop_drain_and_grace(docs):
    docs = copy.deepcopy(docs)
    find(docs, "ConfigMap", "fxplat-settings")["data"]["FXPLAT_GRACE_S"] = "60"
    problems = validate.consistency_errors(docs)
    assert len(problems) == len(config.SERVICES) and "terminationGracePeriodSeconds 30" in problems[0], problems


def test_every_service_is_deployed_as_the_issue_asks(docs):
    settings = find(docs, "ConfigMap", "fxplat-settings")["data"]
    for service in config.SERVICES:
        name = gen.dns_name(service)
        rest, grpc_port = config.DEFAULT_PORTS[service]
        deployment = find(docs, "Deployment", name)
        pod = deployment["spec"]["template"]["spec"]
        (container,) = pod["containers"]
        assert deployment["spec"]["replicas"] >= 2
        assert container["args"] == ["up", "--service", service]
        assert pod["securityContext"]["runAsNonRoot"] and pod["securityContext"]["runAsUser"] != 0
        assert container["securityContext"]["readOnlyRootFilesystem"] is True
        assert {m["mountPath"] for m in container["volumeMounts"]} >= {settings["FXPLAT_DATA_DIR"], "/tmp"}
        assert container["resources"]["requests"]["cpu"] and container["resources"]["limits"]["memory"]
        assert container["livenessProbe"]["httpGet"]["path"] == "/healthz"
        assert container["readinessProbe"]["httpGet"]["path"] == "/readyz"
        assert container["startupProbe"]["grpc"] == {"port": grpc_port, "service": gen.grpc_service_name(service)}
        assert container["lifecycle"]["preStop"]["sleep"]["seconds"] > 0
        # gRPC: a headless Service that the settings' dns:/// target names; REST: a ClusterIP Service
        headless = find(docs, "Service", f"{name}-grpc")["spec"]
        assert headless["clusterIP"] == "None" and headless["ports"][0]["port"] == grpc_port
        assert settings[f"FXPLAT_{service.upper()}_GRPC_TARGET"] == f"dns:///{gen.fqdn(name + '-grpc')}:{grpc_port}"
        assert find(docs, "Service", name)["spec"]["type"] == "ClusterIP"
        assert settings[f"FXPLAT_{service.upper()}_REST_URL"] == f"http://{gen.fqdn(name)}:{rest}"
        assert find(docs, "PodDisruptionBudget", name)["spec"]["maxUnavailable"] == 1
        assert find(docs, "HorizontalPodAutoscaler", name)["spec"]["minReplicas"] >= 2
    secret = find(docs, "Secret", "fxplat-secrets")["stringData"]
    assert set(secret) == {"FXPLAT_AUTH_SECRET", "DATABASE_URL"}
    assert {find(docs, "Service", n)["spec"]["type"] for n in ("postgres", "unleash")} == {"ExternalName"}


def test_network_policies_let_in_only_the_callers_of_each_service(docs):
    def allowed_peers(service: str) -> set[str]:
        policy = find(docs, "NetworkPolicy", gen.dns_name(service))["spec"]
        peers = set()
        for rule in policy["ingress"]:
            for peer in rule["from"]:
                for expr in peer.get("podSelector", {}).get("matchExpressions", []):
                    peers |= set(expr["values"])
        return peers

    assert allowed_peers("market_analysis") == {"causal-analysis", "backtesting", "analysis-coordinator"}
    assert allowed_peers("causal_analysis") == {"analysis-coordinator"}
    assert allowed_peers("analysis_coordinator") == set()  # only labelled clients and Prometheus
    assert find(docs, "NetworkPolicy", "fxplat-default-deny")["spec"] == {"podSelector": {},
                                                                          "policyTypes": ["Ingress"]}


def _free_ports(n: int) -> list[int]:
    import socket

    socks = [socket.socket() for _ in range(n)]
    try:
        for s in socks:
            s.bind(("127.0.0.1", 0))
        return [s.getsockname()[1] for s in socks]
    finally:
        for s in socks:
            s.close()


@pytest.mark.timeout(300)  # the startup probe allows 2 minutes, the stop 25 s
async def test_the_pod_as_the_manifests_describe_it_starts_probes_ready_and_stops_in_time(docs, tmp_path):
    """The backtesting container's args and environment (settings ConfigMap, a Secret with a generated key; SQLite
    instead of the cluster's PostgreSQL, loopback instead of 0.0.0.0, free ports), run as a process: the three
    probes answer as Kubernetes expects and SIGTERM ends it, exit 0, well within terminationGracePeriodSeconds."""
    deployment = find(docs, "Deployment", "backtesting")
    pod = deployment["spec"]["template"]["spec"]
    (container,) = pod["containers"]
    docs = copy.deepcopy(docs)
    find(docs, "Secret", "fxplat-secrets")["stringData"] = {"FXPLAT_AUTH_SECRET": secrets.token_hex(32)}
    pod_env = validate.container_env(docs, container)
    flags = tmp_path / "flags"
    flags.mkdir()
    (flags / "flags.yaml").write_text(find(docs, "ConfigMap", "fxplat-flags")["data"]["flags.yaml"])
    rest, grpc_port = _free_ports(2)
    env = {k: v for k, v in os.environ.items() if k not in config.env_names()}
    env.update(pod_env)
    env.update(FXPLAT_HOST="127.0.0.1", FXPLAT_DATA_DIR=str(tmp_path / "data"),
               FXPLAT_FLAGS=str(flags / "flags.yaml"), FXPLAT_BACKTESTING_REST_PORT=str(rest),
               FXPLAT_BACKTESTING_GRPC_PORT=str(grpc_port))
    log_path = tmp_path / "pod.log"
    with open(log_path, "wb") as log:
        proc = subprocess.Popen([FXPLAT, *container["args"]], env=env, stdout=log, stderr=subprocess.STDOUT,
                                stdin=subprocess.DEVNULL)
    channel = grpc.aio.insecure_channel(f"127.0.0.1:{grpc_port}")
    try:
        startup = container["startupProbe"]
        health = health_pb2_grpc.HealthStub(channel)
        request = health_pb2.HealthCheckRequest(service=startup["grpc"]["service"])
        for _ in range(startup["failureThreshold"] * startup["periodSeconds"] * 10):  # the startup probe's budget
            assert proc.poll() is None, log_path.read_text()
            try:
                if (await health.Check(request, timeout=1)).status == health_pb2.HealthCheckResponse.SERVING:
                    break
            except grpc.RpcError:
                await asyncio.sleep(0.1)
        else:
            pytest.fail(f"the startup probe would fail:\n{log_path.read_text()}")
        async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{rest}", timeout=3) as http:
            assert (await http.get(container["livenessProbe"]["httpGet"]["path"])).status_code == 200
            ready = await http.get(container["readinessProbe"]["httpGet"]["path"])
            assert ready.status_code == 200, ready.text
            assert (await http.get("/v1/backtests")).status_code == 401  # FXPLAT_AUTH=on with the Secret's key
        started = time.monotonic()
        proc.send_signal(signal.SIGTERM)  # after preStop, which only sleeps
        budget = pod["terminationGracePeriodSeconds"] - container["lifecycle"]["preStop"]["sleep"]["seconds"]
        assert proc.wait(timeout=budget) == 0, log_path.read_text()
        assert time.monotonic() - started < budget
    finally:
        await channel.close()
        if proc.poll() is None:
            proc.kill()
            proc.wait()


def test_the_deployment_guide_names_every_metric_and_no_other():
    import re

    source = (ROOT / "src" / "transport" / "metrics.py").read_text()
    defined = set(re.findall(r'"(fxplat_[a-z_]+)"', source))
    assert len(defined) >= 10
    guide = (ROOT / "docs" / "deployment.md").read_text()
    named = set(re.findall(r"\b(fxplat_[a-z_]+)", guide))
    assert defined - named == set(), "metrics missing from docs/deployment.md's monitoring table"
    assert named - defined == set(), "docs/deployment.md names metrics that src/transport/metrics.py does not define"
