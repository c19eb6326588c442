"""The sidecar's ports, by number and by name, the model server's default port, and the activator's
port per Chute."""

from __future__ import annotations

SIDECAR_PORT = 8080
"""The sidecar's serving port (name :data:`SERVING_PORT_NAME`): what the Service publishes."""
METRICS_PORT = 9090
"""The sidecar's metrics port (name :data:`METRICS_PORT_NAME`): ``/metrics``, ``/_conn_stats``; the
Service publishes it."""
ADMIN_PORT = 9091
"""The sidecar's admin port (name :data:`ADMIN_PORT_NAME`): probes and the drain, for the kubelet;
never in the Service."""

SERVING_PORT_NAME = "http"
"""The serving port's name on the sidecar container, the Service and the EndpointSlices (the
activator's too)."""
METRICS_PORT_NAME = "metrics"
"""The metrics port's name: the metrics API reads ``/_conn_stats`` there, Prometheus ``/metrics``."""
ADMIN_PORT_NAME = "admin"
"""The admin port's name: the kubelet's probes and the drain hook."""

MODEL_PORT = 8000
"""The model server's port when its template passes none (the custom template): where the simulated
model server listens by default."""

ACTIVATOR_CHUTE_PORTS = (20000, 29999)
"""The activator's ports, one per Chute with minInstances 0 (first, last; both included). The operator
gives each such Chute one (``status.activatorPort``) and writes it in the Chute's activator
EndpointSlice, so kube-proxy sends the Chute Service's connections to that port of an activator pod;
the activator listens on every port of the range and a request is for the Chute whose port it
arrived on, whatever its Host or other headers say. Outside the sidecar's ports and the Linux
ephemeral range (32768-60999)."""


def parse_port_range(text: str) -> tuple[int, int]:
    """``"20000-29999"`` -> ``(20000, 29999)``; ValueError unless ``1 <= first <= last <= 65535``."""
    first, sep, last = text.strip().partition("-")
    if not sep:
        raise ValueError(f"not a port range FIRST-LAST: {text!r}")
    low, high = int(first), int(last)
    if not 1 <= low <= high <= 65535:
        raise ValueError(f"not a port range FIRST-LAST (1-65535, FIRST <= LAST): {text!r}")
    return low, high
