"""The deployment files parse and say what the README and the node expect."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml

DEPLOY = Path(__file__).resolve().parent.parent / "deploy"


def _documents() -> dict[str, dict[str, Any]]:
    with (DEPLOY / "k8s" / "lifeline.yaml").open() as f:
        return {f"{d['kind']}/{d['metadata']['name']}": d for d in yaml.safe_load_all(f)}


def test_the_kubernetes_manifests_probe_drain_and_keep_websockets_open() -> None:
    docs = _documents()
    assert set(docs) == {
        "Deployment/lifeline",
        "PodDisruptionBudget/lifeline",
        "Service/lifeline-nodes",
        "Service/lifeline",
        "Ingress/lifeline",
    }
    pod = docs["Deployment/lifeline"]["spec"]["template"]["spec"]
    container = pod["containers"][0]
    assert container["readinessProbe"]["httpGet"]["path"] == "/readyz"
    assert container["livenessProbe"]["httpGet"]["path"] == "/healthz"
    env = {e["name"]: e.get("value") for e in container["env"]}
    drain = float(env["LIFELINE_SHUTDOWN_TIMEOUT_S"])
    pause = float(container["lifecycle"]["preStop"]["exec"]["command"][-1])
    assert pod["terminationGracePeriodSeconds"] > pause + drain
    assert env["LIFELINE_ENV"] == "production" and env["LIFELINE_HOST"] == "0.0.0.0"
    assert container["envFrom"][0]["secretRef"]["name"] == "lifeline-secrets"
    assert docs["Service/lifeline-nodes"]["spec"]["clusterIP"] == "None"
    selector = docs["Deployment/lifeline"]["spec"]["selector"]["matchLabels"]
    assert docs["PodDisruptionBudget/lifeline"]["spec"]["selector"]["matchLabels"] == selector
    annotations = docs["Ingress/lifeline"]["metadata"]["annotations"]
    assert int(annotations["nginx.ingress.kubernetes.io/proxy-read-timeout"]) >= 3600
