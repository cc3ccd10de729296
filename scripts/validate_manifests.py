"""Render the Kubernetes manifests (deploy/k8s) and validate them offline, as CI does:

- schema: every object against the Kubernetes API schema of the version given (kubernetes-validate, strict: unknown
  fields are errors), without a cluster;
- environment: every variable a container gets (env, and the keys of the ConfigMaps and Secrets it takes with
  envFrom) is one the platform reads (transport.config.ENV_VARS);
- consistency: each Service, PodDisruptionBudget and HPA finds its Deployment, probes use declared ports, and a pod's
  terminationGracePeriodSeconds exceeds preStop + FXPLAT_DRAIN_DELAY_S + FXPLAT_GRACE_S (or the kubelet kills calls).

"Render" is what `kubectl apply -k deploy/k8s` does with this kustomization (it lists files, no transformers): the
listed files' objects, in order. secret.example.yaml, outside the kustomization, is validated too.

    python scripts/validate_manifests.py [--kube-version 1.30]
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "src"))

from transport import config  # noqa: E402

K8S = ROOT / "deploy" / "k8s"
KUBE_VERSION = "1.30"
EXTRA = ("secret.example.yaml",)  # validated, not applied


def render(directory: Path = K8S) -> list[dict]:
    """The objects `kubectl apply -k` would send, then those of the example files."""
    kustomization = yaml.safe_load((directory / "kustomization.yaml").read_text())
    unsupported = set(kustomization) - {"apiVersion", "kind", "resources"}
    if unsupported:  # transformers would change the objects; this renderer would then validate something else
        raise ValueError(f"kustomization.yaml uses {sorted(unsupported)}: this renderer only lists resources")
    docs = []
    for name in [*kustomization["resources"], *EXTRA]:
        docs += [d for d in yaml.safe_load_all((directory / name).read_text()) if d is not None]
    return docs


def schema_errors(docs: list[dict], version: str = KUBE_VERSION) -> list[str]:
    import kubernetes_validate

    errors = []
    for doc in docs:
        try:
            kubernetes_validate.validate(doc, version, strict=True)
        except kubernetes_validate.ValidationError as exc:
            errors.append(f"{_name(doc)}: {exc.json_path}: {exc.message}")
        except (kubernetes_validate.SchemaNotFoundError, kubernetes_validate.InvalidSchemaError) as exc:
            errors.append(f"{_name(doc)}: no Kubernetes {version} schema: {exc}")
    return errors


def _name(doc: dict) -> str:
    return f"{doc.get('kind')}/{doc.get('metadata', {}).get('name')}"


def _find(docs: list[dict], kind: str, name: str) -> dict | None:
    return next((d for d in docs if d.get("kind") == kind and d["metadata"]["name"] == name), None)


def _pods(docs: list[dict]):
    for doc in docs:
        if doc.get("kind") == "Deployment":
            yield doc, doc["spec"]["template"]["spec"]


def container_env(docs: list[dict], container: dict) -> dict[str, str]:
    """Variable -> value (or where it comes from) as the container will see it."""
    env: dict[str, str] = {}
    for source in container.get("envFrom", []):
        for kind, ref in (("ConfigMap", "configMapRef"), ("Secret", "secretRef")):
            if ref in source:
                found = _find(docs, kind, source[ref]["name"])
                if found is None:
                    raise ValueError(f"envFrom names {kind}/{source[ref]['name']}, which no manifest defines")
                data = {**found.get("data", {}), **found.get("stringData", {})}
                env.update({source.get("prefix", "") + k: str(v) for k, v in data.items()})
    for item in container.get("env", []):
        env[item["name"]] = str(item.get("value", item.get("valueFrom", "")))
    return env


def unknown_env(docs: list[dict]) -> list[str]:
    known = config.env_names()
    problems = []
    for deployment, pod in _pods(docs):
        for container in pod.get("containers", []) + pod.get("initContainers", []):
            for name in sorted(set(container_env(docs, container)) - known):
                problems.append(f"{_name(deployment)}: sets {name}, which the platform does not read "
                                "(not in transport.config.ENV_VARS)")
    return problems


def consistency_errors(docs: list[dict]) -> list[str]:
    errors = []
    pod_labels = {d["metadata"]["name"]: d["spec"]["template"]["metadata"]["labels"]
                  for d in docs if d.get("kind") == "Deployment"}

    def selects_a_deployment(selector: dict) -> bool:
        return any(selector.items() <= labels.items() for labels in pod_labels.values())

    for doc in docs:
        kind, spec = doc.get("kind"), doc.get("spec", {})
        if kind == "Service" and spec.get("type") != "ExternalName" and not selects_a_deployment(spec["selector"]):
            errors.append(f"{_name(doc)}: selects no Deployment's pods")
        if kind == "PodDisruptionBudget" and not selects_a_deployment(spec["selector"]["matchLabels"]):
            errors.append(f"{_name(doc)}: selects no Deployment's pods")
        if kind == "HorizontalPodAutoscaler" and spec["scaleTargetRef"]["name"] not in pod_labels:
            errors.append(f"{_name(doc)}: scales {spec['scaleTargetRef']['name']}, which is not a Deployment")
    for deployment, pod in _pods(docs):
        for container in pod["containers"]:
            ports = {p["name"]: p["containerPort"] for p in container.get("ports", [])}
            for probe in ("startupProbe", "livenessProbe", "readinessProbe"):
                handler = container.get(probe, {})
                port = (handler.get("httpGet") or handler.get("grpc") or {}).get("port")
                if port is not None and port not in ports and port not in ports.values():
                    errors.append(f"{_name(deployment)}: {probe} uses port {port}, which the container does not "
                                  "declare")
            env = container_env(docs, container)
            pre_stop = container.get("lifecycle", {}).get("preStop", {}).get("sleep", {}).get("seconds", 0)
            drain = float(env.get("FXPLAT_DRAIN_DELAY_S", config.DEFAULT_DRAIN_DELAY_S))
            grace = float(env.get("FXPLAT_GRACE_S", config.DEFAULT_GRACE_S))
            budget = pod.get("terminationGracePeriodSeconds", 30)
            if budget <= pre_stop + drain + grace:
                errors.append(f"{_name(deployment)}: terminationGracePeriodSeconds {budget} must exceed preStop "
                              f"{pre_stop} + FXPLAT_DRAIN_DELAY_S {drain:g} + FXPLAT_GRACE_S {grace:g}")
    return errors


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--kube-version", default=KUBE_VERSION, help="Kubernetes API version to validate against")
    args = parser.parse_args(argv)
    docs = render()
    problems = schema_errors(docs, args.kube_version) + unknown_env(docs) + consistency_errors(docs)
    for problem in problems:
        print(f"error: {problem}", file=sys.stderr)
    kinds: dict[str, int] = {}
    for doc in docs:
        kinds[doc["kind"]] = kinds.get(doc["kind"], 0) + 1
    summary = ", ".join(f"{n} {k}" for k, n in sorted(kinds.items()))
    print(f"{len(docs)} objects ({summary}): {'INVALID' if problems else 'valid'} against Kubernetes "
          f"{args.kube_version} (strict), env and consistency checks {'failed' if problems else 'passed'}")
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main())
