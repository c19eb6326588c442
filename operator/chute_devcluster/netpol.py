"""The real node's NetworkPolicy enforcer: kube-network-policies as a host process beside kube-proxy.

It watches pods, namespaces and NetworkPolicies (as :data:`~chute_devcluster.pki.NETWORK_POLICIES_USER`,
bound to :func:`rbac_objects`' ClusterRole), keeps an nftables table ``inet kube-network-policies``
that sends the first packet of each new connection to or from a pod some NetworkPolicy selects to
its nfqueue, and gives each such packet a verdict: accept, or **drop** (a denied connection times
out; nothing is rejected). Packets of established connections are not queued.

What it lets through without asking (its rules, not ours): packets sent by a root process of this
machine (``meta skuid 0``: the kubelet's probes, the tests, a host-process operator or activator),
ICMPv6, and the replies of accepted connections. Its chain hooks ``postrouting`` (and ``prerouting``
for DNS), so a pod's packets to the node's own addresses (delivered locally, never routed) are not
judged either.

Its table would outlive a killed process and keep queueing to a queue nobody reads (every new
connection to such a pod dropped), so the node removes it at stop and when it cleans up after a
killed holder of the machine lock (:func:`remove_table`).
"""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path
from typing import Any

TABLE = "kube-network-policies"
"""The enforcer's nftables table (family ``inet``): its default name."""
QUEUE_ID = 98
"""Its nfqueue number (kind's manifest uses 98 too)."""
CLUSTER_ROLE = "chute-dev:kube-network-policies"


def enforcer_command(binary: Path, kubeconfig: Path, node_name: str, metrics_port: int) -> list[str]:
    """The enforcer's command line: this node's pods only, its metrics on loopback, not fail-open."""
    return [
        str(binary),
        f"--kubeconfig={kubeconfig}",
        f"--hostname-override={node_name}",
        f"--nfqueue-id={QUEUE_ID}",
        f"--metrics-bind-address=127.0.0.1:{metrics_port}",
        "--v=2",
    ]


def rbac_objects(user: str) -> list[tuple[str, dict[str, Any]]]:
    """(collection path, object): the ClusterRole of its release manifest, bound to ``user``."""
    role = {
        "apiVersion": "rbac.authorization.k8s.io/v1",
        "kind": "ClusterRole",
        "metadata": {"name": CLUSTER_ROLE},
        "rules": [
            {"apiGroups": [""], "resources": ["pods", "namespaces"], "verbs": ["list", "watch"]},
            {
                "apiGroups": ["networking.k8s.io"],
                "resources": ["networkpolicies"],
                "verbs": ["list", "watch"],
            },
        ],
    }
    binding = {
        "apiVersion": "rbac.authorization.k8s.io/v1",
        "kind": "ClusterRoleBinding",
        "metadata": {"name": CLUSTER_ROLE},
        "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "ClusterRole", "name": CLUSTER_ROLE},
        "subjects": [{"apiGroup": "rbac.authorization.k8s.io", "kind": "User", "name": user}],
    }
    base = "/apis/rbac.authorization.k8s.io/v1"
    return [(f"{base}/clusterroles", role), (f"{base}/clusterrolebindings", binding)]


def _nft(*args: str) -> subprocess.CompletedProcess[str]:
    """``nft`` with ``args``; exit 127 when there is no nft (then there is no table either)."""
    nft = shutil.which("nft")
    if nft is None:
        return subprocess.CompletedProcess(["nft", *args], 127, "", "nft not found")
    return subprocess.run([nft, *args], check=False, capture_output=True, text=True, timeout=30)


def table_present() -> bool:
    """The enforcer has synced its rules (it makes the table once its caches are in sync)."""
    return _nft("list", "table", "inet", TABLE).returncode == 0


def remove_table() -> None:
    """Delete the enforcer's table (nothing when there is none)."""
    if table_present():
        _nft("delete", "table", "inet", TABLE)


def verdicts(metrics: str) -> dict[str, float]:
    """Packets judged so far by verdict (``accept``, ``drop``), from its ``/metrics`` text."""
    totals: dict[str, float] = {}
    for line in metrics.splitlines():
        if not line.startswith("kube_network_policies_packet_count{"):
            continue
        labels, _, value = line.rpartition(" ")
        for verdict in ("accept", "drop"):
            if f'verdict="{verdict}"' in labels:
                totals[verdict] = totals.get(verdict, 0.0) + float(value)
    return totals
