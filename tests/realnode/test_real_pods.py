"""Chutes whose pods run for real on the real node: the operator, the rendered pod, the sidecar and the
simulated model server together (issue 10).

Traffic goes only from this machine to the real node's pod IPs and ClusterIPs (kept on the machine by
the network guard); every client is bounded in requests and seconds.
"""

from __future__ import annotations

import ipaddress
import secrets
import threading
import time
import urllib.request
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import pytest
from prometheus_client.parser import text_string_to_metric_families

from chute_devcluster.controlplane import ControlPlane
from chute_devcluster.realnode import RealNode
from tests.kube_helpers import condition, eventually, get, service_url
from tests.operator_fixtures import OperatorProcess
from tests.realnode.conftest import (
    Answer,
    chat,
    container_status,
    deploy,
    http,
    pods,
    real_chute,
    running_pods,
    wait_serving,
)

pytestmark = [pytest.mark.realnode, pytest.mark.e2e, pytest.mark.timeout(600)]

SIDECAR_METRICS_PORT = 9090
SIDECAR_PORT = 8080


def sidecar_metric(pod: dict[str, Any], name: str, **labels: str) -> float:
    """Sum of a sidecar metric's samples whose labels include ``labels``, read from the pod IP."""
    url = f"http://{pod['status']['podIP']}:{SIDECAR_METRICS_PORT}/metrics"
    with urllib.request.urlopen(url, timeout=10) as response:
        text = response.read().decode()
    return sum(
        sample.value
        for family in text_string_to_metric_families(text)
        for sample in family.samples
        if sample.name == name and all(sample.labels.get(k) == v for k, v in labels.items())
    )


def restarts(pod: dict[str, Any], container: str = "model") -> int:
    return int(container_status(pod, container).get("restartCount", 0))


def fresh_pod(cp: ControlPlane, name: str, namespace: str) -> dict[str, Any]:
    found = running_pods(cp, name, namespace)
    assert len(found) == 1, [p["metadata"]["name"] for p in found]
    return found[0]


def ready_pod(cp: ControlPlane, name: str, namespace: str) -> dict[str, Any] | None:
    found = running_pods(cp, name, namespace)
    return next((pod for pod in found if condition(pod, "Ready").get("status") == "True"), None)


def ready(cp: ControlPlane, name: str, namespace: str) -> tuple[str, str, str]:
    found = condition(get(cp, "chute", name, namespace), "Ready")
    return found.get("status", ""), found.get("reason", ""), found.get("message", "")


def test_a_chute_serves_on_the_real_node_through_its_service(
    control_plane: ControlPlane,
    real_node: RealNode,
    operator: OperatorProcess,
    project_image: str,
    namespace: str,
) -> None:
    cp = control_plane
    key = "sk-" + secrets.token_hex(12)
    cp.kubectl("create", "secret", "generic", "keys", f"--from-literal=api-key={key}", "-n", namespace)
    manifest = real_chute("served", project_image, [], concurrency=4)
    manifest["spec"]["auth"] = {"apiKeySecretRef": {"name": "keys", "key": "api-key"}}
    deploy(cp, manifest, namespace)
    pod = wait_serving(cp, "served", namespace)

    assert pod["spec"]["nodeName"] == real_node.name
    assert ipaddress.ip_address(pod["status"]["podIP"]) in ipaddress.ip_network(real_node.settings.pod_subnet)
    tasks = real_node.ctr("tasks", "list").stdout
    for container in ("model", "chute-sidecar"):
        status = container_status(pod, container)
        assert "running" in status["state"], status
        container_id = status["containerID"].removeprefix("containerd://")
        line = next(line for line in tasks.splitlines() if line.startswith(container_id))
        pid = int(line.split()[1])
        command_line = Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode()
        assert ("modelsim" if container == "model" else "sidecar") in command_line, command_line
        if container == "model":  # the simulated GPU came from the device plugin's Allocate
            environment = Path(f"/proc/{pid}/environ").read_bytes().split(b"\0")
            assert any(v.startswith(b"NVIDIA_VISIBLE_DEVICES=sim-gpu-") for v in environment), environment

    url = service_url(cp, "served", namespace)
    rejected_before = sidecar_metric(pod, "chute_requests_rejected_total", reason="auth")
    assert chat(url).status == 401
    assert chat(url, api_key="sk-wrong").status == 401
    answer = chat(url, "what is real?", api_key=key)
    assert answer.status == 200, answer
    body = answer.json()
    assert body["choices"][0]["message"]["content"]
    assert body["usage"]["completion_tokens"] == 4

    assert sidecar_metric(pod, "chute_requests_total", method="POST", code="200") == 1
    assert sidecar_metric(pod, "chute_requests_rejected_total", reason="auth") == rejected_before + 2
    assert sidecar_metric(pod, "chute_completion_tokens_total") == 4


def test_host_and_pod_reach_pod_ip_and_cluster_ip_on_the_real_node(
    control_plane: ControlPlane,
    real_node: RealNode,
    operator: OperatorProcess,
    project_image: str,
    namespace: str,
) -> None:
    """Issue 16 on the real node: under the network guard, the host reaches a pod IP and a ClusterIP,
    and a pod reaches a ClusterIP (its own Service, through the bridge's hairpin). The Chute allows
    egress: with it closed, its NetworkPolicy (enforced on the real node) would drop the pod's
    connection to its own Service, which is not among its allowed destinations."""
    cp = control_plane
    deploy(cp, real_chute("reach", project_image, [], allowExternalEgress=True), namespace)
    pod = wait_serving(cp, "reach", namespace)
    assert http(f"http://{pod['status']['podIP']}:{SIDECAR_METRICS_PORT}/metrics", timeout=5).status == 200
    assert chat(f"http://{pod['status']['podIP']}:{SIDECAR_PORT}").status == 200
    url = service_url(cp, "reach", namespace)
    assert chat(url).status == 200
    from_pod = (
        "import urllib.request as r; "
        f"print(r.urlopen(r.Request('{url}/v1/models', headers={{}}), timeout=10).status)"
    )
    name = pod["metadata"]["name"]
    result = cp.kubectl("exec", name, "-n", namespace, "-c", "model", "--", "python3", "-c", from_pod)
    assert result.stdout.strip() == "200", result


def test_concurrency_two_answers_three_of_five_parallel_requests_429(
    control_plane: ControlPlane,
    real_node: RealNode,
    operator: OperatorProcess,
    project_image: str,
    namespace: str,
) -> None:
    cp = control_plane
    deploy(
        cp,
        real_chute("limited", project_image, ["--time-to-first-token-seconds", "4"], concurrency=2),
        namespace,
    )
    wait_serving(cp, "limited", namespace)
    url = service_url(cp, "limited", namespace)
    assert chat(url).status == 200  # warm: the connection pool and the first answer

    with ThreadPoolExecutor(max_workers=5) as pool:
        answers: list[Answer] = list(pool.map(lambda i: chat(url, f"request {i}"), range(5)))

    codes = sorted(a.status for a in answers)
    assert codes == [200, 200, 429, 429, 429], codes
    for refused in (a for a in answers if a.status == 429):
        assert int(refused.headers["Retry-After"]) >= 1


def test_a_model_loading_for_40s_is_reported_loading_then_serving_and_never_killed(
    control_plane: ControlPlane,
    real_node: RealNode,
    operator: OperatorProcess,
    project_image: str,
    namespace: str,
) -> None:
    cp = control_plane
    deploy(cp, real_chute("slowload", project_image, ["--load-seconds", "40"]), namespace)
    eventually(
        lambda: ready(cp, "slowload", namespace)[1] == "ModelLoading",
        what="Ready=False ModelLoading",
        timeout=60,
    )
    assert ready(cp, "slowload", namespace)[0] == "False"
    pod = wait_serving(cp, "slowload", namespace, timeout=120)
    assert ready(cp, "slowload", namespace)[:2] == ("True", "Serving")
    assert restarts(pod) == 0
    assert restarts(pod, "chute-sidecar") == 0
    assert chat(service_url(cp, "slowload", namespace)).status == 200


def test_a_model_that_crashes_after_serving_reloads_slowly_without_being_killed_and_serves_again(
    control_plane: ControlPlane,
    real_node: RealNode,
    operator: OperatorProcess,
    project_image: str,
    namespace: str,
) -> None:
    cp = control_plane
    args = ["--load-seconds", "25", "--crash-after-requests", "1", "--fault-once-file", "/cache/crashed"]
    deploy(cp, real_chute("crashy", project_image, args), namespace)
    wait_serving(cp, "crashy", namespace, timeout=120)
    url = service_url(cp, "crashy", namespace)
    assert chat(url).status == 200  # the model answers, then exits 1

    pod = eventually(
        lambda: next((p for p in running_pods(cp, "crashy", namespace) if restarts(p) == 1), None),
        what="the model's restart",
        timeout=60,
    )
    # Reloading for 25 s: the pod is not Ready, and nothing kills the model meanwhile.
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        pod = fresh_pod(cp, "crashy", namespace)
        assert restarts(pod) == 1, container_status(pod, "model")
        if condition(pod, "Ready").get("status") == "True":
            break
        time.sleep(1)
    else:
        pytest.fail("the pod did not turn Ready after the reload")
    # The operator's status follows the pod (a pod's events reach it after a short coalescing delay).
    eventually(
        lambda: ready(cp, "crashy", namespace)[:2] == ("True", "Serving") or None,
        what="the Chute Ready and Serving again",
        timeout=15,
    )
    assert chat(url).status == 200  # serves again: no drain left behind
    assert sidecar_metric(pod, "chute_draining") == 0
    assert restarts(fresh_pod(cp, "crashy", namespace)) == 1


def test_a_real_oom_kill_is_reported_with_the_container_and_the_pod_serves_again(
    control_plane: ControlPlane,
    real_node: RealNode,
    operator: OperatorProcess,
    project_image: str,
    namespace: str,
) -> None:
    """The kernel's OOM killer ends the model at its 256Mi limit (once: a fault-once file on the
    cache emptyDir); Degraded names the container for OOM_RECENT_SECONDS after the kill. Once the
    restarted model serves again, the Chute is Ready."""
    cp = control_plane
    args = ["--grow-mb-per-second", "200", "--fault-once-file", "/cache/grown"]
    deploy(cp, real_chute("hungry", project_image, args), namespace)

    def oom_killed() -> dict[str, Any] | None:
        for pod in running_pods(cp, "hungry", namespace):
            last = container_status(pod, "model").get("lastState", {}).get("terminated", {})
            if last.get("reason") == "OOMKilled":
                return pod
        return None

    pod = eventually(oom_killed, what="an OOMKilled model container", timeout=120)
    assert container_status(pod, "model")["lastState"]["terminated"]["exitCode"] == 137

    def degraded_oom() -> dict[str, Any] | None:
        found = condition(get(cp, "chute", "hungry", namespace), "Degraded")
        return found if found.get("reason") == "OOMKilled" else None

    degraded = eventually(
        degraded_oom,
        what="Degraded=True OOMKilled",
        timeout=60,
    )
    assert degraded["status"] == "True"
    assert "container model ran out of memory" in degraded["message"]

    pod = eventually(lambda: ready_pod(cp, "hungry", namespace), what="the pod Ready again", timeout=120)
    assert restarts(pod) == 1
    eventually(
        lambda: condition(get(cp, "chute", "hungry", namespace), "Ready").get("status") == "True",
        what="the Chute Ready once the restarted model serves",
        timeout=60,
    )
    chute_now = get(cp, "chute", "hungry", namespace)
    assert condition(chute_now, "Available").get("status") == "True"
    assert condition(chute_now, "Degraded").get("reason") == "OOMKilled", "still reported while recent"
    assert chat(service_url(cp, "hungry", namespace)).status == 200
    assert restarts(fresh_pod(cp, "hungry", namespace)) == 1


class BoundedClient:
    """Sends one request after another through a Service until stopped, at most ``limit`` requests or
    ``seconds`` seconds; records every status (0 for a connection error)."""

    def __init__(self, url: str, limit: int = 2000, seconds: float = 180.0) -> None:
        self.url, self.limit, self.seconds = url, limit, seconds
        self.statuses: list[int] = []
        self.errors: list[str] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        deadline = time.monotonic() + self.seconds
        while not self._stop.is_set() and len(self.statuses) < self.limit and time.monotonic() < deadline:
            try:
                self.statuses.append(chat(self.url, timeout=20).status)
            except OSError as error:
                self.statuses.append(0)
                self.errors.append(repr(error))
            time.sleep(0.05)

    def __enter__(self) -> BoundedClient:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join(30)

    @property
    def failed(self) -> list[int]:
        return [status for status in self.statuses if status != 200]


def test_a_rolling_update_under_steady_load_fails_no_request(
    control_plane: ControlPlane,
    real_node: RealNode,
    operator: OperatorProcess,
    project_image: str,
    namespace: str,
) -> None:
    cp = control_plane
    manifest = real_chute("rolling", project_image, ["--load-seconds", "3"], concurrency=8)
    deploy(cp, manifest, namespace)
    old = wait_serving(cp, "rolling", namespace)
    url = service_url(cp, "rolling", namespace)

    with BoundedClient(url) as client:
        eventually(lambda: len(client.statuses) >= 5, what="the client's first answers", timeout=30)
        manifest["spec"]["args"] = ["--model", "sim", "--load-seconds", "3", "--output-tokens", "8"]
        deploy(cp, manifest, namespace)
        eventually(
            lambda: (
                [p["metadata"]["name"] for p in pods(cp, "rolling", namespace)]
                and old["metadata"]["name"]
                not in [p["metadata"]["name"] for p in pods(cp, "rolling", namespace)]
                and all(condition(p, "Ready").get("status") == "True" for p in pods(cp, "rolling", namespace))
            ),
            what="the rollout to replace the old pod",
            timeout=150,
        )
        sent_after_rollout = len(client.statuses)
        eventually(lambda: len(client.statuses) >= sent_after_rollout + 5, what="answers from the new pod")
    assert len(client.statuses) > 20
    assert client.failed == [], (client.failed, client.errors[:5])


def test_deleting_a_pod_lets_its_requests_in_flight_complete(
    control_plane: ControlPlane,
    real_node: RealNode,
    operator: OperatorProcess,
    project_image: str,
    namespace: str,
) -> None:
    cp = control_plane
    deploy(
        cp,
        real_chute("draining", project_image, ["--time-to-first-token-seconds", "6"], concurrency=4),
        namespace,
    )
    pod = wait_serving(cp, "draining", namespace)
    url = f"http://{pod['status']['podIP']}:{SIDECAR_PORT}"
    with ThreadPoolExecutor(max_workers=3) as pool:
        in_flight = [pool.submit(chat, url, f"slow {i}") for i in range(3)]
        eventually(
            lambda: sidecar_metric(pod, "chute_requests_in_flight") == 3,
            what="3 requests in flight",
            timeout=5,
        )
        cp.kubectl("delete", "pod", pod["metadata"]["name"], "-n", namespace, "--wait=false")
        statuses = [future.result(timeout=60).status for future in in_flight]
    assert statuses == [200, 200, 200]
    eventually(
        lambda: (
            pod["metadata"]["name"] not in [p["metadata"]["name"] for p in pods(cp, "draining", namespace)]
        ),
        what="the deleted pod to go",
        timeout=90,
    )
