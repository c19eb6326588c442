"""HTTP paths one program serves and another calls, and the fields of ``/_conn_stats``."""

from __future__ import annotations

CONN_STATS_PATH = "/_conn_stats"
"""The sidecar's load document, on its serving and metrics ports: the operator's metrics API reads
the utilization, the activator whether the pod is ready."""
METRICS_PATH = "/metrics"
"""The sidecar's Prometheus page (the ServiceMonitor scrapes it)."""

LIVE_PATH = "/livez"
"""The sidecar's liveness probe (admin port)."""
STARTUP_PATH = "/startupz"
"""The model container's startup probe, answered by the sidecar (admin port)."""
READY_PATH = "/readyz"
"""The sidecar's readiness probe (admin port): false while draining or while the model is down."""
MODEL_LIVE_PATH = "/modelz"
"""The model container's liveness probe, answered by the sidecar from its health polls (admin port)."""
DRAIN_PATH = "/drainz"
"""The model container's preStop hook: the sidecar drains, then answers (admin port)."""

MODEL_HEALTH_PATH = "/health"
"""The model server's health path when its template names none: the sidecar polls it, the simulated
model server answers it."""

# Fields of the /_conn_stats document (the Chutes runtime's names)
CONCURRENCY = "concurrency"
IN_FLIGHT = "in_flight"
AVAILABLE = "available"
UTILIZATION = "utilization"
"""In flight / concurrency: what the metrics API serves the HPA."""
OLDEST_IN_FLIGHT_AGE = "oldest_in_flight_age_secs"
IDLE = "idle_secs"
"""Seconds since the last request ended, null while one is in flight: the operator's idle clock."""
READY = "ready"
"""True when the sidecar would answer ``/readyz`` with 200: the activator forwards to the pod at once."""
