"""Prometheus metrics of the sidecar, in a registry of its own; label children cached for the hot path."""

from __future__ import annotations

from collections.abc import Callable

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram
from prometheus_client.exposition import CONTENT_TYPE_LATEST, generate_latest

from chute_shared.metrics import UTILIZATION_METRIC

CONTENT_TYPE = CONTENT_TYPE_LATEST

# LLM requests last from milliseconds (cache hits, errors) to minutes (long generations).
DURATION_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 20, 30, 60, 120, 300, 600)
TTFB_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120)

REJECT_REASONS = ("concurrency", "auth", "body_too_large", "route")
UPSTREAM_ERROR_KINDS = ("connect", "timeout", "protocol")
RELAY_FAILURES = ("connect", "timeout", "status", "too_large")
"""Why the model's own metrics were not relayed on a scrape (relay.py)."""


class Metrics:
    """All ``chute_*`` metrics. Gauges that mirror state are read at scrape time, not set per request."""

    def __init__(self, concurrency: int) -> None:
        self.registry = registry = CollectorRegistry(auto_describe=True)
        self.requests = Counter(
            "chute_requests",
            "Requests answered on the serving port, by cord route, method and status code.",
            ("route", "method", "code"),
            registry=registry,
        )
        self.duration = Histogram(
            "chute_request_duration_seconds",
            "Time from request received to the last response byte sent.",
            ("route",),
            buckets=DURATION_BUCKETS,
            registry=registry,
        )
        self.ttfb = Histogram(
            "chute_time_to_first_byte_seconds",
            "Time from request received to the first response body byte from the model (headers if no body).",
            ("route",),
            buckets=TTFB_BUCKETS,
            registry=registry,
        )
        self.in_flight = Gauge("chute_requests_in_flight", "Proxied requests in flight.", registry=registry)
        self.concurrency_limit = Gauge(
            "chute_concurrency_limit", "Proxied requests allowed in flight at once.", registry=registry
        )
        self.concurrency_limit.set(concurrency)
        self.utilization = Gauge(
            UTILIZATION_METRIC,
            "Requests in flight divided by the concurrency limit.",
            registry=registry,
        )
        self.rejected = Counter(
            "chute_requests_rejected",
            "Requests refused by the sidecar, by reason.",
            ("reason",),
            registry=registry,
        )
        self.upstream_errors = Counter(
            "chute_upstream_errors",
            "Failures talking to the model server, by kind.",
            ("kind",),
            registry=registry,
        )
        self.model_up = Gauge(
            "chute_model_up", "1 if the model's last health poll succeeded.", registry=registry
        )
        self.model_started = Gauge(
            "chute_model_started", "1 once the model has answered its health path.", registry=registry
        )
        self.last_request = Gauge(
            "chute_last_request_timestamp_seconds",
            "Unix time of the last request accepted for proxying.",
            registry=registry,
        )
        self.prompt_tokens = Counter(
            "chute_prompt_tokens", "Prompt tokens reported by the model (OpenAI usage).", registry=registry
        )
        self.completion_tokens = Counter(
            "chute_completion_tokens",
            "Completion tokens reported by the model (OpenAI usage).",
            registry=registry,
        )
        self.draining = Gauge("chute_draining", "1 while shutting down.", registry=registry)
        for reason in REJECT_REASONS:
            self.rejected.labels(reason)
        for kind in UPSTREAM_ERROR_KINDS:
            self.upstream_errors.labels(kind)
        self._request_children: dict[tuple[str, str, int], Counter] = {}
        self._duration_children: dict[str, Histogram] = {}
        self._ttfb_children: dict[str, Histogram] = {}
        self._rejected_children = {reason: self.rejected.labels(reason) for reason in REJECT_REASONS}
        self._error_children = {kind: self.upstream_errors.labels(kind) for kind in UPSTREAM_ERROR_KINDS}

    def enable_relay(self) -> None:
        """The series of the relay of the model's own metrics (only where it is on)."""
        self.relay_up = Gauge(
            "chute_engine_metrics_up",
            "1 if the model's own metrics were relayed on the last scrape of this port.",
            registry=self.registry,
        )
        self.relay_failures = Counter(
            "chute_engine_metrics_failures",
            "Scrapes that found no model metrics to relay, by why.",
            ("kind",),
            registry=self.registry,
        )
        self._relay_children = {kind: self.relay_failures.labels(kind) for kind in RELAY_FAILURES}

    def relay_failed(self, kind: str) -> None:
        self.relay_up.set(0)
        self._relay_children[kind].inc()

    def bind_limiter(self, in_flight: Callable[[], float], utilization: Callable[[], float]) -> None:
        """Read the in-flight gauges from the limiter at scrape time."""
        self.in_flight.set_function(in_flight)
        self.utilization.set_function(utilization)

    def observe(self, route: str, method: str, code: int, started: float, ended: float) -> None:
        """Count one answered request and its duration (``started``/``ended`` from a monotonic clock)."""
        key = (route, method, code)
        child = self._request_children.get(key)
        if child is None:
            child = self._request_children[key] = self.requests.labels(route, method, str(code))
        child.inc()
        duration = self._duration_children.get(route)
        if duration is None:
            duration = self._duration_children[route] = self.duration.labels(route)
        duration.observe(ended - started)

    def observe_ttfb(self, route: str, seconds: float) -> None:
        child = self._ttfb_children.get(route)
        if child is None:
            child = self._ttfb_children[route] = self.ttfb.labels(route)
        child.observe(seconds)

    def reject(self, reason: str) -> None:
        self._rejected_children[reason].inc()

    def upstream_error(self, kind: str) -> None:
        self._error_children[kind].inc()

    def add_usage(self, prompt: int, completion: int) -> None:
        if prompt > 0:
            self.prompt_tokens.inc(prompt)
        if completion > 0:
            self.completion_tokens.inc(completion)

    def render(self) -> bytes:
        """The registry in Prometheus text format."""
        return generate_latest(self.registry)
