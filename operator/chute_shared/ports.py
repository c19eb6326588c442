"""The sidecar's ports, by number and by name, and the model server's default port."""

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
