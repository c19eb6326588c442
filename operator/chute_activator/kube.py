"""The activator's view of the cluster: Chutes and their pods' EndpointSlices (read), wake requests (write).

The only write is the wake annotation on a Chute (RBAC: ``patch`` on ``chutes``); the operator,
the one writer of replicas, acts on it.
"""

from __future__ import annotations

import asyncio
import json
import logging
from collections.abc import Iterable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from lightkube import ALL_NS, AsyncClient
from lightkube.generic_resource import create_namespaced_resource
from lightkube.resources.discovery_v1 import EndpointSlice
from lightkube.types import PatchType

from chute_activator.holding import Holder
from chute_activator.state import ChuteState, Key

log = logging.getLogger("chute_activator")

ChuteResource = create_namespaced_resource("chutes.ai", "v1alpha1", "Chute", "chutes")
CHUTE_LABEL = "chutes.ai/chute"
WAKE_ANNOTATION = "chutes.ai/wake-requested-at"
SERVING_PORT = "http"
CONTROLLER_SLICES = "endpointslice.kubernetes.io/managed-by=endpointslice-controller.k8s.io"
"""Only the slices Kubernetes makes from the pods: never the one pointing at the activator itself."""
RELIST_SECONDS = 2.0


def ready_endpoints(slices: Iterable[dict[str, Any]]) -> tuple[str, ...]:
    """``host:port`` of every ready, not terminating endpoint of the serving port."""
    found: list[str] = []
    for piece in slices:
        port = next((p.get("port") for p in piece.get("ports") or [] if p.get("name") == SERVING_PORT), None)
        if not port:
            continue
        for endpoint in piece.get("endpoints") or []:
            conditions = endpoint.get("conditions") or {}
            if conditions.get("ready") is False or conditions.get("terminating"):
                continue
            for address in endpoint.get("addresses") or []:
                found.append(f"[{address}]:{port}" if ":" in address else f"{address}:{port}")
    return tuple(sorted(set(found)))


CANNOT_WAKE_REASONS = frozenset(
    {"Unschedulable", "ImagePullBackOff", "CrashLoopBackOff", "InvalidSpec", "ApplyFailed", "ChildConflict"}
)
"""Degraded reasons that keep a woken Chute from serving until a person acts. Others (a readiness
probe failing while the model finishes loading, an OOM kill it restarts from) may pass by themselves:
held requests keep waiting for them, within their bounded wait."""


def cannot_wake(chute: dict[str, Any]) -> str | None:
    """The operator's Degraded condition, when its reason keeps the Chute from serving."""
    for condition in (chute.get("status") or {}).get("conditions") or []:
        if (
            condition.get("type") == "Degraded"
            and condition.get("status") == "True"
            and condition.get("reason") in CANNOT_WAKE_REASONS
        ):
            reason, message = condition.get("reason") or "Degraded", condition.get("message") or ""
            return f"{reason}: {message}" if message else reason
    return None


def read_endpoint_overrides(path: str | None) -> dict[str, str]:
    """TEST ONLY: ``{"namespace/chute": "127.0.0.1:port"}``: while the Chute has a ready endpoint,
    forward to this loopback address instead (its pods run on simulated nodes). Loopback only."""
    if not path:
        return {}
    try:
        document = json.loads(Path(path).read_text())
    except (OSError, ValueError) as error:
        log.warning("test-only endpoint file unreadable", extra={"path": path, "error": str(error)})
        return {}
    if not isinstance(document, dict):
        return {}
    return {str(k): str(v) for k, v in document.items() if str(v).startswith("127.")}


def chute_state(
    chute: dict[str, Any] | None, slices: Iterable[dict[str, Any]], override: str | None = None
) -> ChuteState | None:
    """What the activator needs of one Chute; None when the Chute is gone."""
    if chute is None or (chute.get("metadata") or {}).get("deletionTimestamp"):
        return None
    endpoints = ready_endpoints(slices)
    if endpoints and override:
        endpoints = (override,)
    return ChuteState(
        endpoints=endpoints,
        cannot_wake=None if endpoints else cannot_wake(chute),
        source="EndpointSlice" if endpoints else "",
    )


def _key(obj: dict[str, Any], name: str | None = None) -> Key:
    meta = obj.get("metadata") or {}
    return (meta.get("namespace", ""), name or meta.get("name", ""))


class KubeSource:
    """Keeps a :class:`Holder` up to date from the API and asks the operator to wake Chutes."""

    def __init__(
        self,
        client: AsyncClient,
        holder: Holder,
        namespaces: tuple[str, ...] = (),
        test_only_endpoint_file: str | None = None,
    ) -> None:
        self.client, self.holder = client, holder
        self.test_only_endpoint_file = test_only_endpoint_file
        self.namespaces = namespaces or (ALL_NS,)
        self.chutes: dict[Key, dict[str, Any]] = {}
        self.slices: dict[tuple[str, str], dict[str, Any]] = {}
        self._tasks: list[asyncio.Task[None]] = []

    async def wake(self, key: Key) -> None:
        now = datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")
        patch = {"metadata": {"annotations": {WAKE_ANNOTATION: now}}}
        await self.client.patch(ChuteResource, key[1], patch, namespace=key[0], patch_type=PatchType.MERGE)
        log.info("wake requested", extra={"chute": "/".join(key)})

    def _refresh(self, key: Key) -> None:
        pieces = [s for (ns, _), s in self.slices.items() if ns == key[0] and _chute_of(s) == key[1]]
        override = read_endpoint_overrides(self.test_only_endpoint_file).get("/".join(key))
        self.holder.update(key, chute_state(self.chutes.get(key), pieces, override))

    async def start(self) -> None:
        """List every Chute and slice once (retrying while the API is not ready), then watch."""
        for namespace in self.namespaces:
            while True:
                try:
                    await self._list(namespace)
                    break
                except Exception as error:  # e.g. "storage is (re)initializing" right after a restart
                    log.warning(
                        "listing failed, retrying", extra={"namespace": namespace, "error": str(error)}
                    )
                    await asyncio.sleep(RELIST_SECONDS)
        self.holder.mark_synced()
        for namespace in self.namespaces:
            self._tasks.append(asyncio.create_task(self._watch(ChuteResource, namespace)))
            self._tasks.append(asyncio.create_task(self._watch(EndpointSlice, namespace)))

    async def stop(self) -> None:
        for task in self._tasks:
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)

    async def _list(self, namespace: str) -> None:
        async for chute in self.client.list(ChuteResource, namespace=namespace):
            self.chutes[_key(_dict(chute))] = _dict(chute)
        async for piece in self.client.list(EndpointSlice, namespace=namespace, labels=_slice_labels()):
            self.slices[_key(_dict(piece))] = _dict(piece)
        for key in list(self.chutes):
            self._refresh(key)

    async def _watch(self, resource: Any, namespace: str) -> None:
        labels = _slice_labels() if resource is EndpointSlice else None
        while True:
            try:
                async for kind, obj in self.client.watch(resource, namespace=namespace, labels=labels):
                    self._event(resource, kind, _dict(obj))
            except asyncio.CancelledError:
                raise
            except Exception as error:  # the watch ends or fails: start it again after a pause
                log.warning(
                    "watch failed", extra={"kind": getattr(resource, "__name__", ""), "error": str(error)}
                )
            await asyncio.sleep(RELIST_SECONDS)

    def _event(self, resource: Any, kind: str, obj: dict[str, Any]) -> None:
        if resource is EndpointSlice:
            key = _key(obj)
            if kind == "DELETED":
                self.slices.pop(key, None)
            else:
                self.slices[key] = obj
            self._refresh((key[0], _chute_of(obj)))
            return
        key = _key(obj)
        if kind == "DELETED":
            self.chutes.pop(key, None)
        else:
            self.chutes[key] = obj
        self._refresh(key)


def _slice_labels() -> dict[str, Any]:
    name, value = CONTROLLER_SLICES.split("=")
    return {name: value, CHUTE_LABEL: None}  # None: the label exists


def _chute_of(piece: dict[str, Any]) -> str:
    return ((piece.get("metadata") or {}).get("labels") or {}).get(CHUTE_LABEL, "")


def _dict(obj: Any) -> dict[str, Any]:
    if isinstance(obj, dict):
        return obj
    result: dict[str, Any] = obj.to_dict()
    return result
