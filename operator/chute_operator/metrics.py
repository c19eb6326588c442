"""The operator's own Prometheus metrics."""

from __future__ import annotations

from collections import Counter as Tally
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, start_http_server
from prometheus_client.core import GaugeMetricFamily
from prometheus_client.registry import Collector


@dataclass(frozen=True)
class ChuteReadiness:
    """One Chute's Ready condition, as the metrics report it."""

    namespace: str
    name: str
    status: str
    reason: str
    sidecar_behind: bool = False
    """Its SidecarCurrent condition is False: its pods keep an older sidecar than the operator's."""


class ReadinessCollector(Collector):
    """Chutes by readiness, read from the controller's store when Prometheus scrapes (no upkeep)."""

    def __init__(self, source: Callable[[], Iterable[ChuteReadiness]]) -> None:
        self.source = source

    def collect(self) -> Iterator[GaugeMetricFamily]:
        totals = GaugeMetricFamily(
            "chute_operator_chutes", "Chutes by their Ready condition.", labels=["ready"]
        )
        each = GaugeMetricFamily(
            "chute_operator_chute_ready",
            "1 while a Chute's Ready condition is True, else 0 (reason label: why not).",
            labels=["chute_namespace", "chute", "reason"],
        )
        behind = GaugeMetricFamily(
            "chute_operator_chutes_sidecar_behind",
            "Chutes whose pods keep an older sidecar image than the operator's (SidecarCurrent=False).",
        )
        counts: Tally[str] = Tally()
        behind_count = 0
        for chute in self.source():
            counts[chute.status] += 1
            behind_count += chute.sidecar_behind
            ready = chute.status == "True"
            each.add_metric([chute.namespace, chute.name, "" if ready else chute.reason], 1 if ready else 0)
        for value in ("True", "False", "Unknown"):
            totals.add_metric([value], counts[value])
        behind.add_metric([], behind_count)
        yield totals
        yield each
        yield behind


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
        self.activator_ready_pods = Gauge(
            "chute_operator_activator_ready_pods",
            "The activator's ready pods as last read; -1 while not read (no Chute goes to zero and no "
            "activator slice is touched); 0: none (the activator is out of every Chute at zero).",
            registry=self.registry,
        )
        self.queue_depth = Gauge(
            "chute_operator_queue_depth", "Chutes waiting to be reconciled.", registry=self.registry
        )
        self.gpu_profile = Gauge(
            "chute_operator_gpu_profile",
            "1 for the GPU profile Chutes are rendered with; source: setting or auto; matched: false when "
            "auto found no node of any profile (the fallback gfd).",
            ["profile", "source", "matched"],
            registry=self.registry,
        )

    def report_gpu_profile(self, profile: str, source: str, matched: bool) -> None:
        """The GPU profile in use (one series)."""
        self.gpu_profile.clear()
        self.gpu_profile.labels(profile, source, str(matched).lower()).set(1)

    def track_readiness(self, source: Callable[[], Iterable[ChuteReadiness]]) -> None:
        """Report Chutes by readiness from ``source`` at every scrape."""
        self.registry.register(ReadinessCollector(source))

    def serve(self, port: int) -> None:
        """Expose /metrics on ``port`` (a background thread)."""
        start_http_server(port, registry=self.registry)
