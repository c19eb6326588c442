"""What the caller gets for the answer to a forwarded request (pure): a 200 MetricValueList as v1beta2,
the adapter's refusal as it wrote it, a 502 Status for anything else (found by the breaking pass of
issue 26)."""

from __future__ import annotations

import json
from typing import Any

import pytest

from chute_operator.metricsapi.adapter_answer import adapter_answer

ITEM = {
    "describedObject": {"kind": "Pod", "namespace": "shop", "name": "web-1", "apiVersion": "/v1"},
    "metricName": "http_requests",
    "timestamp": "2026-12-07T02:00:00Z",
    "value": "1500m",
    "selector": None,
    "window": 60,
}
V1BETA1_LIST = {
    "kind": "MetricValueList",
    "apiVersion": "custom.metrics.k8s.io/v1beta1",
    "metadata": {},
    "items": [ITEM],
}


def body(document: Any) -> bytes:
    return json.dumps(document).encode()


def test_a_metric_value_list_comes_back_as_v1beta2() -> None:
    answer = adapter_answer(200, body(V1BETA1_LIST))
    assert answer.status == 200
    assert answer.body["apiVersion"] == "custom.metrics.k8s.io/v1beta2"
    assert answer.body["items"][0]["metric"] == {"name": "http_requests"}
    assert answer.body["items"][0]["windowSeconds"] == 60


def test_the_adapters_refusal_passes_as_it_wrote_it() -> None:
    status = {"kind": "Status", "apiVersion": "v1", "code": 404, "reason": "NotFound", "message": "no"}
    assert (adapter_answer(404, body(status)).status, adapter_answer(404, body(status)).body) == (404, status)


@pytest.mark.parametrize("text", [b"<html>bad gateway</html>", body({"error": "no"}), body([1])])
def test_a_refusal_that_is_no_status_becomes_one_with_its_code(text: bytes) -> None:
    answer = adapter_answer(500, text)
    assert (answer.status, answer.body["kind"], answer.body["code"]) == (500, "Status", 500)
    assert text[:20].decode() in answer.body["message"]


@pytest.mark.parametrize("code", [301, 302, 307, 308])
def test_a_redirect_is_a_502(code: int) -> None:
    answer = adapter_answer(code, b"", "https://elsewhere/api/v1/secrets")
    assert answer.status == 502
    assert "redirect" in answer.body["message"]
    assert "not followed" in answer.body["message"]


@pytest.mark.parametrize(
    ("code", "says"),
    [(401, "did not accept the operator's credentials"), (403, "the operator's ServiceAccount may not")],
)
def test_a_refusal_of_the_operators_own_request_is_a_502_about_the_operator(code: int, says: str) -> None:
    """The caller was authorized already (by the kube-apiserver, then by the operator): a 401/403 on
    the forwarded request is about the operator's credentials or RBAC, never the caller's."""
    refusal = {
        "kind": "Status",
        "apiVersion": "v1",
        "code": code,
        "message": "system:serviceaccount:x cannot",
    }
    answer = adapter_answer(code, body(refusal))
    assert answer.status == 502
    assert says in answer.body["message"]
    assert "system:serviceaccount:x cannot" in answer.body["message"]


@pytest.mark.parametrize(
    ("document", "says"),
    [
        ({"kind": "Status", "code": 500}, "a Status, not a MetricValueList"),
        ([ITEM], "no JSON object"),
        ({"kind": "MetricValueList", "items": [1]}, "an item is an int"),
        ({"kind": "MetricValueList", "items": {"a": 1}}, "items is an object"),
        ({"kind": "MetricValueList", "metadata": []}, "metadata is an array"),
        ({"kind": "MetricValueList", "items": [{**ITEM, "describedObject": "pod"}]}, "describedObject"),
        ({"kind": "MetricValueList", "items": [{**ITEM, "metricName": 1}]}, "metricName"),
        ({"kind": "MetricValueList", "items": [{**ITEM, "selector": "a=b"}]}, "selector"),
        ({"kind": "MetricValueList", "items": [{**ITEM, "window": "60"}]}, "window"),
        ({"kind": "MetricValueList", "items": [{**ITEM, "value": {}}]}, "value"),
        ({"kind": "MetricValueList", "items": [{**ITEM, "timestamp": 1}]}, "timestamp"),
    ],
)
def test_a_200_that_is_no_well_formed_metric_value_list_is_a_502(document: Any, says: str) -> None:
    answer = adapter_answer(200, body(document))
    assert answer.status == 502
    assert says in answer.body["message"]


@pytest.mark.parametrize("text", [b"", b"<html>", b"[" * 100_000 + b"]" * 100_000, b'{"a":' * 100_000])
def test_a_body_that_is_no_json_object_is_a_502(text: bytes) -> None:
    answer = adapter_answer(200, text)
    assert answer.status == 502
    assert answer.body["kind"] == "Status"
    assert len(answer.body["message"]) < 400
