"""The latest utilization read from each pod's sidecar, and which of them are still fresh. Pure."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

from chute_shared.paths import CONCURRENCY, IDLE, IN_FLIGHT, UTILIZATION

PodKey = tuple[str, str]
"""(namespace, pod name)"""


@dataclass(frozen=True)
class Sample:
    """One reading of a sidecar's ``/_conn_stats``."""

    utilization: float
    read_at: float
    """Monotonic clock, for freshness."""
    timestamp: float
    """Wall clock (seconds since the epoch), for the API's ``timestamp``."""
    idle_seconds: float | None = None
    """Seconds since the sidecar's last request ended (None while busy, or from an older sidecar)."""


class Samples:
    """Per-pod readings; a reading older than ``max_age`` seconds is as good as none."""

    def __init__(self, max_age: float) -> None:
        self.max_age = max_age
        self._by_pod: dict[PodKey, Sample] = {}

    def record(self, pod: PodKey, sample: Sample) -> None:
        self._by_pod[pod] = sample

    def retain(self, pods: Iterable[PodKey]) -> None:
        """Forget every pod not in ``pods`` (gone, no longer ready, or no longer scraped)."""
        keep = set(pods)
        for pod in [pod for pod in self._by_pod if pod not in keep]:
            del self._by_pod[pod]

    def fresh(self, pod: PodKey, now: float) -> Sample | None:
        """The pod's reading if it is at most ``max_age`` old at monotonic time ``now``."""
        sample = self._by_pod.get(pod)
        if sample is None or now - sample.read_at > self.max_age:
            return None
        return sample

    def __len__(self) -> int:
        return len(self._by_pod)


def parse_idle_seconds(document: object) -> float | None:
    """``idle_secs`` of a ``/_conn_stats`` document: None while busy, absent or not a number."""
    value = document.get(IDLE) if isinstance(document, dict) else None
    if isinstance(value, bool) or not isinstance(value, int | float) or not 0 <= value < float("inf"):
        return None
    return float(value)


def parse_conn_stats(document: object) -> float:
    """The utilization in a sidecar's ``/_conn_stats`` document; ValueError if it has none.

    ``utilization`` is in flight / concurrency; when absent it is computed from those two fields.
    """
    if not isinstance(document, dict):
        raise ValueError("not a JSON object")
    value = document.get(UTILIZATION)
    if value is None:
        in_flight, concurrency = document.get(IN_FLIGHT), document.get(CONCURRENCY)
        if (
            not isinstance(in_flight, int | float)
            or not isinstance(concurrency, int | float)
            or concurrency <= 0
        ):
            raise ValueError("neither utilization nor in_flight and concurrency")
        value = in_flight / concurrency
    if isinstance(value, bool) or not isinstance(value, int | float) or not 0 <= value < float("inf"):
        raise ValueError(f"utilization is not a non-negative number: {value!r}")
    return float(value)
