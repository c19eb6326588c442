"""Metric names more than one program reads or writes."""

from __future__ import annotations

UTILIZATION_METRIC = "chute_utilization_ratio"
"""Requests in flight over concurrency, per pod: the sidecar exports it on ``/metrics``, the operator's
metrics API serves it, and the Chute's HPA targets it."""
