"""The custom metrics API's answers: shape, selectors, missing pods, stale sidecars. Pure."""

from __future__ import annotations

from typing import Any

import pytest

from chute_operator.metricsapi.query import PodQuery, answer_pods
from chute_operator.metricsapi.responses import (
    GROUP_VERSION,
    quantity,
    resource_list,
)
from chute_operator.metricsapi.samples import Sample, Samples, parse_conn_stats, parse_idle_seconds
from chute_shared.metrics import UTILIZATION_METRIC
from chute_sidecar.limiter import Limiter

NS = "prod"
NOW = 1000.0
EPOCH = 1_780_000_000.0


def pod(name: str, chute: str = "qwen", **labels: str) -> dict[str, Any]:
    return {"metadata": {"namespace": NS, "name": name, "labels": {"chutes.ai/chute": chute, **labels}}}


def samples(**values: tuple[float, float]) -> Samples:
    """pod name -> (utilization, age in seconds)."""
    book = Samples(max_age=10.0)
    for name, (value, age) in values.items():
        book.record((NS, name.replace("_", "-")), Sample(value, NOW - age, EPOCH - age))
    return book


def ask(name: str = "*", selector: str = "chutes.ai/chute=qwen", metric: str = UTILIZATION_METRIC, **kw: Any):
    return PodQuery(NS, name, metric, selector, kw.get("metric_selector", ""))


PODS = [pod("qwen-a"), pod("qwen-b"), pod("other-a", chute="other")]


def test_discovery_lists_the_pod_metric_as_the_hpa_looks_it_up() -> None:
    document = resource_list()
    assert document["groupVersion"] == GROUP_VERSION == "custom.metrics.k8s.io/v1beta2"
    assert document["resources"] == [
        {
            "name": "pods/chute_utilization_ratio",
            "singularName": "",
            "namespaced": True,
            "kind": "MetricValueList",
            "verbs": ["get"],
        }
    ]


@pytest.mark.parametrize(
    ("value", "text"), [(0, "0"), (0.5, "500m"), (0.75, "750m"), (1, "1"), (1.25, "1250m"), (0.0004, "0")]
)
def test_quantities_are_milli_units(value: float, text: str) -> None:
    assert quantity(value) == text


def test_list_shape_for_the_selected_pods_only() -> None:
    answer = answer_pods(ask(), PODS, samples(qwen_a=(0.5, 1), qwen_b=(1.0, 2), other_a=(0.9, 1)), {}, NOW, 2)
    assert answer.status == 200
    assert answer.body == {
        "kind": "MetricValueList",
        "apiVersion": "custom.metrics.k8s.io/v1beta2",
        "metadata": {},
        "items": [
            {
                "describedObject": {"kind": "Pod", "namespace": NS, "name": "qwen-a", "apiVersion": "v1"},
                "metric": {"name": UTILIZATION_METRIC},
                "timestamp": "2026-05-28T20:26:39Z",
                "windowSeconds": 2,
                "value": "500m",
            },
            {
                "describedObject": {"kind": "Pod", "namespace": NS, "name": "qwen-b", "apiVersion": "v1"},
                "metric": {"name": UTILIZATION_METRIC},
                "timestamp": "2026-05-28T20:26:38Z",
                "windowSeconds": 2,
                "value": "1",
            },
        ],
    }


def test_single_object_form_is_a_list_of_one() -> None:
    answer = answer_pods(ask("qwen-b"), PODS, samples(qwen_a=(0.5, 1), qwen_b=(0.25, 1)), {}, NOW, 2)
    assert answer.status == 200
    assert [item["describedObject"]["name"] for item in answer.body["items"]] == ["qwen-b"]
    assert answer.body["items"][0]["value"] == "250m"


def test_pods_without_a_reading_are_left_out() -> None:
    answer = answer_pods(ask(), PODS, samples(qwen_a=(0.5, 1)), {}, NOW, 2)
    assert [item["describedObject"]["name"] for item in answer.body["items"]] == ["qwen-a"]


def test_stale_readings_are_dropped() -> None:
    answer = answer_pods(ask(), PODS, samples(qwen_a=(0.5, 11), qwen_b=(0.7, 10)), {}, NOW, 2)
    assert [item["value"] for item in answer.body["items"]] == ["700m"]


def test_nothing_fresh_is_a_404_naming_the_pods_and_why() -> None:
    reasons = {(NS, "qwen-a"): "on a simulated (kwok) node, never dialled"}
    answer = answer_pods(ask(), PODS, samples(qwen_b=(0.5, 30)), reasons, NOW, 2)
    assert answer.status == 404
    body = answer.body
    assert (body["kind"], body["status"], body["reason"], body["code"]) == (
        "Status",
        "Failure",
        "NotFound",
        404,
    )
    assert body["message"] == (
        "the server could not find the metric chute_utilization_ratio for pods: "
        "pod qwen-a: on a simulated (kwok) node, never dialled; pod qwen-b: no reading yet"
    )
    assert body["details"] == {"group": "custom.metrics.k8s.io", "kind": UTILIZATION_METRIC}


def test_no_matching_pod_is_a_404() -> None:
    answer = answer_pods(ask(selector="chutes.ai/chute=gone"), PODS, samples(qwen_a=(0.5, 1)), {}, NOW, 2)
    assert answer.status == 404
    assert "no pod matches 'chutes.ai/chute=gone'" in answer.body["message"]


def test_missing_named_pod_is_a_404_for_that_pod() -> None:
    answer = answer_pods(ask("qwen-z"), PODS, samples(qwen_a=(0.5, 1)), {}, NOW, 2)
    assert answer.status == 404
    assert answer.body["message"].startswith(
        "the server could not find the metric chute_utilization_ratio for pods qwen-z"
    )
    assert answer.body["details"]["name"] == "qwen-z"


def test_unknown_metric_is_a_404() -> None:
    answer = answer_pods(ask(metric="cpu_seconds"), PODS, samples(qwen_a=(0.5, 1)), {}, NOW, 2)
    assert answer.status == 404
    assert answer.body["message"] == "the server could not find the metric cpu_seconds for pods"


def test_bad_selector_is_a_400() -> None:
    answer = answer_pods(ask(selector="a in (b"), PODS, samples(), {}, NOW, 2)
    assert (answer.status, answer.body["reason"]) == (400, "BadRequest")


def test_metric_selector_against_a_metric_without_labels() -> None:
    book = samples(qwen_a=(0.5, 1))
    assert answer_pods(ask(metric_selector="!model"), PODS, book, {}, NOW, 2).status == 200
    assert answer_pods(ask(metric_selector="model=x"), PODS, book, {}, NOW, 2).status == 404


def test_retain_forgets_pods_that_are_no_longer_read() -> None:
    book = samples(qwen_a=(0.5, 1), qwen_b=(0.5, 1))
    book.retain([(NS, "qwen-a")])
    assert book.fresh((NS, "qwen-a"), NOW) is not None
    assert book.fresh((NS, "qwen-b"), NOW) is None


def test_conn_stats_of_the_real_sidecar_limiter() -> None:
    limiter = Limiter(4)
    assert parse_conn_stats(limiter.stats()) == 0.0
    limiter.try_acquire()
    limiter.try_acquire()
    assert parse_conn_stats(limiter.stats()) == 0.5


@pytest.mark.parametrize(
    ("document", "value"),
    [({"in_flight": 3, "concurrency": 4}, 0.75), ({"utilization": 1}, 1.0), ({"utilization": 0.0}, 0.0)],
)
def test_conn_stats_fallbacks(document: dict[str, Any], value: float) -> None:
    assert parse_conn_stats(document) == value


@pytest.mark.parametrize(
    "document",
    [[], "x", {}, {"utilization": -1}, {"utilization": "0.5"}, {"utilization": True}, {"in_flight": 1}],
)
def test_conn_stats_garbage_is_refused(document: Any) -> None:
    with pytest.raises(ValueError):  # noqa: PT011
        parse_conn_stats(document)


@pytest.mark.parametrize(
    ("document", "idle"),
    [
        ({"idle_secs": 12.5}, 12.5),
        ({"idle_secs": 0}, 0.0),
        ({"idle_secs": None}, None),  # busy
        ({}, None),  # an older sidecar
        ({"idle_secs": -1}, None),
        ({"idle_secs": True}, None),
        ({"idle_secs": "3"}, None),
        ([], None),
    ],
)
def test_idle_seconds_from_conn_stats(document: Any, idle: float | None) -> None:
    assert parse_idle_seconds(document) == idle
