"""The few Kubernetes API calls the operator makes (lightkube, asyncio). No logic lives here."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any, cast

from lightkube import ALL_NS, ApiError, AsyncClient
from lightkube.generic_resource import create_namespaced_resource
from lightkube.resources.apps_v1 import Deployment
from lightkube.resources.autoscaling_v2 import HorizontalPodAutoscaler
from lightkube.resources.core_v1 import Event, Pod, Service
from lightkube.resources.discovery_v1 import EndpointSlice
from lightkube.resources.networking_v1 import NetworkPolicy
from lightkube.types import PatchType

from chute_operator.api import GROUP, KIND, PLURAL, VERSION

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


def error_code(error: BaseException) -> int | None:
    """HTTP status of a failed API call (an ApiError, or an HTTP error without a Status body)."""
    code = getattr(getattr(error, "status", None), "code", None) if isinstance(error, ApiError) else None
    if isinstance(code, int):
        return code
    status = getattr(getattr(error, "response", None), "status_code", None)
    return int(status) if isinstance(status, int) else None


def error_message(error: BaseException) -> str:
    if isinstance(error, ApiError):
        return getattr(error.status, "message", None) or str(error)
    return str(error) or type(error).__name__


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

    async def delete(self, kind: str, namespace: str, name: str) -> None:
        """Delete a child; one that is already gone is fine."""
        try:
            await self.client.delete(CHILD_RESOURCES[kind], name, namespace=namespace)
        except ApiError as error:
            if error_code(error) != 404:
                raise

    async def patch_status(self, namespace: str, name: str, status: dict[str, Any]) -> dict[str, Any]:
        """Replace the Chute's status (merge patch on the status subresource)."""
        result = await self.client.patch(
            ChuteResource.Status, name, {"status": status}, namespace=namespace, patch_type=PatchType.MERGE
        )
        stored: dict[str, Any] = result.to_dict()
        return stored

    async def list_all(
        self, kind: str, namespaces: tuple[str, ...], labels: dict[str, Any] | None = None
    ) -> list[dict[str, Any]]:
        """Every object of ``kind`` in ``namespaces`` (all when empty); [] where the API does not exist."""
        found: list[dict[str, Any]] = []
        try:
            for namespace in namespaces or (ALL_NS,):
                async for obj in self.client.list(
                    WATCHED_RESOURCES[kind], namespace=namespace, labels=labels
                ):
                    found.append(obj.to_dict())
        except Exception as error:
            if error_code(error) == 404:
                return []
            raise
        return found

    async def endpoint_slices(self, namespace: str, service: str) -> list[dict[str, Any]]:
        """The EndpointSlices of one Service (the activator's)."""
        labels: dict[str, Any] = {"kubernetes.io/service-name": service}
        return [
            s.to_dict() async for s in self.client.list(EndpointSlice, namespace=namespace, labels=labels)
        ]

    async def service_monitors_served(self, namespace: str) -> bool:
        """Whether the ServiceMonitor API (prometheus-operator's CRD) exists."""
        try:
            async for _ in self.client.list(ServiceMonitor, namespace=namespace, chunk_size=1):
                break
        except Exception as error:
            if error_code(error) == 404:
                return False
            raise
        return True

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
        await self.client.create(event)
