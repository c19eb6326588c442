"""A Chute's NetworkPolicy, enforced on the real node (kube-network-policies) and tried from real pods.

What each Chute's policy promises (docs/deployment.md): the sidecar's serving port from anywhere; its
metrics port only from Prometheus' pods (prometheus-operator's label, namespace ``monitoring``) and
the operator's when it serves the metrics API; the model's port and the sidecar's admin port from no
pod; out, only DNS to the cluster's DNS pods and the destinations in ``allowedEgress``. Each allowed
path answers; each denied one is dropped by the enforcer, so it fails after the probe's bounded
connect timeout (:data:`~tests.realnode.policy_probes.CONNECT_TIMEOUT`), never with a quick refusal,
and the enforcer's drop counter grows during that path's own probe (read before and after each one:
a total over all paths would let one path's retransmitted SYNs, each dropped and counted, stand in
for another path that was never dropped).

The local cluster runs no DNS; a pod labelled as kube-dns in ``kube-system`` that echoes on port 53
stands in for it. The address outside the cluster is a network namespace on this machine.
"""

from __future__ import annotations

import secrets
import urllib.request
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from chute_devcluster import netpol
from chute_devcluster.controlplane import ControlPlane
from chute_devcluster.realnode import RealNode
from chute_shared.ports import ADMIN_PORT, METRICS_PORT, MODEL_PORT, SIDECAR_PORT
from tests.kube_helpers import apply, eventually, get
from tests.metrics_api_harness import metrics_api_on_loopback
from tests.net_helpers import dial
from tests.realnode.conftest import real_chute, wait_serving
from tests.realnode.policy_probes import CONNECT_TIMEOUT, Attempt, helper_pod, outside_server, probe

pytestmark = [pytest.mark.realnode, pytest.mark.e2e, pytest.mark.timeout(900)]

MIRROR_PORT, CLOSED_MIRROR_PORT = 8000, 8001
MIRROR = {"podSelector": {"app": "mirror"}, "ports": [MIRROR_PORT]}
DENIED = (
    "metrics port from another pod",
    "metrics port from a Prometheus-labelled pod elsewhere",
    "model port",
    "admin port",
    "port 53 (UDP) to another pod",
    "allowedEgress: another port",
    "another pod",
    "outside the cluster",
)
"""The paths (by the start of their name) that the policy denies: each must time out, dropped."""


def _drops(node: RealNode) -> float:
    # http to the enforcer's metrics on loopback (bandit B310)
    with urllib.request.urlopen(node.enforcer_metrics_url(), timeout=5) as response:  # nosec B310
        return netpol.verdicts(response.read().decode()).get("drop", 0.0)


def _helpers(cp: ControlPlane, image: str, namespace: str, mirror: str) -> dict[str, tuple[str, str]]:
    """The helper pods, Ready: name -> (pod, namespace)."""
    pods: dict[str, tuple[str, str, dict[str, str], tuple[str, ...]]] = {
        "stranger": ("stranger", namespace, {"role": "stranger"}, ("tcp/8000", "udp/53")),
        "operator": ("operator", namespace, {"app.kubernetes.io/name": "chute-operator"}, ()),
        "prometheus elsewhere": ("prometheus", namespace, {"app.kubernetes.io/name": "prometheus"}, ()),
        "prometheus": ("prometheus", "monitoring", {"app.kubernetes.io/name": "prometheus"}, ()),
        "dns": ("dns", "kube-system", {"k8s-app": "kube-dns"}, ("udp/53", "tcp/53")),
        "mirror": ("mirror", mirror, {"app": "mirror"}, (f"tcp/{MIRROR_PORT}", f"tcp/{CLOSED_MIRROR_PORT}")),
    }
    for pod, ns, labels, listen in pods.values():
        apply(cp, helper_pod(pod, image, labels, listen), ns)
    for pod, ns, _, _ in pods.values():
        cp.kubectl("wait", "--for=condition=Ready", f"pod/{pod}", "-n", ns, "--timeout=120s", timeout=150)
    return {key: (pod, ns) for key, (pod, ns, _, _) in pods.items()}


def _ip(cp: ControlPlane, pod: str, namespace: str) -> str:
    found = get(cp, "pod", pod, namespace)
    assert found is not None
    return str(found["status"]["podIP"])


def test_chute_network_policy_admits_and_drops_what_it_promises(
    control_plane: ControlPlane,
    chute_crd: Path,
    real_node: RealNode,
    project_image: str,
    namespace: str,
    tmp_path: Path,
    session_operator_paused: None,  # the test's operator (serving the metrics API) reconciles its Chute
) -> None:
    cp = control_plane
    mirror = f"np-mirror-{secrets.token_hex(3)}"
    created = [mirror] + [ns for ns in ("monitoring",) if get(cp, "namespace", ns, "") is None]
    for ns in created:
        cp.kubectl("create", "namespace", ns)
        eventually(lambda ns=ns: get(cp, "serviceaccount", "default", ns), what=f"{ns}'s ServiceAccount")
    env = {"CHUTE_OPERATOR_SIDECAR_IMAGE": project_image, "CHUTE_OPERATOR_OPERATOR_NAMESPACE": namespace}
    try:
        with metrics_api_on_loopback(cp, namespace, tmp_path, **env), outside_server() as outside:
            helpers = _helpers(cp, project_image, namespace, mirror)
            # the model listens on every address: only the policy keeps pods from its port
            allowed = [{"namespace": mirror, **MIRROR}]
            chute = real_chute("guarded", project_image, ["--host", "0.0.0.0"], allowedEgress=allowed)
            apply(cp, chute, namespace)
            pod = wait_serving(cp, "guarded", namespace)
            chute_ip, chute_pod = pod["status"]["podIP"], pod["metadata"]["name"]
            policy: dict[str, Any] | None = get(cp, "networkpolicy", "guarded", namespace)
            assert policy is not None
            ip = {key: _ip(cp, *where) for key, where in helpers.items()}

            # From this machine (root: the enforcer lets it through) every port answers, so a pod's
            # failure below is the policy's, not a closed port.
            for port in (SIDECAR_PORT, METRICS_PORT, MODEL_PORT, ADMIN_PORT):
                assert dial(chute_ip, port, timeout=CONNECT_TIMEOUT).connected, port

            def into(client: str, port: int) -> Callable[[], Attempt]:
                return lambda: probe(cp, *helpers[client], chute_ip, port)

            def out_of_chute(target: str, port: int, proto: str = "tcp") -> Callable[[], Attempt]:
                return lambda: probe(cp, chute_pod, namespace, target, port, proto, container="model")

            probes: dict[str, Callable[[], Attempt]] = {
                "serving port from any pod": into("stranger", SIDECAR_PORT),
                "serving port from Prometheus": into("prometheus", SIDECAR_PORT),
                "metrics port from Prometheus": into("prometheus", METRICS_PORT),
                "metrics port from the operator": into("operator", METRICS_PORT),
                "metrics port from another pod": into("stranger", METRICS_PORT),
                "metrics port from a Prometheus-labelled pod elsewhere": into(
                    "prometheus elsewhere", METRICS_PORT
                ),
                "model port from any pod": into("stranger", MODEL_PORT),
                "model port from Prometheus": into("prometheus", MODEL_PORT),
                "admin port from any pod": into("stranger", ADMIN_PORT),
                "admin port from the operator": into("operator", ADMIN_PORT),
                "DNS (UDP) to the DNS pods": out_of_chute(ip["dns"], 53, "udp"),
                "DNS (TCP) to the DNS pods": out_of_chute(ip["dns"], 53),
                "port 53 (UDP) to another pod": out_of_chute(ip["stranger"], 53, "udp"),
                "allowedEgress: the mirror's port": out_of_chute(ip["mirror"], MIRROR_PORT),
                "allowedEgress: another port of the mirror": out_of_chute(ip["mirror"], CLOSED_MIRROR_PORT),
                "another pod": out_of_chute(ip["stranger"], 8000),
                "outside the cluster": out_of_chute(outside.address, outside.port),
                # controls: the same destinations answer a pod no policy governs
                "control: outside the cluster from another pod": lambda: probe(
                    cp, *helpers["stranger"], outside.address, outside.port
                ),
                "control: the mirror's other port from another pod": lambda: probe(
                    cp, *helpers["stranger"], ip["mirror"], CLOSED_MIRROR_PORT
                ),
            }
            seen: dict[str, Attempt] = {}
            dropped: dict[str, float] = {}  # the drop counter's growth during each path's own probe
            for path, attempt_path in probes.items():
                before = _drops(real_node)
                attempt = seen[path] = attempt_path()
                dropped[path] = _drops(real_node) - before
                print(f"{path}: {attempt.outcome} after {attempt.seconds:.2f}s, {dropped[path]:g} drop(s)")
            denied = {k for k in seen if k.startswith(DENIED)}
            expected = {k: ("timeout" if k in denied else "ok") for k in seen}
            assert {k: a.outcome for k, a in seen.items()} == expected, policy
            undropped = sorted(k for k in denied if dropped[k] < 1)
            assert not undropped, f"denied without a drop by the enforcer: {undropped}"
    finally:
        for ns in created:
            cp.kubectl("delete", "namespace", ns, "--wait=false", check=False)
        for pod, ns in (("dns", "kube-system"), ("prometheus", "monitoring")):
            cp.kubectl("delete", "pod", pod, "-n", ns, "--grace-period=0", "--wait=false", check=False)
