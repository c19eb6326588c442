"""The few Kubernetes API calls the operator makes (over transport.ApiTransport). No logic lives here."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager, suppress
from datetime import UTC, datetime
from typing import Any

import httpx2 as httpx
from lightkube import ApiError, AsyncClient

from chute_operator import codec
from chute_operator.api import GROUP, KIND, PLURAL, VERSION
from chute_operator.store import slim
from chute_operator.transport import Answer, ApiTransport, Refused
from chute_shared.cluster import MANAGED_BY

CHILD_KINDS = (
    "Deployment",
    "Service",
    "HorizontalPodAutoscaler",
    "ServiceMonitor",
    "NetworkPolicy",
    "EndpointSlice",
    "InferencePool",
    "HTTPRoute",
    "Ingress",
    "PersistentVolumeClaim",
    "Job",
)
"""Kinds the operator creates (the EndpointSlice only for scale to zero, zero.py; InferencePool,
HTTPRoute and Ingress for ``spec.expose``; the PersistentVolumeClaim and Job of the weights caches
Chutes share, weights.py)."""
WATCHED_KINDS = ("Chute", *CHILD_KINDS, "Pod")
"""Every kind the controller keeps in its store."""

LIST_PATHS: dict[str, tuple[str, tuple[str, str]]] = {
    "Chute": (f"{GROUP}/{VERSION}", (f"/apis/{GROUP}/{VERSION}", PLURAL)),
    "Deployment": ("apps/v1", ("/apis/apps/v1", "deployments")),
    "Service": ("v1", ("/api/v1", "services")),
    "HorizontalPodAutoscaler": ("autoscaling/v2", ("/apis/autoscaling/v2", "horizontalpodautoscalers")),
    "ServiceMonitor": ("monitoring.coreos.com/v1", ("/apis/monitoring.coreos.com/v1", "servicemonitors")),
    "NetworkPolicy": ("networking.k8s.io/v1", ("/apis/networking.k8s.io/v1", "networkpolicies")),
    "EndpointSlice": ("discovery.k8s.io/v1", ("/apis/discovery.k8s.io/v1", "endpointslices")),
    "InferencePool": (
        "inference.networking.k8s.io/v1",
        ("/apis/inference.networking.k8s.io/v1", "inferencepools"),
    ),
    "HTTPRoute": ("gateway.networking.k8s.io/v1", ("/apis/gateway.networking.k8s.io/v1", "httproutes")),
    "Ingress": ("networking.k8s.io/v1", ("/apis/networking.k8s.io/v1", "ingresses")),
    "Pod": ("v1", ("/api/v1", "pods")),
    "PersistentVolumeClaim": ("v1", ("/api/v1", "persistentvolumeclaims")),
    "Job": ("batch/v1", ("/apis/batch/v1", "jobs")),
}
"""Per watched kind: its apiVersion, and the collection's path (group prefix, plural)."""
OPTIONAL_KINDS = ("ServiceMonitor", "InferencePool", "HTTPRoute", "Ingress")
"""Children whose API a cluster may not serve (CRDs, or an API turned off): created only where
discovery finds it (:meth:`KubeApi.kind_served`)."""
API_SERVICES = "/apis/apiregistration.k8s.io/v1/apiservices"
LIST_PAGE = 250
"""Objects per page of a LIST."""
MAX_EVENT = 8 << 20
"""The longest watch event read (the API server stores objects of at most about 1.5 MB)."""


class ApiFailure(Exception):
    """The API server refused a call; subclasses name the refusals the operator acts on."""

    def __init__(self, message: str, code: int, reason: str = "", retry_after: float | None = None) -> None:
        super().__init__(message)
        self.code, self.reason = code, reason
        self.retry_after = retry_after
        """Seconds the API server asked us to wait (Retry-After; a 429 when it throttles), if it said."""


class BadRequest(ApiFailure):
    """400: the request itself is malformed (retrying the same request cannot help)."""


class Forbidden(ApiFailure):
    """403: RBAC, admission or a quota refused it."""


class NotFound(ApiFailure):
    """404: no such object, or no such API (a CRD that is not installed)."""


class Conflict(ApiFailure):
    """409: a write raced another (stale resourceVersion or a precondition)."""


class AlreadyExists(Conflict):
    """409 AlreadyExists: a create of a name that is taken."""


class Invalid(ApiFailure):
    """422: the object fails validation (retrying the same object cannot help)."""


Unanswered = httpx.TransportError
"""No answer from the API server through lightkube (leader election). The transport's own
(transport.Unanswered, every other call) is a ConnectionError: callers catch OSError for it."""

_BY_CODE: dict[int, type[ApiFailure]] = {
    400: BadRequest,
    403: Forbidden,
    404: NotFound,
    409: Conflict,
    422: Invalid,
}


def typed(error: BaseException) -> ApiFailure | None:
    """The typed failure for an HTTP error of the API server (None for anything else)."""
    if isinstance(error, ApiFailure):
        return error
    if isinstance(error, ApiError):
        status = error.status
        code = status.code if isinstance(status.code, int) else error.response.status_code
        reason = status.reason or ""
        message = status.message or str(error)
        details = status.details.retryAfterSeconds if status.details else None
    elif isinstance(error, httpx.HTTPStatusError):
        code, reason, message, details = error.response.status_code, "", str(error), None
    else:
        return None
    return _failure(code, reason, message, error.response.headers.get("Retry-After"), details)


def _failure(code: int, reason: str, message: str, header: str | None, details: Any) -> ApiFailure:
    """The typed failure for an answer's code and Status reason; its wait from the Retry-After
    header (seconds), else the Status details' retryAfterSeconds."""
    kind = AlreadyExists if reason == "AlreadyExists" else _BY_CODE.get(code, ApiFailure)
    try:
        retry_after = float(header) if header else (float(details) if details else None)
    except ValueError:
        retry_after = float(details) if details else None
    return kind(message, code, reason, retry_after)


@asynccontextmanager
async def translated() -> AsyncIterator[None]:
    """Raise API server refusals inside the block as typed failures (chained to the original)."""
    try:
        yield
    except (ApiError, httpx.HTTPStatusError) as error:
        failure = typed(error)
        if failure is None:
            raise
        raise failure from error


def error_code(error: BaseException) -> int | None:
    """HTTP status of a failed API call, None when there was no answer."""
    failure = typed(error)
    return failure.code if failure else None


def throttled_for(error: BaseException) -> float | None:
    """For a 429 (the API server throttles), the seconds it asked us to wait (1 if it did not say);
    None for any other error."""
    failure = typed(error)
    if failure is None or failure.code != 429:
        return None
    return failure.retry_after or 1.0


def error_message(error: BaseException) -> str:
    failure = typed(error)
    return str(failure) if failure else (str(error) or type(error).__name__)


class KubeApi:
    """Writes and reads the operator needs, with one field manager for every apply.

    Requests go through an :class:`ApiTransport` (aiohttp) as JSON, answers come back as dicts:
    lightkube's typed models, built for every answer and turned back into dicts, are not needed here.
    """

    def __init__(
        self,
        client: AsyncClient,
        field_manager: str,
        component: str,
        instance: str,
        transport: ApiTransport | None = None,
    ) -> None:
        self.client = client
        self.field_manager = field_manager
        self.component = component
        self.instance = instance
        self._transport = transport

    @property
    def transport(self) -> ApiTransport:
        if self._transport is None:
            self._transport = ApiTransport.of(self.client)
        return self._transport

    async def close(self) -> None:
        if self._transport is not None:
            await self._transport.close()

    async def _call(
        self,
        method: str,
        path: str,
        params: dict[str, str] | None = None,
        body: dict[str, Any] | None = None,
        content_type: str = "application/json",
    ) -> dict[str, Any]:
        """One request; its answer as a dict, or the typed failure raised."""
        data = codec.dumps(body) if body is not None else None
        answer = await self.transport.request(method, path, params, data, content_type)
        if answer.status >= 400:
            raise refusal(answer)
        parsed = codec.loads(answer.body) if answer.body else {}
        return parsed if isinstance(parsed, dict) else {}

    async def apply(self, manifest: dict[str, Any], field_manager: str | None = None) -> dict[str, Any]:
        """Server-side apply, taking over conflicting fields; returns the object as stored."""
        meta = manifest["metadata"]
        params = {"fieldManager": field_manager or self.field_manager, "force": "true"}
        path = object_path(manifest["kind"], meta["namespace"], meta["name"])
        return await self._call("PATCH", path, params, manifest, "application/apply-patch+yaml")

    async def get(self, kind: str, namespace: str, name: str) -> dict[str, Any] | None:
        """A child as the API server has it (whoever made it), or None."""
        try:
            return await self._call("GET", object_path(kind, namespace, name))
        except NotFound:
            return None

    async def delete(self, kind: str, namespace: str, name: str) -> None:
        """Delete a child; one that is already gone is fine."""
        with suppress(NotFound):
            await self._call("DELETE", object_path(kind, namespace, name))

    async def delete_if_unchanged(self, kind: str, namespace: str, name: str, version: str) -> None:
        """Delete an object only if it is still at resourceVersion ``version`` (Conflict otherwise),
        its dependents in the background; one that is already gone is fine."""
        body = {"preconditions": {"resourceVersion": version}, "propagationPolicy": "Background"}
        with suppress(NotFound):
            await self._call("DELETE", object_path(kind, namespace, name), None, body)

    async def patch_strategic(
        self, kind: str, namespace: str, name: str, patch: dict[str, Any]
    ) -> dict[str, Any]:
        """A strategic-merge patch (lists merged by their keys: ownerReferences by uid)."""
        path = object_path(kind, namespace, name)
        return await self._call("PATCH", path, None, patch, "application/strategic-merge-patch+json")

    async def log_tail(self, namespace: str, pod: str, container: str, max_bytes: int = 4096) -> str:
        """The last line a pod's container wrote (``pods/log``, ``tailLines=1``)."""
        params = {"container": container, "tailLines": "1", "limitBytes": str(max_bytes)}
        path = object_path("Pod", namespace, pod) + "/log"
        answer = await self.transport.request("GET", path, params, max_bytes=max_bytes * 2)
        if answer.status >= 400:
            raise refusal(answer)
        return answer.body.decode(errors="replace").strip()

    async def secret(self, namespace: str, name: str) -> dict[str, Any] | None:
        """A Secret of the operator's own (its drain key, the metrics API's certificate), or None."""
        try:
            return await self._call("GET", f"/api/v1/namespaces/{namespace}/secrets/{name}")
        except NotFound:
            return None

    async def create_secret(
        self, namespace: str, name: str, data: dict[str, str], secret_type: str = "Opaque"
    ) -> dict[str, Any]:
        """Create a Secret (``data`` base64); AlreadyExists when the name is taken."""
        body = {
            "apiVersion": "v1",
            "kind": "Secret",
            "metadata": {
                "name": name,
                "namespace": namespace,
                "labels": {"app.kubernetes.io/managed-by": MANAGED_BY},
            },
            "type": secret_type,
            "data": data,
        }
        return await self._call("POST", f"/api/v1/namespaces/{namespace}/secrets", None, body)

    async def replace_secret(self, secret: dict[str, Any]) -> dict[str, Any]:
        """Write back a Secret as read, its ``data`` changed: Conflict when it changed since (its
        metadata.resourceVersion); its labels, annotations and type are kept as they are."""
        meta = secret["metadata"]
        path = f"/api/v1/namespaces/{meta['namespace']}/secrets/{meta['name']}"
        return await self._call("PUT", path, None, {"apiVersion": "v1", "kind": "Secret", **secret})

    async def api_service(self, name: str) -> dict[str, Any] | None:
        """An APIService (the metrics API's), or None."""
        try:
            return await self._call("GET", f"{API_SERVICES}/{name}")
        except NotFound:
            return None

    async def apply_api_service(self, manifest: dict[str, Any], field_manager: str) -> dict[str, Any]:
        """Server-side apply of the fields of an APIService in ``manifest`` (cluster-scoped)."""
        params = {"fieldManager": field_manager, "force": "true"}
        path = f"{API_SERVICES}/{manifest['metadata']['name']}"
        return await self._call("PATCH", path, params, manifest, "application/apply-patch+yaml")

    async def patch_status(self, namespace: str, name: str, status: dict[str, Any]) -> dict[str, Any]:
        """Replace the Chute's status (merge patch on the status subresource)."""
        path = object_path("Chute", namespace, name) + "/status"
        return await self._call("PATCH", path, None, {"status": status}, "application/merge-patch+json")

    async def listing(
        self, kind: str, namespaces: tuple[str, ...], labels: dict[str, Any] | None = None
    ) -> tuple[list[dict[str, Any]], str]:
        """Every object of ``kind`` in ``namespaces`` (all when empty), and the resourceVersion the
        listing was taken at (the oldest, over several namespaces); nothing where the API does not exist.

        Read as JSON pages of LIST_PAGE objects, each object slimmed (store.slim) as its page arrives:
        lightkube's typed models, built for every object and turned back into dicts, made a cold
        operator's memory peak (the listing of every kind at start) about 90 MB higher at 500 Chutes.
        """
        found: list[dict[str, Any]] = []
        versions: list[str] = []
        api_version = LIST_PATHS[kind][0]
        try:
            for namespace in namespaces or ("",):
                params = {"limit": str(LIST_PAGE), **_selector(labels)}
                version = ""
                while True:
                    page = await self._call("GET", collection_path(kind, namespace), params)
                    meta = page.get("metadata") or {}
                    version = version or str(meta.get("resourceVersion") or "")
                    for item in page.pop("items", None) or []:
                        found.append(slim(kind, {"apiVersion": api_version, "kind": kind, **item}))
                    if not meta.get("continue"):
                        break
                    params["continue"] = meta["continue"]
                versions.append(version)
        except NotFound:
            return [], ""
        numeric = [v for v in versions if v.isdigit()]
        oldest = min(numeric, key=int) if len(numeric) == len(versions) else ""
        return found, oldest

    async def watch(
        self,
        transport: ApiTransport,
        kind: str,
        namespace: str,
        labels: dict[str, Any] | None,
        version: str,
        server_seconds: int,
        read_seconds: float,
    ) -> AsyncIterator[dict[str, Any]]:
        """The watch events of ``kind`` in ``namespace`` (``""``: all) after resourceVersion
        ``version``, bookmarks included, as the API server sends them (``{"type", "object"}``), until
        it ends the watch (after about ``server_seconds``). ``transport``: the watches' own (each
        holds a connection open). A refusal raises its typed failure (410 Gone: the version is too
        old to resume from)."""
        params = {
            "watch": "1",
            "resourceVersion": version,
            "allowWatchBookmarks": "true",
            "timeoutSeconds": str(server_seconds),
            **_selector(labels),
        }
        try:
            path = collection_path(kind, namespace)
            async for line in transport.lines(path, params, read_seconds, MAX_EVENT):
                if not line.strip():
                    continue  # a blank line ending in CRLF
                event = codec.loads(line)
                if isinstance(event, dict):
                    yield event
        except Refused as refused:
            raise refusal(refused.answer) from None

    async def endpoint_slices(self, namespace: str, service: str) -> list[dict[str, Any]]:
        """The EndpointSlices of one Service (the activator's)."""
        params = {"labelSelector": f"kubernetes.io/service-name={service}"}
        listed = await self._call("GET", collection_path("EndpointSlice", namespace), params)
        return [
            {"apiVersion": "discovery.k8s.io/v1", "kind": "EndpointSlice", **s}
            for s in listed.get("items") or []
        ]

    async def served(self, group_version: str, plural: str) -> bool:
        """Whether the API server serves resource ``plural`` of ``group_version`` (discovery:
        readable by every authenticated client, whatever namespaces its RBAC covers)."""
        try:
            found = await self._call("GET", f"/apis/{group_version}")
        except NotFound:
            return False
        return any(resource.get("name") == plural for resource in found.get("resources") or [])

    async def read_path(self, path: str) -> dict[str, Any]:
        """A GET of a path that is not a watched kind (``/version``, an API group's discovery)."""
        return await self._call("GET", path)

    async def dry_run_create(self, kind: str, namespace: str, body: dict[str, Any]) -> dict[str, Any]:
        """What the API server would store for ``body`` (``dryRun=All``: nothing is written)."""
        return await self._call("POST", collection_path(kind, namespace), {"dryRun": "All"}, body)

    async def kind_served(self, kind: str) -> bool:
        """Whether the API of a watched kind exists (one of OPTIONAL_KINDS: a CRD may be missing)."""
        api_version, (_, plural) = LIST_PATHS[kind]
        return await self.served(api_version, plural)

    async def event(self, chute: dict[str, Any], kind: str, reason: str, message: str) -> None:
        """Record an Event on the Chute (``kubectl describe chute`` shows it)."""
        meta = chute["metadata"]
        now = datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
        event = {
            "apiVersion": "v1",
            "kind": "Event",
            "metadata": {"generateName": f"{meta['name']}.", "namespace": meta["namespace"]},
            "involvedObject": {
                "apiVersion": chute.get("apiVersion", f"{GROUP}/{VERSION}"),
                "kind": KIND,
                "name": meta["name"],
                "namespace": meta["namespace"],
                "uid": meta.get("uid"),
            },
            "type": kind,
            "reason": reason,
            "message": message[:1024],
            "source": {"component": self.component},
            "reportingComponent": self.component,
            "reportingInstance": self.instance,
            "firstTimestamp": now,
            "lastTimestamp": now,
            "count": 1,
        }
        await self._call("POST", f"/api/v1/namespaces/{meta['namespace']}/events", None, event)


def _selector(labels: dict[str, Any] | None) -> dict[str, str]:
    """The ``labelSelector`` parameter for ``labels`` (none when there are none)."""
    selector = ",".join(f"{key}={value}" for key, value in (labels or {}).items())
    return {"labelSelector": selector} if selector else {}


def collection_path(kind: str, namespace: str) -> str:
    """The path of a watched kind's collection, in one namespace or (``""``) all."""
    prefix, plural = LIST_PATHS[kind][1]
    return f"{prefix}/namespaces/{namespace}/{plural}" if namespace else f"{prefix}/{plural}"


def object_path(kind: str, namespace: str, name: str) -> str:
    return f"{collection_path(kind, namespace)}/{name}"


def refusal(answer: Answer) -> ApiFailure:
    """The typed failure for an API server's error answer (its Status body, and Retry-After)."""
    try:
        status = json.loads(answer.body) if answer.body else {}
    except ValueError:
        status = {}
    if not isinstance(status, dict):
        status = {}
    reason = str(status.get("reason") or "")
    message = str(status.get("message") or f"HTTP {answer.status}")
    details = (status.get("details") or {}).get("retryAfterSeconds")
    return _failure(answer.status, reason, message, answer.headers.get("Retry-After"), details)
