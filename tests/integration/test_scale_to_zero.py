"""Scale to zero and back on the local control plane: the real kube-apiserver, HPA controller and
EndpointSlice controller, the operator (with its metrics API), a real activator process, and a real
sidecar in front of modelsim.

SIMULATION (as in tests/metrics_api_harness.py): the Chute's pods run on kwok nodes, whose addresses
no host owns. The operator reads the idle time of a real sidecar on 127.0.0.1 in place of the pod's
(its test-only address override), and the activator forwards to that sidecar once the Chute has a
ready endpoint (its test-only ``--test-only-endpoints``). Everything else is real.
"""

from __future__ import annotations

import http.client
import json
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from tests.kube_helpers import apply, condition, eventually, get, items
from tests.metrics_api_harness import LoopbackSidecar, metrics_api_on_loopback
from tests.operator_fixtures import OperatorProcess, _free_port

from chute_devcluster.gateway_crds import install_gateway_crds
from chute_devcluster.processes import free_loopback
from chute_shared.ports import ACTIVATOR_CHUTE_PORTS

pytestmark = pytest.mark.integration

ACTIVATOR_POD_IP = "10.244.255.250"
"""The activator's (simulated) pod address in its Service's EndpointSlice: the operator copies it,
nothing here dials it."""
IDLE_WINDOW = 60  # the smallest shutdownAfterSeconds the CRD accepts


def _chute(name: str) -> dict[str, Any]:
    return {
        "apiVersion": "chutes.ai/v1alpha1",
        "kind": "Chute",
        "metadata": {"name": name},
        "spec": {
            "image": "example.com/model:1",
            "nodeSelector": {"gpuCount": 0},
            "concurrency": 4,
            "minInstances": 0,
            "maxInstances": 2,
            "shutdownAfterSeconds": IDLE_WINDOW,
            "monitoring": {"serviceMonitor": False},
        },
    }


def _activator_service(cp: Any, namespace: str) -> None:
    """A selector-less Service with a hand-made EndpointSlice: what the chart's activator looks like
    to the operator."""
    service = {
        "apiVersion": "v1",
        "kind": "Service",
        "metadata": {"name": "activator"},
        "spec": {"ports": [{"name": "metrics", "port": 9090}]},
    }
    endpoints = {
        "apiVersion": "discovery.k8s.io/v1",
        "kind": "EndpointSlice",
        "metadata": {"name": "activator-1", "labels": {"kubernetes.io/service-name": "activator"}},
        "addressType": "IPv4",
        "ports": [{"name": "metrics", "port": 9090, "protocol": "TCP"}],
        "endpoints": [{"addresses": [ACTIVATOR_POD_IP], "conditions": {"ready": True}}],
    }
    apply(cp, service, namespace)
    apply(cp, endpoints, namespace)


def operator_with_scale_to_zero(
    cp: Any, namespace: str, tmp_path: Path, scrape_interval: float = 1.0
) -> Iterator[tuple[OperatorProcess, Path]]:
    """The operator with its metrics API on loopback and scale to zero on (the activator's Service in
    ``namespace``, checked every second); its sidecars scraped every ``scrape_interval``."""
    _activator_service(cp, namespace)
    with metrics_api_on_loopback(
        cp,
        namespace,
        tmp_path,
        scrape_interval=scrape_interval,
        CHUTE_OPERATOR_ACTIVATOR_SERVICE=f"{namespace}/activator",
        CHUTE_OPERATOR_SCALE_TO_ZERO_CHECK_SECONDS="1",
    ) as running:
        yield running


@pytest.fixture
def zero_operator(
    control_plane: Any, chute_crd: Path, namespace: str, tmp_path: Path, session_operator_paused: None
) -> Iterator[tuple[OperatorProcess, Path]]:
    yield from operator_with_scale_to_zero(control_plane, namespace, tmp_path)


class ActivatorProcess:
    def __init__(self, cp: Any, namespace: str, tmp_path: Path, endpoints: Path) -> None:
        self.host, self.metrics_port = free_loopback(ACTIVATOR_CHUTE_PORTS), _free_port()
        self.log = (tmp_path / "activator.log").open("ab")
        self.process = subprocess.Popen(
            [sys.executable, "-m", "chute_operator", "activator", f"--kubeconfig={cp.kubeconfig}",
             f"--host={self.host}", f"--metrics-port={self.metrics_port}",
             f"--namespace={namespace}", f"--test-only-endpoints={endpoints}", "--wake-interval-seconds=2",
             "--drain-seconds=1"],  # a short drain: this test does not roll the activator out
            stdout=self.log, stderr=subprocess.STDOUT,
        )  # fmt: skip

    def ready(self) -> bool:
        try:
            connection = http.client.HTTPConnection(self.host, self.metrics_port, timeout=1)
            connection.request("GET", "/readyz")
            return connection.getresponse().status == 200
        except OSError:
            return False

    def stop(self) -> None:
        self.process.terminate()
        try:
            self.process.wait(15)
        except subprocess.TimeoutExpired:
            self.process.kill()
        self.log.close()


def _route_backends(cp: Any, namespace: str) -> list[tuple[str, str]]:
    """(kind, name) of every backend of the Chute's HTTPRoute (kind ``Service`` by default)."""
    route = get(cp, "httproute", "sleepy", namespace) or {}
    rules = (route.get("spec") or {}).get("rules") or []
    return [
        (ref.get("kind", "Service"), ref["name"]) for rule in rules for ref in rule.get("backendRefs") or []
    ]


def _events(cp: Any, namespace: str, reason: str) -> list[dict[str, Any]]:
    return [e for e in items(cp, "events", namespace) if e.get("reason") == reason]


def _replicas_owners(cp: Any, namespace: str) -> set[str]:
    """The field managers of the Deployment's spec.replicas."""
    shown = cp.kubectl("get", "deployment", "sleepy", "-n", namespace, "-o", "json", "--show-managed-fields")
    deployment = json.loads(shown.stdout)
    return {
        entry["manager"]
        for entry in deployment["metadata"].get("managedFields") or []
        if "f:replicas" in ((entry.get("fieldsV1") or {}).get("f:spec") or {})
    }


def test_idle_goes_to_zero_and_a_request_at_zero_wakes_it_and_is_answered(
    control_plane: Any,
    namespace: str,
    zero_operator: tuple[OperatorProcess, Path],
    sidecar: LoopbackSidecar,
    tmp_path: Path,
) -> None:
    cp, (operator, overrides) = control_plane, zero_operator
    # Issue 28, item 3: its HTTPRoute sends to its InferencePool while a replica is ready, to its
    # Service (the activator) before it sleeps and while it is at zero (pool_route.py).
    install_gateway_crds(cp.kubectl)
    chute = _chute("sleepy")
    chute["spec"]["expose"] = {"httpRoute": {"parentRefs": [{"name": "gw"}]}, "inferencePool": {}}
    apply(cp, chute, namespace)
    pod = eventually(
        lambda: next(iter(items(cp, "pods", namespace, "chutes.ai/chute=sleepy")), None), what="the pod"
    )
    overrides.write_text(
        json.dumps({f"{namespace}/{pod['metadata']['name']}": f"127.0.0.1:{sidecar.metrics_port}"})
    )
    eventually(
        lambda: _route_backends(cp, namespace) == [("InferencePool", "sleepy")] or None,
        what="the HTTPRoute to the InferencePool while a replica is ready",
        timeout=60,
    )

    # Idle for the window: replicas 0 (owned by the operator's scale-to-zero manager), the pod gone.
    eventually(
        lambda: (lambda d: d if d and d["spec"].get("replicas") == 0 else None)(
            get(cp, "deployment", "sleepy", namespace)
        ),
        what="replicas 0",
        timeout=IDLE_WINDOW + 60,
    )
    assert _replicas_owners(cp, namespace) == {"chute-operator-zero"}
    assert _route_backends(cp, namespace) == [("Service", "sleepy")]  # moved before the sleep
    eventually(lambda: not items(cp, "pods", namespace, "chutes.ai/chute=sleepy") or None, what="pod gone")
    chute = eventually(
        lambda: (lambda c: c if condition(c, "Ready").get("reason") == "ScaledToZero" else None)(
            get(cp, "chute", "sleepy", namespace)
        ),
        what="status ScaledToZero",
    )
    assert condition(chute, "Ready")["status"] == "True"
    assert (condition(chute, "Available")["status"], condition(chute, "Available")["reason"]) == (
        "False",
        "ScaledToZero",
    )
    assert condition(chute, "Autoscaling")["reason"] == "ScaledToZero"
    assert _events(cp, namespace, "ScaledToZero")
    piece = eventually(
        lambda: get(cp, "endpointslice", "sleepy-activator", namespace), what="activator slice"
    )
    assert piece["metadata"]["labels"]["kubernetes.io/service-name"] == "sleepy"
    assert [e["addresses"] for e in piece["endpoints"]] == [[ACTIVATOR_POD_IP]]

    # The HPA stands still at zero (one sync period of the local kube-controller-manager and more).
    time.sleep(16)
    assert get(cp, "deployment", "sleepy", namespace)["spec"]["replicas"] == 0  # type: ignore[index]

    # A request to the activator at zero: held, the Chute woken, answered once a replica is ready.
    endpoints = tmp_path / "test-only-endpoints.json"
    endpoints.write_text(json.dumps({f"{namespace}/sleepy": f"127.0.0.1:{sidecar.port}"}))
    activator = ActivatorProcess(cp, namespace, tmp_path, endpoints)
    try:
        eventually(lambda: activator.ready() or None, what="activator ready", timeout=30)
        port = get(cp, "chute", "sleepy", namespace)["status"]["activatorPort"]  # type: ignore[index]
        assert piece["ports"][0]["port"] == port  # the slice sends the Service's connections there
        connection = http.client.HTTPConnection(activator.host, port, timeout=120)
        body = json.dumps(
            {"model": "chute-modelsim", "max_tokens": 3, "messages": [{"role": "user", "content": "hi"}]}
        )
        started = time.monotonic()
        connection.request(
            "POST", "/v1/chat/completions", body,
            {"Content-Type": "application/json", "Host": f"sleepy.{namespace}.svc.cluster.local"},
        )  # fmt: skip
        response = connection.getresponse()
        answer = response.read()
        print(f"request at zero answered {response.status} after {time.monotonic() - started:.1f}s")
        assert response.status == 200, answer
        assert json.loads(answer)["object"] == "chat.completion"
    finally:
        activator.stop()
    assert _events(cp, namespace, "Waking")
    deployment = get(cp, "deployment", "sleepy", namespace)
    assert deployment is not None
    assert deployment["spec"]["replicas"] >= 1
    assert "chute-operator-zero" not in _replicas_owners(cp, namespace)  # handed back
    eventually(
        lambda: get(cp, "endpointslice", "sleepy-activator", namespace) is None or None, what="slice gone"
    )
    eventually(
        lambda: _route_backends(cp, namespace) == [("InferencePool", "sleepy")] or None,
        what="the HTTPRoute back to the InferencePool once awake",
        timeout=60,
    )
    assert operator.process is not None
    assert operator.process.poll() is None
