"""The forwarder against a fake API server: what it asks the v1beta1 APIService, how often it reads
that APIService, and what it answers when the adapter fails."""

from __future__ import annotations

import asyncio
import json
from typing import Any

import pytest

from chute_operator.kube import Forbidden
from chute_operator.metricsapi.forwarder import Forwarder
from chute_operator.metricsapi.forwarding import LEGACY_API_SERVICE, to_v1beta1
from chute_operator.transport import Answer, TooLarge, Unanswered

OWN = ("chute-system", "co-chute-operator-metrics-api")
TAIL = "namespaces/shop/pods/*/http_requests"
V1BETA2_LIST = {
    "kind": "MetricValueList",
    "apiVersion": "custom.metrics.k8s.io/v1beta2",
    "metadata": {},
    "items": [
        {
            "describedObject": {"kind": "Pod", "namespace": "shop", "name": "web-1", "apiVersion": "/v1"},
            "metric": {"name": "http_requests"},
            "timestamp": "2026-12-07T02:00:00Z",
            "value": "1500m",
        }
    ],
}


def adapter(service: tuple[str, str] = ("monitoring", "prometheus-adapter")) -> dict[str, Any]:
    return {
        "metadata": {"name": LEGACY_API_SERVICE},
        "spec": {"service": {"namespace": service[0], "name": service[1]}},
        "status": {"conditions": [{"type": "Available", "status": "True"}]},
    }


class Transport:
    def __init__(self) -> None:
        self.requests: list[tuple[str, str, Any, Any]] = []
        self.answer: Answer | BaseException = Answer(200, {}, json.dumps(to_v1beta1(V1BETA2_LIST)).encode())

    async def request(self, method: str, path: str, params: Any = None, max_bytes: Any = None) -> Answer:
        self.requests.append((method, path, params, max_bytes))
        if isinstance(self.answer, BaseException):
            raise self.answer
        return self.answer


class Api:
    def __init__(self, found: dict[str, Any] | BaseException | None) -> None:
        self.found = found
        self.lookups = 0
        self.transport = Transport()

    async def api_service(self, name: str) -> dict[str, Any] | None:
        assert name == LEGACY_API_SERVICE
        self.lookups += 1
        if isinstance(self.found, BaseException):
            raise self.found
        return self.found


class Clock:
    now = 100.0

    def __call__(self) -> float:
        return self.now


def forwarder(api: Api, clock: Clock | None = None) -> Forwarder:
    return Forwarder(api, OWN, clock=clock or Clock())  # type: ignore[arg-type]


async def test_a_request_goes_to_v1beta1_and_its_answer_comes_back_as_v1beta2() -> None:
    api = Api(adapter())
    query = {"labelSelector": "app=web", "watch": "true"}
    forwards = forwarder(api)
    answer = await forwards.forward(TAIL, query)
    assert answer is not None
    assert (answer.status, answer.body) == (200, V1BETA2_LIST)
    assert forwards.counts == {"ok": 1, "refused": 0, "failed": 0, "busy": 0}
    assert api.transport.requests == [
        (
            "GET",
            "/apis/custom.metrics.k8s.io/v1beta1/namespaces/shop/pods/*/http_requests",
            {"labelSelector": "app=web"},
            2 * 1024 * 1024,
        )
    ]


async def test_the_apiservice_is_read_again_only_after_check_seconds() -> None:
    api, clock = Api(adapter()), Clock()
    forwards = forwarder(api, clock)
    for _ in range(3):
        assert await forwards.forward(TAIL, {}) is not None
    assert api.lookups == 1
    clock.now += 29
    await forwards.forward(TAIL, {})
    assert api.lookups == 1
    api.found = None  # the adapter was removed
    clock.now += 2
    assert await forwards.forward(TAIL, {}) is None
    assert api.lookups == 2
    assert len(api.transport.requests) == 4


async def test_concurrent_requests_read_the_apiservice_once() -> None:
    api = Api(adapter())
    forwards = forwarder(api)
    await asyncio.gather(*(forwards.forward(TAIL, {}) for _ in range(5)))
    assert api.lookups == 1


@pytest.mark.parametrize("found", [None, adapter(OWN), Forbidden("no", 403, "Forbidden"), Unanswered("down")])
async def test_nothing_is_forwarded_without_another_adapter_or_to_the_operator_itself(found: Any) -> None:
    api = Api(found)
    assert await forwarder(api).forward(TAIL, {}) is None
    assert api.transport.requests == []


async def test_a_path_that_names_no_metric_is_not_forwarded() -> None:
    api = Api(adapter())
    assert await forwarder(api).forward("namespaces/shop", {}) is None
    assert api.transport.requests == []


async def test_the_adapters_refusal_passes_through_as_it_is() -> None:
    api = Api(adapter())
    status = {"kind": "Status", "apiVersion": "v1", "status": "Failure", "code": 404, "reason": "NotFound",
              "message": 'the server could not find the metric http_requests for pods'}  # fmt: skip
    api.transport.answer = Answer(404, {}, json.dumps(status).encode())
    forwards = forwarder(api)
    answer = await forwards.forward(TAIL, {})
    assert answer is not None
    assert (answer.status, answer.body) == (404, status)
    assert forwards.counts == {"ok": 0, "refused": 1, "failed": 0, "busy": 0}


@pytest.mark.parametrize(
    ("failure", "code", "says"),
    [
        (TooLarge("answer longer than 8388608 bytes"), 502, "longer than"),
        (Unanswered("GET ...: connection reset"), 503, "connection reset"),
        (TimeoutError(), 504, "no answer from v1beta1.custom.metrics.k8s.io within 10s"),
        (Answer(503, {}, b"service unavailable"), 503, "service unavailable"),
        (Answer(200, {}, b"<html>"), 502, "<html>"),
        (Answer(302, {"Location": "/api/v1/secrets"}, b""), 502, "redirect (302 to /api/v1/secrets)"),
        (Answer(401, {}, b'{"kind":"Status","code":401}'), 502, "the operator's credentials"),
        (Answer(403, {}, b'{"kind":"Status","code":403}'), 502, "the operator's ServiceAccount may not"),
    ],
)
async def test_an_adapter_that_fails_gets_a_status_the_hpa_quotes(
    failure: BaseException | Answer, code: int, says: str
) -> None:
    api = Api(adapter())
    api.transport.answer = failure
    forwards = forwarder(api)
    answer = await forwards.forward(TAIL, {})
    assert answer is not None
    assert forwards.counts == {"ok": 0, "refused": 0, "failed": 1, "busy": 0}
    assert answer.status == code
    assert answer.body["kind"] == "Status"
    assert answer.body["code"] == code
    assert says in answer.body["message"]
