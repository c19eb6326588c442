"""The activator's Prometheus metrics, in a registry of its own (several activators can share a process)."""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

WAIT_BUCKETS = (0.01, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120, 300, 600)


class Metrics:
    def __init__(self) -> None:
        self.registry = CollectorRegistry(auto_describe=True)
        labels = ("namespace", "chute")
        self.queue_length = Gauge(
            "chute_activator_queue_length",
            "Requests held for a Chute that has no ready replica.",
            labels,
            registry=self.registry,
        )
        self.wait_seconds = Histogram(
            "chute_activator_wait_seconds",
            "How long a request was held before it was forwarded or answered 503/404.",
            ("outcome",),
            buckets=WAIT_BUCKETS,
            registry=self.registry,
        )
        self.wakeups = Counter(
            "chute_activator_wakeups",
            "Wake-ups asked for a Chute at zero (at most one per wake interval while requests wait).",
            labels,
            registry=self.registry,
        )
        self.rejected = Counter(
            "chute_activator_rejected",
            "Requests answered by the activator itself, by reason.",
            (*labels, "reason"),
            registry=self.registry,
        )
        self.forwarded = Counter(
            "chute_activator_forwarded",
            "Requests forwarded to a ready replica.",
            labels,
            registry=self.registry,
        )
        self.unavailable_ports = Gauge(
            "chute_activator_unavailable_ports",
            "Ports of --chute-ports the activator could not listen on (another process has them): the "
            "Chutes given them cannot be reached at zero through this activator.",
            registry=self.registry,
        )
        self.unknown_rejected = Counter(
            "chute_activator_unknown_rejected",
            "Requests for a Chute the activator does not know (or no longer knows), answered by it.",
            registry=self.registry,
        )

    def forget(self, key: tuple[str, str], reasons: set[str]) -> None:
        """Drop a Chute's labelled series (it was deleted, or never existed)."""
        for metric in (self.queue_length, self.wakeups, self.forwarded):
            metric.remove(*key)
        for reason in reasons:
            self.rejected.remove(*key, reason)
