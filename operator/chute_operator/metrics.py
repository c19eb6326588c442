"""The operator's own Prometheus metrics."""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, start_http_server


class OperatorMetrics:
    """Reconciles by result, their duration, Chutes by readiness, API writes and errors."""

    def __init__(self, registry: CollectorRegistry | None = None) -> None:
        self.registry = registry or CollectorRegistry()
        self.reconciles = Counter(
            "chute_operator_reconciles_total",
            "Reconciles of a Chute by result.",
            ["result"],
            registry=self.registry,
        )
        self.duration = Histogram(
            "chute_operator_reconcile_duration_seconds",
            "Time to reconcile one Chute.",
            buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30),
            registry=self.registry,
        )
        self.chutes = Gauge(
            "chute_operator_chutes", "Chutes by their Ready condition.", ["ready"], registry=self.registry
        )
        self.chute_ready = Gauge(
            "chute_operator_chute_ready",
            "1 while a Chute's Ready condition is True, else 0 (reason label: why not).",
            ["chute_namespace", "chute", "reason"],
            registry=self.registry,
        )
        self.writes = Counter(
            "chute_operator_api_writes_total",
            "Writes to the Kubernetes API by verb and kind.",
            ["verb", "kind"],
            registry=self.registry,
        )
        self.api_errors = Counter(
            "chute_operator_api_errors_total",
            "Failed Kubernetes API calls by HTTP status (0: no response).",
            ["code"],
            registry=self.registry,
        )
        self.leader = Gauge(
            "chute_operator_leader", "1 while this replica holds the leader lease.", registry=self.registry
        )
        self.queue_depth = Gauge(
            "chute_operator_queue_depth", "Chutes waiting to be reconciled.", registry=self.registry
        )

    def serve(self, port: int) -> None:
        """Expose /metrics on ``port`` (a background thread)."""
        start_http_server(port, registry=self.registry)
