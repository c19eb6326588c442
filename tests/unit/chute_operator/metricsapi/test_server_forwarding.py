"""The metrics API beside another adapter: Chute metrics answered by the operator, everything else
asked of the forwarder (a fake here), whose answers are served as they come."""

from __future__ import annotations

import time
from collections.abc import AsyncIterator, Mapping
from typing import Any

import pytest
from aiohttp.test_utils import TestClient, TestServer

from chute_operator.metricsapi.query import Answer
from chute_operator.metricsapi.responses import metric_not_found
from chute_operator.metricsapi.samples import Sample, Samples
from chute_operator.metricsapi.server import PREFIX, metrics_api_app
from chute_shared.metrics import UTILIZATION_METRIC

NS = "shop"
CHUTE_POD = {"metadata": {"namespace": NS, "name": "qwen-1", "labels": {"chutes.ai/chute": "qwen"}}}
FORWARDED = {
    "kind": "MetricValueList",
    "apiVersion": "custom.metrics.k8s.io/v1beta2",
    "metadata": {},
    "items": [],
}


class Forward:
    def __init__(self, answer: Answer | None) -> None:
        self.answer = answer
        self.asked: list[tuple[str, dict[str, str]]] = []

    async def __call__(self, tail: str, query: Mapping[str, str]) -> Answer | None:
        self.asked.append((tail, dict(query)))
        return self.answer


async def serve(forward: Forward | None) -> AsyncIterator[TestClient[Any, Any]]:
    samples = Samples(max_age=10.0)
    samples.record((NS, "qwen-1"), Sample(utilization=0.75, read_at=time.monotonic(), timestamp=time.time()))
    app = metrics_api_app(lambda namespace, selector: [CHUTE_POD], samples, dict, 2, None, forward)
    async with TestClient(TestServer(app, host="127.0.0.1")) as client:
        yield client


@pytest.fixture
def forward() -> Forward:
    return Forward(Answer(200, FORWARDED))


@pytest.fixture
async def client(forward: Forward) -> AsyncIterator[TestClient[Any, Any]]:
    async for running in serve(forward):
        yield running


async def get(client: TestClient[Any, Any], path: str) -> tuple[int, dict[str, Any]]:
    response = await client.get(PREFIX + path)
    return response.status, await response.json()


async def test_a_chute_metric_of_chute_pods_is_answered_by_the_operator(
    client: TestClient[Any, Any], forward: Forward
) -> None:
    status, body = await get(
        client, f"/namespaces/{NS}/pods/*/{UTILIZATION_METRIC}?labelSelector=chutes.ai/chute=qwen"
    )
    assert status == 200
    assert [(i["describedObject"]["name"], i["value"]) for i in body["items"]] == [("qwen-1", "750m")]
    assert forward.asked == []


@pytest.mark.parametrize(
    "path",
    [
        f"/namespaces/{NS}/pods/*/http_requests?labelSelector=app%3Dweb&metricLabelSelector=verb%3DGET",
        f"/namespaces/{NS}/pods/web-1/http_requests",
        f"/namespaces/{NS}/services/web/hits",
        f"/namespaces/{NS}/metrics/queue_depth",
        "/nodes/*/temperature",
    ],
)
async def test_every_other_metric_is_asked_of_the_other_adapter(
    client: TestClient[Any, Any], forward: Forward, path: str
) -> None:
    assert await get(client, path) == (200, FORWARDED)
    tail, _, query = path.lstrip("/").partition("?")
    assert forward.asked[0][0] == tail
    if "labelSelector" in query:
        assert forward.asked[0][1] == {"labelSelector": "app=web", "metricLabelSelector": "verb=GET"}


async def test_a_chute_metric_of_pods_that_are_no_chutes_is_asked_there_too(
    client: TestClient[Any, Any], forward: Forward
) -> None:
    """Someone's own chute_utilization_ratio rule in prometheus-adapter keeps answering for non-Chutes
    (with values: an empty list leaves the operator's 404 and its reasons)."""
    path = f"/namespaces/{NS}/pods/*/{UTILIZATION_METRIC}?labelSelector=app%3Dweb"
    item = {
        "describedObject": {"kind": "Pod", "namespace": NS, "name": "web-1", "apiVersion": "/v1"},
        "metric": {"name": UTILIZATION_METRIC},
        "timestamp": "2026-12-07T02:00:00Z",
        "value": "500m",
    }
    forward.answer = Answer(200, {**FORWARDED, "items": [item]})
    assert await get(client, path) == (200, {**FORWARDED, "items": [item]})
    assert forward.asked == [(f"namespaces/{NS}/pods/*/{UTILIZATION_METRIC}", {"labelSelector": "app=web"})]


async def test_the_other_adapters_refusal_is_served_but_a_chute_metric_keeps_the_operators_reason() -> None:
    refusal = metric_not_found("pods", "http_requests")
    async for client in serve(Forward(Answer(404, refusal))):
        assert await get(client, f"/namespaces/{NS}/pods/*/http_requests") == (404, refusal)
        status, body = await get(
            client, f"/namespaces/{NS}/pods/*/{UTILIZATION_METRIC}?labelSelector=app%3Dweb"
        )
        assert status == 404
        assert "no pod matches 'app=web'" in body["message"]


@pytest.mark.parametrize("forward", [None, Forward(None)])
async def test_without_another_adapter_the_operator_answers_404_as_before(forward: Forward | None) -> None:
    async for client in serve(forward):
        status, body = await get(client, f"/namespaces/{NS}/pods/*/http_requests")
        assert status == 404
        assert body["message"] == "the server could not find the metric http_requests for pods"
        status, body = await get(client, f"/namespaces/{NS}/services/web/hits")
        assert status == 404
        assert "hits" in body["message"]
