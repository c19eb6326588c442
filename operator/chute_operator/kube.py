"""The few Kubernetes API calls the operator makes (lightkube, asyncio). No logic lives here."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from datetime import UTC, datetime
from typing import Any, cast

import httpx2 as httpx
from lightkube import ApiError, AsyncClient
from lightkube.generic_resource import create_namespaced_resource
from lightkube.resources.apps_v1 import Deployment
from lightkube.resources.autoscaling_v2 import HorizontalPodAutoscaler
from lightkube.resources.core_v1 import Event, Pod, Service
from lightkube.resources.discovery_v1 import EndpointSlice
from lightkube.resources.networking_v1 import NetworkPolicy
from lightkube.types import PatchType

from chute_operator.api import GROUP, KIND, PLURAL, VERSION
from chute_operator.store import slim

ChuteResource = create_namespaced_resource(GROUP, VERSION, KIND, PLURAL)
ServiceMonitor = create_namespaced_resource(
    "monitoring.coreos.com", "v1", "ServiceMonitor", "servicemonitors"
)

CHILD_RESOURCES: dict[str, Any] = {
    "Deployment": Deployment,
    "Service": Service,
    "HorizontalPodAutoscaler": HorizontalPodAutoscaler,
    "ServiceMonitor": ServiceMonitor,
    "NetworkPolicy": NetworkPolicy,
    "EndpointSlice": EndpointSlice,
}
"""Kinds the operator creates, in apply order (the EndpointSlice only for scale to zero, zero.py)."""


WATCHED_RESOURCES: dict[str, Any] = {"Chute": ChuteResource, **CHILD_RESOURCES, "Pod": Pod}
"""Every kind the controller keeps in its store."""

LIST_PATHS: dict[str, tuple[str, tuple[str, str]]] = {
    "Chute": (f"{GROUP}/{VERSION}", (f"/apis/{GROUP}/{VERSION}", PLURAL)),
    "Deployment": ("apps/v1", ("/apis/apps/v1", "deployments")),
    "Service": ("v1", ("/api/v1", "services")),
    "HorizontalPodAutoscaler": ("autoscaling/v2", ("/apis/autoscaling/v2", "horizontalpodautoscalers")),
    "ServiceMonitor": ("monitoring.coreos.com/v1", ("/apis/monitoring.coreos.com/v1", "servicemonitors")),
    "NetworkPolicy": ("networking.k8s.io/v1", ("/apis/networking.k8s.io/v1", "networkpolicies")),
    "EndpointSlice": ("discovery.k8s.io/v1", ("/apis/discovery.k8s.io/v1", "endpointslices")),
    "Pod": ("v1", ("/api/v1", "pods")),
}
"""Per watched kind: its apiVersion, and the collection's path (group prefix, plural)."""
LIST_PAGE = 250
"""Objects per page of a LIST."""


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
"""No answer from the API server at all (connection refused or reset, a timeout)."""

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
    kind = AlreadyExists if reason == "AlreadyExists" else _BY_CODE.get(code, ApiFailure)
    return kind(message, code, reason, _retry_after(error.response, details))


def _retry_after(response: httpx.Response | None, details: int | None) -> float | None:
    """The Retry-After header (seconds), else the Status details' retryAfterSeconds."""
    header = response.headers.get("Retry-After") if response is not None else None
    try:
        return float(header) if header else (float(details) if details else None)
    except ValueError:
        return float(details) if details else None


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
    """Writes and reads the operator needs, with one field manager for every apply."""

    def __init__(self, client: AsyncClient, field_manager: str, component: str, instance: str) -> None:
        self.client = client
        self.field_manager = field_manager
        self.component = component
        self.instance = instance

    async def apply(self, manifest: dict[str, Any], field_manager: str | None = None) -> dict[str, Any]:
        """Server-side apply, taking over conflicting fields; returns the object as stored."""
        meta = manifest["metadata"]
        async with translated():
            result = await self.client.patch(
                CHILD_RESOURCES[manifest["kind"]],
                meta["name"],
                manifest,
                namespace=meta["namespace"],
                patch_type=PatchType.APPLY,
                field_manager=field_manager or self.field_manager,
                force=True,
            )
        stored: dict[str, Any] = result.to_dict()
        return stored

    async def get(self, kind: str, namespace: str, name: str) -> dict[str, Any] | None:
        """A child as the API server has it (whoever made it), or None."""
        try:
            async with translated():
                found = await self.client.get(CHILD_RESOURCES[kind], name, namespace=namespace)
        except NotFound:
            return None
        stored: dict[str, Any] = found.to_dict()
        return stored

    async def delete(self, kind: str, namespace: str, name: str) -> None:
        """Delete a child; one that is already gone is fine."""
        try:
            async with translated():
                await self.client.delete(CHILD_RESOURCES[kind], name, namespace=namespace)
        except NotFound:
            pass

    async def patch_status(self, namespace: str, name: str, status: dict[str, Any]) -> dict[str, Any]:
        """Replace the Chute's status (merge patch on the status subresource)."""
        async with translated():
            result = await self.client.patch(
                ChuteResource.Status,
                name,
                {"status": status},
                namespace=namespace,
                patch_type=PatchType.MERGE,
            )
        stored: dict[str, Any] = result.to_dict()
        return stored

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
        api_version, path = LIST_PATHS[kind]
        http: httpx.AsyncClient = self.client._client._client
        selector = ",".join(f"{key}={value}" for key, value in (labels or {}).items())
        try:
            async with translated():
                for namespace in namespaces or ("",):
                    url = f"{path[0]}/namespaces/{namespace}/{path[1]}" if namespace else "/".join(path)
                    params = {"limit": str(LIST_PAGE), **({"labelSelector": selector} if selector else {})}
                    version = ""
                    while True:
                        response = await http.get(url, params=params)
                        response.raise_for_status()
                        page = response.json()
                        del response
                        meta = page.get("metadata") or {}
                        version = version or str(meta.get("resourceVersion") or "")
                        for item in page.get("items") or []:
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

    async def endpoint_slices(self, namespace: str, service: str) -> list[dict[str, Any]]:
        """The EndpointSlices of one Service (the activator's)."""
        labels: dict[str, Any] = {"kubernetes.io/service-name": service}
        return [
            s.to_dict() async for s in self.client.list(EndpointSlice, namespace=namespace, labels=labels)
        ]

    async def served(self, group_version: str, plural: str) -> bool:
        """Whether the API server serves resource ``plural`` of ``group_version`` (discovery:
        readable by every authenticated client, whatever namespaces its RBAC covers)."""
        http: httpx.AsyncClient = self.client._client._client  # lightkube has no discovery call
        try:
            async with translated():
                response = await http.get(f"/apis/{group_version}")
                response.raise_for_status()
        except NotFound:
            return False
        resources = response.json().get("resources") or []
        return any(resource.get("name") == plural for resource in resources)

    async def service_monitors_served(self) -> bool:
        """Whether the ServiceMonitor API (prometheus-operator's CRD) exists."""
        return await self.served("monitoring.coreos.com/v1", "servicemonitors")

    async def event(self, chute: dict[str, Any], kind: str, reason: str, message: str) -> None:
        """Record an Event on the Chute (``kubectl describe chute`` shows it)."""
        meta = chute["metadata"]
        now = datetime.now(UTC)
        event = cast(
            Event,
            Event.from_dict(
                {
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
                    "firstTimestamp": now.strftime("%Y-%m-%dT%H:%M:%SZ"),
                    "lastTimestamp": now.strftime("%Y-%m-%dT%H:%M:%SZ"),
                    "count": 1,
                }
            ),
        )
        async with translated():
            await self.client.create(event)
