"""Answering one custom metrics request from the pods the operator watches and the sidecar readings.

Pure: everything it needs is passed in, it returns the HTTP status and the JSON document.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

from chute_operator.metricsapi.responses import (
    METRICS,
    PodValue,
    bad_request,
    metric_not_found,
    metric_value_list,
)
from chute_operator.metricsapi.samples import PodKey, Samples
from chute_operator.metricsapi.selectors import Selector, SelectorError, parse_selector

MAX_REASONS = 3
"""Pods named in a 404's message, at most."""


@dataclass(frozen=True)
class PodQuery:
    """``GET /apis/custom.metrics.k8s.io/v1beta2/namespaces/{namespace}/pods/{name}/{metric}``."""

    namespace: str
    name: str
    """``*`` for every pod the label selector matches."""
    metric: str
    label_selector: str = ""
    metric_label_selector: str = ""


@dataclass(frozen=True)
class Answer:
    status: int
    body: dict[str, Any]
    headers: Mapping[str, str] = field(default_factory=dict)
    """Beside Content-Type (a 503's Retry-After)."""


def _labels(pod: Mapping[str, Any]) -> Mapping[str, str]:
    return (pod.get("metadata") or {}).get("labels") or {}


def _why(pods: list[PodKey], reasons: Mapping[PodKey, str]) -> str:
    parts = [f"pod {name}: {reasons.get((ns, name), 'no reading yet')}" for ns, name in pods[:MAX_REASONS]]
    more = len(pods) - MAX_REASONS
    return "; ".join(parts) + (f"; and {more} more" if more > 0 else "")


def _chosen(
    query: PodQuery, pods: Iterable[Mapping[str, Any]], selector: Selector
) -> list[Mapping[str, Any]]:
    if query.name == "*":
        return [p for p in pods if selector.matches(_labels(p))]
    return [p for p in pods if (p.get("metadata") or {}).get("name") == query.name]


def serves(query: PodQuery, pods: Iterable[Mapping[str, Any]]) -> bool:
    """Whether the operator answers the query itself: a metric it serves, of one of the (Chute) pods
    it watches, or a selector it refuses. Anything else may go to another adapter (:mod:`forwarding`)."""
    if query.metric not in METRICS:
        return False
    try:
        selector = parse_selector(query.label_selector)
    except SelectorError:
        return True
    return bool(_chosen(query, pods, selector))


def answer_pods(
    query: PodQuery,
    pods: Iterable[Mapping[str, Any]],
    samples: Samples,
    reasons: Mapping[PodKey, str],
    now: float,
    window_seconds: int,
) -> Answer:
    """The MetricValueList for the query, or the 400/404 Status the HPA understands.

    ``pods``: the watched pods of the namespace; ``reasons``: why a pod has no reading (skipped by the
    scraper or its sidecar failed); ``now``: monotonic time for freshness. Pods without a fresh
    reading are left out; when none is left the answer is a 404 naming the first few and why.
    """
    if query.metric not in METRICS:
        return Answer(404, metric_not_found("pods", query.metric, None if query.name == "*" else query.name))
    try:
        selector = parse_selector(query.label_selector)
        metric_selector = parse_selector(query.metric_label_selector)
    except SelectorError as error:
        return Answer(400, bad_request(f"invalid selector: {error}"))
    if not metric_selector.matches({}):  # the metric carries no labels
        why = f"no series matches metricLabelSelector {query.metric_label_selector!r}"
        return Answer(404, metric_not_found("pods", query.metric, None, why))
    chosen = _chosen(query, pods, selector)
    keys = sorted(((p.get("metadata") or {}).get("namespace", ""), p["metadata"]["name"]) for p in chosen)
    values, missing = [], []
    for key in keys:
        sample = samples.fresh(key, now)
        if sample is None:
            missing.append(key)
        else:
            values.append(PodValue(key[1], sample.utilization, sample.timestamp))
    if not values:
        single = None if query.name == "*" else query.name
        if keys:
            why = _why(missing, reasons)
        else:
            why = "no such pod" if single else f"no pod matches {query.label_selector!r}"
        return Answer(404, metric_not_found("pods", query.metric, single, why))
    return Answer(200, metric_value_list(query.namespace, query.metric, values, window_seconds))
