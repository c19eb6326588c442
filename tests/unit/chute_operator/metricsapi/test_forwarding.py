"""What is forwarded to another adapter and how it is translated between v1beta2 and v1beta1 (pure)."""

from __future__ import annotations

from typing import Any

import pytest

from chute_operator.metricsapi.forwarding import (
    LEGACY_API_SERVICE,
    MetricPath,
    forward_target,
    forwarded_query,
    parse_path,
    rival,
    rival_message,
    to_v1beta1,
    to_v1beta2,
    v1beta1_path,
)

OWN = ("chute-system", "co-chute-operator-metrics-api")
V1 = "/apis/custom.metrics.k8s.io/v1beta1"


@pytest.mark.parametrize(
    ("tail", "path"),
    [
        ("namespaces/shop/pods/*/http_requests", MetricPath("shop", "pods", "*", "http_requests")),
        ("namespaces/shop/services/web/hits", MetricPath("shop", "services", "web", "hits")),
        ("namespaces/shop/metrics/queue_depth", MetricPath("shop", "metrics", "queue_depth", "")),
        ("namespaces/*/queue_depth", MetricPath("*", "queue_depth", "", "")),
        ("nodes/*/temperature", MetricPath("", "nodes", "*", "temperature")),
        ("/namespaces/shop/pods/web-1/http_requests/", MetricPath("shop", "pods", "web-1", "http_requests")),
    ],
)
def test_paths_are_read_as_the_kube_apiserver_reads_them(tail: str, path: MetricPath) -> None:
    """What it authorized the caller for is what the operator checks again."""
    assert parse_path(tail) == path


@pytest.mark.parametrize(
    "tail",
    ["", "namespaces", "namespaces/shop", "namespaces/shop/pods/x", "a/b", "namespaces/../pods/x/m", "a//b"],
)
def test_other_paths_name_none(tail: str) -> None:
    assert parse_path(tail) is None
    assert v1beta1_path(tail) is None


def test_the_v1beta1_path_is_the_same_request_escaped_again() -> None:
    assert (
        v1beta1_path("namespaces/shop/pods/*/http_requests") == f"{V1}/namespaces/shop/pods/*/http_requests"
    )
    assert v1beta1_path("namespaces/shop/metrics/queue") == f"{V1}/namespaces/shop/metrics/queue"
    assert v1beta1_path("nodes/n 1/temp?x") == f"{V1}/nodes/n%201/temp%3Fx"


def test_only_the_selectors_are_forwarded() -> None:
    query = {"labelSelector": "app=web", "metricLabelSelector": "verb=GET", "watch": "true", "limit": "1"}
    assert forwarded_query(query) == {"labelSelector": "app=web", "metricLabelSelector": "verb=GET"}
    assert forwarded_query({"labelSelector": ""}) == {}


V1BETA1_LIST: dict[str, Any] = {
    "kind": "MetricValueList",
    "apiVersion": "custom.metrics.k8s.io/v1beta1",
    "metadata": {},
    "items": [
        {
            "describedObject": {"kind": "Pod", "namespace": "shop", "name": "web-1", "apiVersion": "/v1"},
            "metricName": "http_requests",
            "timestamp": "2026-12-07T02:00:00Z",
            "window": 60,
            "value": "1500m",
            "selector": {"matchLabels": {"verb": "GET"}},
        },
        {
            "describedObject": {"kind": "Pod", "namespace": "shop", "name": "web-2", "apiVersion": "/v1"},
            "metricName": "http_requests",
            "timestamp": "2026-12-07T02:00:00Z",
            "value": "2",
            "selector": None,
        },
    ],
}
V1BETA2_LIST: dict[str, Any] = {
    "kind": "MetricValueList",
    "apiVersion": "custom.metrics.k8s.io/v1beta2",
    "metadata": {},
    "items": [
        {
            "describedObject": {"kind": "Pod", "namespace": "shop", "name": "web-1", "apiVersion": "/v1"},
            "metric": {"name": "http_requests", "selector": {"matchLabels": {"verb": "GET"}}},
            "timestamp": "2026-12-07T02:00:00Z",
            "windowSeconds": 60,
            "value": "1500m",
        },
        {
            "describedObject": {"kind": "Pod", "namespace": "shop", "name": "web-2", "apiVersion": "/v1"},
            "metric": {"name": "http_requests"},
            "timestamp": "2026-12-07T02:00:00Z",
            "value": "2",
        },
    ],
}


def test_a_v1beta1_metric_value_list_becomes_v1beta2() -> None:
    """metricName and selector become metric {name, selector}; window becomes windowSeconds."""
    assert to_v1beta2(V1BETA1_LIST) == V1BETA2_LIST


def test_and_back() -> None:
    assert to_v1beta2(to_v1beta1(V1BETA2_LIST)) == V1BETA2_LIST
    assert to_v1beta1(V1BETA2_LIST)["items"][1]["selector"] is None


def test_a_status_passes_as_it_is() -> None:
    status = {"kind": "Status", "apiVersion": "v1", "code": 404, "reason": "NotFound", "message": "no metric"}
    assert to_v1beta2(status) == status
    assert to_v1beta1(status) == status


def api_service(namespace: str, name: str, available: str = "True", message: str = "") -> dict[str, Any]:
    return {
        "metadata": {"name": LEGACY_API_SERVICE},
        "spec": {"service": {"namespace": namespace, "name": name, "port": 443}},
        "status": {"conditions": [{"type": "Available", "status": available, "message": message}]},
    }


def test_another_adapters_available_v1beta1_is_forwarded_to() -> None:
    target = forward_target(api_service("monitoring", "prometheus-adapter"), OWN)
    assert target.forward
    assert "monitoring/prometheus-adapter" in target.why


@pytest.mark.parametrize(
    ("found", "says"),
    [
        (None, "does not exist"),
        ({"spec": {"group": "custom.metrics.k8s.io", "version": "v1beta1"}}, "names no Service"),
        (api_service(*OWN), "this operator's Service"),
        (
            api_service("monitoring", "prometheus-adapter", "False", "endpoints not found"),
            "endpoints not found",
        ),
        ({"spec": {"service": {"namespace": "m", "name": "a"}}}, "no Available condition"),
    ],
)
def test_nothing_is_forwarded_to_a_missing_unavailable_or_own_v1beta1(found: Any, says: str) -> None:
    target = forward_target(found, OWN)
    assert not target.forward
    assert says in target.why


def test_another_adapters_v1beta2_is_a_rival_and_the_message_names_the_ways_out() -> None:
    assert rival(None, OWN) is None
    assert rival(api_service(*OWN), OWN) is None
    where = rival(api_service("monitoring", "prometheus-adapter"), OWN)
    assert where == "monitoring/prometheus-adapter"
    message = rival_message(where, OWN)
    assert "monitoring/prometheus-adapter" in message
    assert "metricsApi.enabled=false" in message
    assert f"keep its {LEGACY_API_SERVICE}" in message
