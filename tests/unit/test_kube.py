"""API failures arrive as typed errors (NotFound, Conflict, Invalid, ...), never as bare status codes."""

from __future__ import annotations

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
    NotFound,
    throttled_for,
    translated,
    typed,
)


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


async def test_a_listing_reads_json_pages_and_keeps_objects_slim() -> None:
    """No typed models for thousands of objects: they set a cold operator's memory peak."""
    from types import SimpleNamespace

    from chute_operator.kube import KubeApi

    asked: list[httpx.URL] = []

    def answer(request: httpx.Request) -> httpx.Response:
        asked.append(request.url)
        if "servicemonitors" in request.url.path:
            return httpx.Response(404, json={"kind": "Status", "code": 404, "reason": "NotFound"})
        second = request.url.params.get("continue") == "next"
        pod = {
            "metadata": {"name": f"p{int(second)}", "namespace": "ns", "managedFields": [{"manager": "k"}]}
        }
        meta = {"resourceVersion": "9" if second else "7", **({} if second else {"continue": "next"})}
        return httpx.Response(200, json={"kind": "PodList", "metadata": meta, "items": [pod]})

    http = httpx.AsyncClient(transport=httpx.MockTransport(answer), base_url="https://api")
    api = KubeApi(SimpleNamespace(_client=SimpleNamespace(_client=http)), "m", "c", "i")  # type: ignore[arg-type]
    pods, version = await api.listing("Pod", (), {"app.kubernetes.io/managed-by": "chute-operator"})
    assert version == "7"  # the first page's: the snapshot every page belongs to
    assert [p["metadata"]["name"] for p in pods] == ["p0", "p1"]
    assert all(p["kind"] == "Pod" and p["apiVersion"] == "v1" for p in pods)
    assert all("managedFields" not in p["metadata"] for p in pods)
    assert asked[0].path == "/api/v1/pods"
    assert asked[0].params["labelSelector"] == "app.kubernetes.io/managed-by=chute-operator"
    assert await api.listing("ServiceMonitor", ("ns",)) == ([], "")
    assert asked[-1].path == "/apis/monitoring.coreos.com/v1/namespaces/ns/servicemonitors"
