"""The metrics API's HTTP side beside another adapter: who is checked for what, and what reaches the
forwarder (found by the breaking pass of issue 26)."""

from __future__ import annotations

import time
import urllib.parse
from collections.abc import AsyncIterator
from typing import Any

import pytest
from aiohttp.test_utils import TestClient, TestServer
from yarl import URL

from chute_operator.metricsapi import server as server_module
from chute_operator.metricsapi.auth import Authorizer, FrontProxyConfig, User
from chute_operator.metricsapi.forwarding import parse_path, v1beta1_path
from chute_operator.metricsapi.query import Answer
from chute_operator.metricsapi.samples import Sample, Samples
from chute_operator.metricsapi.server import PREFIX, Security, metrics_api_app
from chute_shared.metrics import UTILIZATION_METRIC
from tests.unit.chute_operator.metricsapi.test_server_forwarding import FORWARDED as EMPTY
from tests.unit.chute_operator.metricsapi.test_server_forwarding import Forward

NS = "shop"
CHUTE_POD = {
    "metadata": {"namespace": NS, "name": "qwen-1", "labels": {"chutes.ai/chute": "qwen", "tier": "web"}}
}


class Reviews:
    def __init__(self, allow: Any = lambda spec: True) -> None:
        self.specs: list[dict[str, Any]] = []
        self.allow = allow

    async def __call__(self, spec: dict[str, Any]) -> dict[str, Any]:
        self.specs.append(spec)
        return {"allowed": bool(self.allow(spec))}


async def serve(
    forward: Forward, reviews: Reviews | None, authenticated: bool = True
) -> AsyncIterator[TestClient[Any, Any]]:
    samples = Samples(max_age=10.0)
    samples.record((NS, "qwen-1"), Sample(utilization=0.75, read_at=time.monotonic(), timestamp=time.time()))
    security = None
    if reviews is not None:
        security = Security(lambda: FrontProxyConfig(client_ca="x"), Authorizer(reviews))
    app = metrics_api_app(lambda namespace, selector: [CHUTE_POD], samples, dict, 2, security, forward)
    patch = pytest.MonkeyPatch()
    if authenticated:  # as if the front proxy's certificate had been verified
        patch.setattr(server_module, "authenticate", lambda peercert, headers, config: User("hpa", ("g",)))
    try:
        async with TestClient(TestServer(app, host="127.0.0.1")) as client:
            yield client
    finally:
        patch.undo()


def kube_request_info(path: str) -> dict[str, str]:
    """k8s.io/apiserver RequestInfoFactory for a GET under /apis/GROUP/VERSION, as the kube-apiserver
    authorized it (URL.Path is the decoded path)."""
    parts = urllib.parse.unquote(path).strip("/").split("/")[3:]
    info = {"verb": "get", "namespace": "", "resource": "", "name": "", "subresource": ""}
    if parts and parts[0] == "namespaces" and len(parts) > 1:
        info["namespace"] = parts[1]
        if len(parts) > 2 and parts[2] not in ("status", "finalize"):
            parts = parts[2:]
    if len(parts) >= 3:
        info["subresource"] = parts[2]
    if len(parts) >= 2:
        info["name"] = parts[1]
    if len(parts) >= 1:
        info["resource"] = parts[0]
    if not info["name"]:
        info["verb"] = "list"
    return info


PATHS = [
    f"/namespaces/{NS}/pods/*/http_requests",
    "/namespaces/*/queue_depth",
    f"/namespaces/{NS}/pods/web-1/http_requests",
    f"/namespaces/{NS}/services/web/hits",
    f"/namespaces/{NS}/metrics/queue_depth",
    f"/namespaces/{NS}/queue_depth",
    "/nodes/*/temperature",
    "/nodes/node-1/temperature",
    f"/namespaces/{NS}/status/x/y",
]


@pytest.mark.parametrize("path", PATHS)
async def test_the_operator_checks_what_the_kube_apiserver_authorized(path: str) -> None:
    """SAR attributes vs the kube-apiserver's RequestInfo: the same, the `*` name too (get, name `*`)."""
    reviews, forward = Reviews(), Forward(Answer(200, EMPTY))
    async for client in serve(forward, reviews):
        response = await client.get(URL(PREFIX + path, encoded=True))
        assert response.status == 200, await response.text()
    attributes = reviews.specs[-1]["resourceAttributes"]
    kube = kube_request_info(PREFIX + path)
    assert {k: attributes[k] for k in kube} == kube
    assert forward.asked[-1][0] == path.lstrip("/")


@pytest.mark.parametrize("path", [f"/namespaces/{NS}/pods/*/http_requests", "/nodes/*/temperature"])
async def test_a_wildcard_name_is_checked_with_the_verb_the_kube_apiserver_used(path: str) -> None:
    """A caller allowed only `get` (as the kube-apiserver checked it for name `*`) is not refused."""
    reviews = Reviews(allow=lambda spec: spec["resourceAttributes"]["verb"] == "get")
    forward = Forward(Answer(200, EMPTY))
    async for client in serve(forward, reviews):
        response = await client.get(URL(PREFIX + path, encoded=True))
        assert response.status == 200


@pytest.mark.parametrize(
    "raw",
    [
        f"/namespaces/{NS}/pods/..%2F..%2Fnodes%2Fn/m",
        f"/namespaces/{NS}/pods/a%2Fb/m",
        f"/namespaces/{NS}/services/%2E%2E/x/m",
        f"/namespaces/{NS}/services/web/hits%3Flimit=1",
        f"/namespaces/{NS}/services/web/hits%23frag",
        "/namespaces/..%2Fkube-system/services/web/hits",
    ],
)
async def test_encoded_slashes_and_dots_never_reach_the_adapter_as_another_path(raw: str) -> None:
    """Held up: whatever reaches the forwarder parses to the attributes the operator checked."""
    reviews, forward = Reviews(), Forward(Answer(200, EMPTY))
    async for client in serve(forward, reviews):
        await client.get(URL(PREFIX + raw, encoded=True))
    for tail, _ in forward.asked:
        if v1beta1_path(tail) is None:
            continue  # the real Forwarder answers None: nothing goes to the adapter
        parsed = parse_path(tail)
        assert parsed is not None
        assert ".." not in tail.split("/")
        attributes = reviews.specs[-1]["resourceAttributes"]
        assert (attributes["namespace"], attributes["resource"], attributes["subresource"]) == (
            parsed.namespace,
            parsed.resource,
            parsed.subresource,
        )
        forwarded = v1beta1_path(tail)
        assert forwarded is not None
        assert "?" not in forwarded
        assert "#" not in forwarded


async def test_an_unauthenticated_direct_request_is_never_forwarded() -> None:
    """Held up: no front-proxy identity, no SubjectAccessReview, nothing forwarded: 401."""
    reviews, forward = Reviews(), Forward(Answer(200, EMPTY))
    async for client in serve(forward, reviews, authenticated=False):
        for path in PATHS:
            response = await client.get(URL(PREFIX + path, encoded=True), headers={"X-Remote-User": "admin"})
            assert response.status == 401
    assert forward.asked == []
    assert reviews.specs == []


async def test_a_chute_metric_is_taken_from_the_adapter_only_when_it_has_values() -> None:
    forward = Forward(Answer(200, EMPTY))
    async for client in serve(forward, None):
        response = await client.get(
            URL(f"{PREFIX}/namespaces/{NS}/pods/*/{UTILIZATION_METRIC}", encoded=True),
            params={"labelSelector": "chutes.ai/chute=gone"},
        )
        body = await response.json()
    assert forward.asked  # asked the adapter: no pod of a Chute matched
    assert response.status == 404, body
    assert "no pod matches" in body["message"]


async def test_a_selector_over_chute_and_other_pods_is_answered_for_the_chute_pods_alone() -> None:
    """Documented (docs/autoscaling.md, "Beside another custom metrics adapter"), not merged: a
    request for a metric the operator serves whose selector matches a Chute's pod is answered by the
    operator, for the Chute pods it watches; the adapter is not asked about the pods of no Chute (the
    operator sees none, so it would have to ask the adapter on every Chute HPA's read). The HPA counts
    the pods missing from the answer as it counts any pod without a value."""
    forward = Forward(Answer(200, EMPTY))
    async for client in serve(forward, None):
        response = await client.get(
            URL(f"{PREFIX}/namespaces/{NS}/pods/*/{UTILIZATION_METRIC}", encoded=True),
            params={"labelSelector": "tier=web"},  # the Chute's pod and, say, a non-Chute web-1
        )
        assert response.status == 200
        body = await response.json()
    assert [item["describedObject"]["name"] for item in body["items"]] == ["qwen-1"]
    assert forward.asked == []


async def test_a_busy_forwarders_retry_after_reaches_the_caller() -> None:
    busy = Answer(503, {"kind": "Status", "code": 503}, {"Retry-After": "1"})
    async for client in serve(Forward(busy), None):
        response = await client.get(URL(f"{PREFIX}/namespaces/{NS}/services/web/hits", encoded=True))
        assert response.status == 503
        assert response.headers["Retry-After"] == "1"
