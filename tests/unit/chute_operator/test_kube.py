"""API failures arrive as typed errors (NotFound, Conflict, Invalid, ...), never as bare status codes."""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

import httpx2 as httpx
import pytest
from lightkube import ApiError

from chute_operator.kube import (
    AlreadyExists,
    ApiFailure,
    BadRequest,
    Conflict,
    Forbidden,
    Invalid,
    KubeApi,
    NotFound,
    throttled_for,
    translated,
    typed,
)
from chute_operator.transport import Answer


def _api_error(code: int, reason: str = "", message: str = "refused") -> ApiError:
    request = httpx.Request("PATCH", "https://127.0.0.1/api/v1/namespaces/ns/services/foo")
    body = {"kind": "Status", "apiVersion": "v1", "status": "Failure", "code": code, "reason": reason}
    response = httpx.Response(code, json={**body, "message": message}, request=request)
    return ApiError(request=request, response=response)


@pytest.mark.parametrize(
    ("code", "reason", "kind"),
    [
        (400, "BadRequest", BadRequest),
        (403, "Forbidden", Forbidden),
        (404, "NotFound", NotFound),
        (409, "Conflict", Conflict),
        (409, "AlreadyExists", AlreadyExists),
        (422, "Invalid", Invalid),
    ],
)
def test_api_errors_become_typed_failures(code: int, reason: str, kind: type[ApiFailure]) -> None:
    failure = typed(_api_error(code, reason, 'services "foo" is forbidden'))
    assert type(failure) is kind
    assert failure.code == code
    assert str(failure) == 'services "foo" is forbidden'


def test_already_exists_is_a_conflict_and_other_codes_stay_generic() -> None:
    assert isinstance(typed(_api_error(409, "AlreadyExists")), Conflict)
    failure = typed(_api_error(500, "InternalError", "etcd timed out"))
    assert type(failure) is ApiFailure
    assert (failure.code, str(failure)) == (500, "etcd timed out")
    assert typed(ValueError("no")) is None


async def test_translated_raises_the_typed_failure_from_the_original() -> None:
    original = _api_error(404, "NotFound")
    with pytest.raises(NotFound) as caught:
        async with translated():
            raise original
    assert caught.value.__cause__ is original
    with pytest.raises(ValueError, match="untouched"):
        async with translated():
            raise ValueError("untouched")


def test_a_throttled_request_says_how_long_the_api_server_asked_to_wait() -> None:
    """kube-apiserver answers 429 with a Retry-After header (and details.retryAfterSeconds)."""
    request = httpx.Request("PATCH", "https://127.0.0.1/api/v1/namespaces/ns/services/foo")
    body = {
        "kind": "Status",
        "apiVersion": "v1",
        "status": "Failure",
        "code": 429,
        "reason": "TooManyRequests",
    }
    header = httpx.Response(429, json=body, headers={"Retry-After": "3"}, request=request)
    assert throttled_for(ApiError(request=request, response=header)) == 3.0
    details = httpx.Response(429, json={**body, "details": {"retryAfterSeconds": 2}}, request=request)
    assert throttled_for(ApiError(request=request, response=details)) == 2.0
    assert throttled_for(_api_error(429, "TooManyRequests")) == 1.0  # it did not say
    assert throttled_for(_api_error(500, "InternalError")) is None
    assert throttled_for(OSError("refused")) is None


class FakeTransport:
    """Answers requests from a function, recording what was asked."""

    def __init__(self, answer: Callable[[str, str, dict[str, str], Any], tuple[int, Any]]) -> None:
        self.answer = answer
        self.asked: list[tuple[str, str, dict[str, str], Any]] = []

    async def request(
        self,
        method: str,
        path: str,
        params: dict[str, str] | None = None,
        body: bytes | None = None,
        content_type: str = "application/json",
    ) -> Answer:
        sent = json.loads(body) if body is not None else None
        self.asked.append((method, path, dict(params or {}), sent))
        status, payload = self.answer(method, path, dict(params or {}), sent)
        headers = {"Retry-After": "3"} if status == 429 else {}
        return Answer(status, headers, json.dumps(payload).encode())

    async def close(self) -> None:
        pass


def _api(answer: Callable[[str, str, dict[str, str], Any], tuple[int, Any]]) -> tuple[KubeApi, FakeTransport]:
    transport = FakeTransport(answer)
    return KubeApi(None, "m", "c", "i", transport=transport), transport  # type: ignore[arg-type]


def _status(code: int, reason: str, message: str = "refused", **details: Any) -> dict[str, Any]:
    body = {"kind": "Status", "status": "Failure", "code": code, "reason": reason, "message": message}
    return {**body, **({"details": details} if details else {})}


async def test_a_listing_reads_json_pages_and_keeps_objects_slim() -> None:
    """No typed models for thousands of objects: they set a cold operator's memory peak."""

    def answer(method: str, path: str, params: dict[str, str], body: Any) -> tuple[int, Any]:
        if "servicemonitors" in path:
            return 404, _status(404, "NotFound")
        second = params.get("continue") == "next"
        pod = {
            "metadata": {"name": f"p{int(second)}", "namespace": "ns", "managedFields": [{"manager": "k"}]}
        }
        meta = {"resourceVersion": "9" if second else "7", **({} if second else {"continue": "next"})}
        return 200, {"kind": "PodList", "metadata": meta, "items": [pod]}

    api, transport = _api(answer)
    pods, version = await api.listing("Pod", (), {"app.kubernetes.io/managed-by": "chute-operator"})
    assert version == "7"  # the first page's: the snapshot every page belongs to
    assert [p["metadata"]["name"] for p in pods] == ["p0", "p1"]
    assert all(p["kind"] == "Pod" and p["apiVersion"] == "v1" for p in pods)
    assert all("managedFields" not in p["metadata"] for p in pods)
    assert transport.asked[0][1] == "/api/v1/pods"
    assert transport.asked[0][2]["labelSelector"] == "app.kubernetes.io/managed-by=chute-operator"
    assert await api.listing("ServiceMonitor", ("ns",)) == ([], "")
    assert transport.asked[-1][1] == "/apis/monitoring.coreos.com/v1/namespaces/ns/servicemonitors"


async def test_each_call_is_the_request_the_api_server_expects() -> None:
    """Paths, verbs, content types and the field manager, as kubectl and client-go send them."""

    def answer(method: str, path: str, params: dict[str, str], body: Any) -> tuple[int, Any]:
        if path.endswith("/gone"):
            return 404, _status(404, "NotFound")
        return 200, body or {"kind": "Service", "metadata": {"name": "s"}}

    api, transport = _api(answer)
    sent = transport.asked
    service = {"apiVersion": "v1", "kind": "Service", "metadata": {"name": "s", "namespace": "ns"}}
    assert await api.apply(service) == service
    assert await api.apply(service, field_manager="other") == service
    assert await api.get("Deployment", "ns", "gone") is None
    await api.delete("HorizontalPodAutoscaler", "ns", "gone")
    await api.patch_status("ns", "c", {"observedGeneration": 2})
    await api.event({"metadata": {"name": "c", "namespace": "ns", "uid": "u"}}, "Normal", "Ready", "x" * 2000)
    assert [(m, p, q) for m, p, q, _ in sent] == [
        ("PATCH", "/api/v1/namespaces/ns/services/s", {"fieldManager": "m", "force": "true"}),
        ("PATCH", "/api/v1/namespaces/ns/services/s", {"fieldManager": "other", "force": "true"}),
        ("GET", "/apis/apps/v1/namespaces/ns/deployments/gone", {}),
        ("DELETE", "/apis/autoscaling/v2/namespaces/ns/horizontalpodautoscalers/gone", {}),
        ("PATCH", "/apis/chutes.ai/v1alpha1/namespaces/ns/chutes/c/status", {}),
        ("POST", "/api/v1/namespaces/ns/events", {}),
    ]
    assert sent[4][3] == {"status": {"observedGeneration": 2}}
    event = sent[5][3]
    assert event["involvedObject"] == {
        "apiVersion": "chutes.ai/v1alpha1", "kind": "Chute", "name": "c", "namespace": "ns", "uid": "u"
    }  # fmt: skip
    assert (event["type"], event["reason"], len(event["message"])) == ("Normal", "Ready", 1024)


@pytest.mark.parametrize(
    ("code", "reason", "kind"),
    [(400, "BadRequest", BadRequest), (404, "NotFound", NotFound), (409, "AlreadyExists", AlreadyExists),
     (409, "Conflict", Conflict), (422, "Invalid", Invalid), (403, "Forbidden", Forbidden)],
)  # fmt: skip
async def test_a_refused_call_raises_its_typed_failure(
    code: int, reason: str, kind: type[ApiFailure]
) -> None:
    api, _ = _api(lambda *_: (code, _status(code, reason, 'services "s" is refused')))
    service = {"apiVersion": "v1", "kind": "Service", "metadata": {"name": "s", "namespace": "ns"}}
    with pytest.raises(kind, match='services "s" is refused') as caught:
        await api.apply(service)
    assert caught.value.code == code


async def test_a_throttled_call_says_how_long_to_wait() -> None:
    api, _ = _api(lambda *_: (429, _status(429, "TooManyRequests")))
    with pytest.raises(ApiFailure) as caught:
        await api.patch_status("ns", "c", {})
    assert throttled_for(caught.value) == 3.0
    api, _ = _api(lambda *_: (500, "not a Status"))
    with pytest.raises(ApiFailure, match="HTTP 500"):
        await api.patch_status("ns", "c", {})
