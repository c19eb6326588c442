"""How the operator wires a Chute's pod and its neighbours: the sidecar's image and mounts, the drain,
probe periods, the HPA's bounds, and the pods a NetworkPolicy names. Pure: no I/O, no clients.

Names another program reads too (ports, labels, headers) are in ``chute_shared``.
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from chute_operator.version import SIDECAR_IMAGE

API_KEY_DIR = "/var/run/chutes/auth"
"""Where the sidecar finds the Chute's API keys (the Secret's volume)."""
DRAIN_SECONDS = 5
"""The sidecar's ``--drain-seconds``: it keeps serving, unready, this long after SIGTERM."""
PROBE_PERIOD_SECONDS = 10
"""The model's liveness probe period."""
STARTUP_PROBE_PERIOD_SECONDS = 1
"""The model's startup probe period: its pod is Ready within a second of the model answering (a request
held at zero waits for it), with ``failureThreshold`` covering the whole startup timeout."""
DEFAULT_SIDECAR_IMAGE = SIDECAR_IMAGE
"""The sidecar's image when none is configured (the chart always sets one): the released image under
the sidecar's own tag (version.SIDECAR_TAG), not the operator's version, so an operator upgrade whose
sidecar did not change renders every pod template as it was."""
HPA_MAX_STABILIZATION_SECONDS = 3600
"""The longest scale-down window the HPA accepts."""

NAMESPACE_NAME_LABEL = "kubernetes.io/metadata.name"
DNS_PORTS = [{"protocol": "UDP", "port": 53}, {"protocol": "TCP", "port": 53}]


def _match(labels: Mapping[str, str]) -> dict[str, Any]:
    return {"matchLabels": dict(labels)} if labels else {}


@dataclass(frozen=True)
class PeerSelector:
    """Pods a NetworkPolicy rule names: those with ``pod_labels`` in namespaces with ``namespace_labels``.

    Empty labels match everything (every pod, every namespace); ``namespace_labels`` None: the
    policy's own namespace (the Chute's).
    """

    namespace_labels: Mapping[str, str] | None
    pod_labels: Mapping[str, str]

    def peer(self) -> dict[str, Any]:
        """The NetworkPolicyPeer."""
        if self.namespace_labels is None:
            return {"podSelector": _match(self.pod_labels)}
        return {"namespaceSelector": _match(self.namespace_labels), "podSelector": _match(self.pod_labels)}


KUBE_DNS = PeerSelector({NAMESPACE_NAME_LABEL: "kube-system"}, {"k8s-app": "kube-dns"})
"""The cluster's DNS pods as kubeadm, kind, k3s and most managed clusters label them."""
PROMETHEUS = PeerSelector({NAMESPACE_NAME_LABEL: "monitoring"}, {"app.kubernetes.io/name": "prometheus"})
"""Prometheus pods as prometheus-operator labels them, in namespace ``monitoring``."""

ACTIVATOR_SLICE_SUFFIX = "-activator"
"""A Chute's activator EndpointSlice is named after the Chute with this suffix (zero.py)."""
METRICS_SERVICE_SUFFIX = "-metrics"
"""A Chute whose Service is a NodePort or LoadBalancer gets a headless ClusterIP Service of its metrics
port, named after it with this suffix (:func:`child_name`): the ServiceMonitor's, never published."""
SERVICE_ROLE_LABEL = "chutes.ai/service-role"
"""On that metrics Service (value ``metrics``): the ServiceMonitor selects it by this label."""
SERVICE_NAME_MAX = 63


def child_name(name: str, suffix: str, limit: int = SERVICE_NAME_MAX) -> str:
    """``name`` + ``suffix``, or when that is longer than ``limit``, ``name`` cut short with a hash of the
    whole name before the suffix (as Knative's ``kmeta.ChildName``): distinct names stay distinct."""
    if len(name) + len(suffix) <= limit:
        return name + suffix
    digest = hashlib.blake2b(name.encode(), digest_size=4).hexdigest()
    return name[: limit - len(suffix) - len(digest) - 1].rstrip("-") + "-" + digest + suffix
