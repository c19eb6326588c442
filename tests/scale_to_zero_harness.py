"""Scale to zero on the local cluster's real node: shared by benchmarks/scale_to_zero.py and
tests/e2e/test_scale_to_zero_real_node.py.

A Chute (minInstances 0, maxInstances 2, shutdownAfterSeconds 60) runs the project image's modelsim
with a load time behind the real sidecar on the real node; the operator (with its metrics API,
whose scraper reads the real pods' sidecars) and a real activator process on the host (dialling
the real pod IPs) run against the control plane. Requests reach the activator directly on
loopback, not through the Service's ClusterIP (the activator runs on the host, whose address
cannot be an endpoint).
"""

from __future__ import annotations

import http.client
import json
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

from chute_operator.devcluster.controlplane import ControlPlane
from tests.kube_helpers import apply, condition, eventually, get, items
from tests.metrics_api_harness import metrics_api_on_loopback, real_node_chute
from tests.operator_fixtures import _free_port

SELECTOR = "chutes.ai/chute=bench"
IDLE_WINDOW = 60


def chute(image: str, node: str, load_seconds: float) -> dict[str, Any]:
    manifest = real_node_chute("bench", image, node)
    manifest["spec"].update({"minInstances": 0, "maxInstances": 2, "shutdownAfterSeconds": IDLE_WINDOW})
    manifest["spec"]["args"] = [*manifest["spec"]["args"], f"--load-seconds={load_seconds:g}"]
    return manifest


def activator_service(cp: ControlPlane, namespace: str) -> None:
    """What the operator reads to find the activator: a Service and a slice with a placeholder pod
    address (the benchmark's clients reach the activator on loopback; nothing dials this address)."""
    apply(cp, {"apiVersion": "v1", "kind": "Service", "metadata": {"name": "activator"},
               "spec": {"ports": [{"name": "http", "port": 80, "targetPort": 8080}]}}, namespace)  # fmt: skip
    apply(
        cp,
        {
            "apiVersion": "discovery.k8s.io/v1",
            "kind": "EndpointSlice",
            "metadata": {"name": "activator-1", "labels": {"kubernetes.io/service-name": "activator"}},
            "addressType": "IPv4",
            "ports": [{"name": "http", "port": 8080, "protocol": "TCP"}],
            "endpoints": [{"addresses": ["10.244.255.250"], "conditions": {"ready": True}}],
        },
        namespace,
    )


def at_zero(cp: ControlPlane, namespace: str) -> bool:
    deployment = get(cp, "deployment", "bench", namespace) or {}
    return bool((deployment.get("spec") or {}).get("replicas") == 0)


def request_at_zero(port: int, namespace: str) -> tuple[int, float]:
    body = json.dumps(
        {"model": "chute-modelsim", "max_tokens": 3, "messages": [{"role": "user", "content": "hi"}]}
    )
    started = time.monotonic()
    connection = http.client.HTTPConnection("127.0.0.1", port, timeout=300)
    connection.request(
        "POST", "/v1/chat/completions", body,
        {"Content-Type": "application/json", "Host": f"bench.{namespace}.svc.cluster.local"},
    )  # fmt: skip
    response = connection.getresponse()
    response.read()
    connection.close()
    return response.status, time.monotonic() - started


def run(cp: ControlPlane, work: Path, image: str, runs: int, load_seconds: float) -> list[dict[str, Any]]:
    namespace = "bench-scale-to-zero"
    cp.kubectl("create", "namespace", namespace)
    eventually(lambda: get(cp, "serviceaccount", "default", namespace), what="default ServiceAccount")
    activator_service(cp, namespace)
    results: list[dict[str, Any]] = []
    port, metrics_port = _free_port(), _free_port()
    log = (work / "activator.log").open("ab")
    activator = subprocess.Popen(
        [sys.executable, "-m", "chute_operator", "activator", f"--kubeconfig={cp.kubeconfig}",
         "--host=127.0.0.1", f"--port={port}", f"--metrics-port={metrics_port}", f"--namespace={namespace}",
         "--wake-interval-seconds=2", "--max-wait-seconds=280"],
        stdout=log, stderr=subprocess.STDOUT,
    )  # fmt: skip
    try:
        with metrics_api_on_loopback(
            cp, namespace, work,
            CHUTE_OPERATOR_ACTIVATOR_SERVICE=f"{namespace}/activator",
            CHUTE_OPERATOR_SCALE_TO_ZERO_CHECK_SECONDS="1",
            CHUTE_OPERATOR_SIDECAR_IMAGE=image,
        ):  # fmt: skip
            node = cp.real_node_settings.name if cp.real_node_settings else ""
            apply(cp, chute(image, node, load_seconds), namespace)
            for index in range(runs):
                eventually(
                    lambda: [p for p in items(cp, "pods", namespace, SELECTOR)
                             if condition(p, "Ready").get("status") == "True"] or None,
                    what="the Chute's pod Ready", timeout=600,
                )  # fmt: skip
                ready = time.monotonic()
                eventually(
                    lambda: at_zero(cp, namespace) or None, what="replicas 0", timeout=IDLE_WINDOW + 120
                )
                to_zero = time.monotonic() - ready
                eventually(
                    lambda: not items(cp, "pods", namespace, SELECTOR) or None, what="pod gone", timeout=120
                )
                gone = time.monotonic() - ready
                status, seconds = request_at_zero(port, namespace)
                results.append(
                    {
                        "status": status,
                        "ready_to_zero_replicas_s": round(to_zero, 1),
                        "ready_to_pod_gone_s": round(gone, 1),
                        "request_at_zero_answered_s": round(seconds, 2),
                        "added_beyond_load_s": round(seconds - load_seconds, 2),
                    }
                )
                print(f"run {index + 1}: {results[-1]}", flush=True)
    finally:
        activator.terminate()
        activator.wait(30)
        log.close()
        cp.kubectl("delete", "namespace", namespace, "--wait=false", check=False)
    return results
