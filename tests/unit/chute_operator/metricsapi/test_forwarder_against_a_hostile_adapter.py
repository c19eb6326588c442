"""The forwarder against a misbehaving adapter or API server: malformed answers, redirects, a
flood of requests, a failed read of the v1beta1 APIService (found by the breaking pass of issue 26).
"""

from __future__ import annotations

import asyncio
import json
import tracemalloc
from collections.abc import AsyncIterator
from typing import Any

import httpx2 as httpx
import pytest
from aiohttp import web

from chute_operator.metricsapi.adapter_answer import adapter_answer
from chute_operator.metricsapi.forwarder import (
    CHECK_SECONDS,
    MAX_BYTES,
    MAX_IN_FLIGHT,
    RETRY_SECONDS,
    Forwarder,
)
from chute_operator.metricsapi.forwarding import LEGACY_API_SERVICE, LEGACY_PREFIX
from chute_operator.transport import Answer, ApiTransport, Unanswered

OWN = ("chute-system", "co-chute-operator-metrics-api")
TAIL = "namespaces/shop/pods/*/http_requests"
ADAPTER = {
    "metadata": {"name": LEGACY_API_SERVICE},
    "spec": {"service": {"namespace": "monitoring", "name": "prometheus-adapter"}},
    "status": {"conditions": [{"type": "Available", "status": "True"}]},
}


class Clock:
    now = 100.0

    def __call__(self) -> float:
        return self.now


class FakeTransport:
    def __init__(self, answer: Answer) -> None:
        self.answer = answer
        self.in_flight = 0
        self.most_in_flight = 0
        self.delay = 0.0

    async def request(self, method: str, path: str, params: Any = None, max_bytes: Any = None) -> Answer:
        self.in_flight += 1
        self.most_in_flight = max(self.most_in_flight, self.in_flight)
        try:
            await asyncio.sleep(self.delay)
            return self.answer
        finally:
            self.in_flight -= 1


class FakeApi:
    def __init__(self, transport: Any) -> None:
        self.transport = transport
        self.found: dict[str, Any] | BaseException | None = ADAPTER

    async def api_service(self, name: str) -> dict[str, Any] | None:
        if isinstance(self.found, BaseException):
            raise self.found
        return self.found


def v1beta1(document: Any) -> Answer:
    return Answer(200, {}, json.dumps(document).encode())


# -- malformed v1beta1 answers ---------------------------------------------------------------------


@pytest.mark.parametrize(
    "document",
    [
        {"kind": "MetricValueList", "items": [1]},
        {"kind": "MetricValueList", "items": {"a": 1}},
        {"kind": "MetricValueList", "items": "abc"},
        {"kind": "MetricValueList", "items": [None]},
    ],
    ids=["int-item", "dict-items", "str-items", "null-item"],
)
async def test_a_malformed_metric_value_list_becomes_a_502_status(document: dict[str, Any]) -> None:
    forwards = Forwarder(FakeApi(FakeTransport(v1beta1(document))), OWN, clock=Clock())  # type: ignore[arg-type]
    answer = await forwards.forward(TAIL, {})
    assert answer is not None
    assert answer.status == 502
    assert forwards.counts["failed"] == 1


async def test_deeply_nested_json_becomes_a_502_status() -> None:
    body = b'{"kind":"MetricValueList","items":[' + b"[" * 200_000 + b"]" * 200_000 + b"]}"
    assert len(body) < MAX_BYTES
    forwards = Forwarder(FakeApi(FakeTransport(Answer(200, {}, body))), OWN, clock=Clock())  # type: ignore[arg-type]
    answer = await forwards.forward(TAIL, {})
    assert answer is not None
    assert answer.status == 502
    assert answer.body["kind"] == "Status"
    assert forwards.counts["failed"] == 1


async def test_a_200_that_is_not_a_metric_value_list_is_not_served_as_a_200() -> None:
    status = {"kind": "Status", "apiVersion": "v1", "status": "Failure", "code": 500, "message": "boom"}
    forwards = Forwarder(FakeApi(FakeTransport(v1beta1(status))), OWN, clock=Clock())  # type: ignore[arg-type]
    answer = await forwards.forward(TAIL, {})
    assert answer is not None
    assert answer.status == 502
    assert "not a MetricValueList" in answer.body["message"]
    assert forwards.counts["failed"] == 1


# -- the 30 s cache --------------------------------------------------------------------------------


async def test_a_transient_failure_to_reread_the_apiservice_keeps_forwarding() -> None:
    clock = Clock()
    api = FakeApi(FakeTransport(v1beta1({"kind": "MetricValueList", "items": []})))
    forwards = Forwarder(api, OWN, clock=clock)  # type: ignore[arg-type]
    assert await forwards.forward(TAIL, {}) is not None
    clock.now += 31
    api.found = Unanswered("GET /apis/apiregistration.k8s.io/v1/apiservices/...: timed out")
    await forwards.forward(TAIL, {})
    api.found = ADAPTER  # the API server answers again at once, the adapter never went away
    clock.now += 1
    assert await forwards.forward(TAIL, {}) is not None, "forwarding off for 30 s after one failed read"


async def test_a_non_json_apiservice_read_is_not_an_unhandled_error() -> None:
    """KubeApi._call's json.loads ValueError is a failed read like the others: no 500, the last known
    target kept (none yet: the operator answers itself), read again after RETRY_SECONDS."""
    clock = Clock()
    reads = 0

    class Api(FakeApi):
        async def api_service(self, name: str) -> dict[str, Any] | None:
            nonlocal reads
            reads += 1
            raise ValueError("Expecting value: line 1 column 1 (char 0)")

    forwards = Forwarder(Api(FakeTransport(v1beta1({}))), OWN, clock=clock)  # type: ignore[arg-type]
    assert await forwards.forward(TAIL, {}) is None
    assert await forwards.forward(TAIL, {}) is None
    assert reads == 1
    clock.now += RETRY_SECONDS
    assert await forwards.forward(TAIL, {}) is None
    assert reads == 2


async def test_a_failed_reread_is_retried_sooner_than_check_seconds() -> None:
    clock = Clock()
    api = FakeApi(FakeTransport(v1beta1({"kind": "MetricValueList", "items": []})))
    forwards = Forwarder(api, OWN, clock=clock)  # type: ignore[arg-type]
    assert await forwards.forward(TAIL, {}) is not None
    clock.now += CHECK_SECONDS
    api.found = Unanswered("timed out")
    assert await forwards.forward(TAIL, {}) is not None  # the last known target kept
    api.found = None  # the adapter's APIService is gone: seen at the next read, RETRY_SECONDS later
    clock.now += RETRY_SECONDS
    assert await forwards.forward(TAIL, {}) is None


# -- concurrency and memory ------------------------------------------------------------------------


async def test_concurrent_forwarded_requests_are_bounded() -> None:
    transport = FakeTransport(v1beta1({"kind": "MetricValueList", "items": []}))
    transport.delay = 0.05
    forwards = Forwarder(FakeApi(transport), OWN, clock=Clock())  # type: ignore[arg-type]
    answers = await asyncio.gather(*(forwards.forward(TAIL, {}) for _ in range(200)))
    assert transport.most_in_flight == MAX_IN_FLIGHT
    busy = [a for a in answers if a is not None and a.status == 503]
    assert len(busy) == 200 - MAX_IN_FLIGHT
    assert busy[0].headers == {"Retry-After": "1"}
    assert busy[0].body["kind"] == "Status"
    assert busy[0].body["details"] == {"retryAfterSeconds": 1}
    assert forwards.counts == {"ok": MAX_IN_FLIGHT, "refused": 0, "failed": 0, "busy": 200 - MAX_IN_FLIGHT}
    # the slots are given back
    assert (await forwards.forward(TAIL, {})).status == 200  # type: ignore[union-attr]


def big_v1beta1_list(limit: int) -> bytes:
    item = {
        "describedObject": {"kind": "Pod", "namespace": "shop", "name": "web-00000", "apiVersion": "/v1"},
        "metricName": "m",
        "timestamp": "2026-12-07T02:00:00Z",
        "value": "1",
        "selector": None,
    }
    one = json.dumps(item).encode()
    count = (limit - 200) // (len(one) + 2)
    document: dict[str, Any] = {
        "kind": "MetricValueList",
        "apiVersion": "custom.metrics.k8s.io/v1beta1",
        "metadata": {},
    }
    document["items"] = [item] * count
    return json.dumps(document).encode()


MEMORY_BUDGET = 160 * 2**20
"""What the forwarded answers in flight at once may cost: under a third of the chart's memory limit
(512Mi), the operator's own working set beside it."""


def test_the_memory_of_the_forwarded_answers_in_flight_is_bounded() -> None:
    """An answer costs several times its size while parsed, translated and serialised again (Python
    objects): the bound is on the answers in flight at once (MAX_IN_FLIGHT) times that."""
    body = big_v1beta1_list(MAX_BYTES)
    assert len(body) <= MAX_BYTES
    # as Forwarder._ask and server._json do: parse, translate, dump again
    tracemalloc.start()
    try:
        # distinct objects per item, as a real answer's are (no shared dicts)
        answer = adapter_answer(200, body)
        out = json.dumps(answer.body, separators=(",", ":")).encode()
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert answer.status == 200
    assert out
    print(f"answer {len(body) / 2**20:.1f} MiB, peak {peak / 2**20:.1f} MiB")
    assert MAX_IN_FLIGHT * (len(body) + peak) < MEMORY_BUDGET


# -- redirects: the operator's credentials on a path of the adapter's choosing -----------------------


class Bearer(httpx.Auth):
    def auth_flow(self, request: httpx.Request) -> Any:
        request.headers["Authorization"] = "Bearer operator-sa-token"
        yield request


@pytest.fixture
async def redirecting_api_server() -> AsyncIterator[tuple[str, list[str]]]:
    """A stand-in for the kube-apiserver whose v1beta1 backend answers 302 to a Secret list (an
    aggregator that passes redirects: --aggregator-reject-forwarding-redirect=false, or any proxy in
    between)."""
    seen: list[str] = []

    async def metric(request: web.Request) -> web.Response:
        seen.append(request.path)
        raise web.HTTPFound("/api/v1/namespaces/kube-system/secrets")

    async def secrets(request: web.Request) -> web.Response:
        seen.append(f"{request.path} {request.headers.get('Authorization')}")
        return web.json_response({"kind": "SecretList", "items": [{"data": {"token": "c2VjcmV0"}}]})

    app = web.Application()
    app.router.add_get(LEGACY_PREFIX + "/{tail:.+}", metric)
    app.router.add_get("/api/v1/namespaces/kube-system/secrets", secrets)
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
    try:
        yield f"http://127.0.0.1:{port}", seen
    finally:
        await runner.cleanup()


async def test_a_redirect_from_the_adapter_is_not_followed(
    redirecting_api_server: tuple[str, list[str]],
) -> None:
    server, seen = redirecting_api_server
    transport = ApiTransport(server, None, Bearer())
    try:
        forwards = Forwarder(FakeApi(transport), OWN, clock=Clock())  # type: ignore[arg-type]
        answer = await forwards.forward(TAIL, {})
    finally:
        await transport.close()
    assert answer is not None
    assert seen == [f"{LEGACY_PREFIX}/{TAIL}"], seen
    assert "SecretList" not in json.dumps(answer.body)
    assert answer.status == 502
    assert "redirect" in answer.body["message"]
    assert forwards.counts["failed"] == 1
