"""The activator's view of the cluster: Chutes (with the activator port each was given), their pods
and the pods' EndpointSlices (read), wake requests (write).

The only write is the wake annotation on a Chute (RBAC: ``patch`` on ``chutes``; the chart's
admission policy refuses any other change it makes); the operator, the one writer of replicas, acts
on it.

A ready endpoint comes from the Chute's EndpointSlices, or sooner from the pod itself: while requests
are held for a Chute without one, its pods whose sidecar runs are asked ``GET /_conn_stats`` on the
serving port (the one port open to every client) every :data:`PROBE_INTERVAL_SECONDS`; the first that
answers ``"ready": true`` (its model passed the sidecar's health poll) is forwarded to at once,
without waiting for the kubelet's readiness probe, the pod's Ready condition and the EndpointSlice
controller. Once a slice lists a ready endpoint, slices decide again. What is derived from the objects
is :mod:`chute_activator.derive`'s.
"""

from __future__ import annotations

import asyncio
import json
import logging
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import aiohttp
from lightkube import ALL_NS, AsyncClient
from lightkube.generic_resource import create_namespaced_resource
from lightkube.resources.core_v1 import Pod
from lightkube.resources.discovery_v1 import EndpointSlice
from lightkube.types import PatchType

from chute_activator.cache import Cache
from chute_activator.derive import (
    chute_of,
    chute_state,
    key_of,
    ready_endpoints,
    serving_address,
    slice_labels,
)
from chute_activator.holding import Holder
from chute_activator.slim import slim_chute, slim_pod, slim_slice
from chute_activator.state import Key
from chute_shared.cluster import (
    ACTIVATOR_FIELD_MANAGER,
    CHUTE_GROUP,
    CHUTE_KIND,
    CHUTE_LABEL,
    CHUTE_PLURAL,
    CHUTE_VERSION,
    WAKE_ANNOTATION,
)
from chute_shared.paths import CONN_STATS_PATH, READY

log = logging.getLogger("chute_activator")

ChuteResource = create_namespaced_resource(CHUTE_GROUP, CHUTE_VERSION, CHUTE_KIND, CHUTE_PLURAL)
RELIST_SECONDS = 2.0
"""Pause before listing a kind again after its watch ended or failed; doubled after each failure in a
row (up to :data:`RELIST_MAX_SECONDS`), back to this once a listing succeeds or the watch delivers an
event (a quiet watch that breaks now and then is not left blind for long)."""
RELIST_MAX_SECONDS = 30.0
PROBE_INTERVAL_SECONDS = 0.05
"""How often the pods of a Chute with held requests are asked whether they are ready."""
PROBE_TIMEOUT_SECONDS = 1.0
PROBE_PODS_PER_CHUTE = 4
"""At most this many pods of one Chute are asked per round (a wake brings one)."""


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
        self.chutes = Cache()
        self.slices = Cache(chute_of)
        """The Chutes' pod EndpointSlices, indexed by Chute."""
        self.pods = Cache(chute_of)
        """The Chutes' pods, indexed by Chute: the probe loop reads a waiting Chute's own pods only."""
        self.sidecar_ready: dict[Key, set[str]] = {}
        """Serving addresses whose sidecar answered ready while no slice listed a ready endpoint."""
        self._tasks: list[asyncio.Task[None]] = []
        self._session: aiohttp.ClientSession | None = None

    async def wake(self, key: Key) -> None:
        now = datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")
        patch = {"metadata": {"annotations": {WAKE_ANNOTATION: now}}}
        await self.client.patch(
            ChuteResource,
            key[1],
            patch,
            namespace=key[0],
            patch_type=PatchType.MERGE,
            field_manager=ACTIVATOR_FIELD_MANAGER,
        )
        log.info("wake requested", extra={"chute": "/".join(key)})

    def _refresh(self, key: Key) -> None:
        pieces = self.slices.of_chute(key)
        override = read_endpoint_overrides(self.test_only_endpoint_file).get("/".join(key))
        if ready_endpoints(pieces):
            self.sidecar_ready.pop(key, None)  # the slices know: they decide again
        early = self.sidecar_ready.get(key, set()) & set(self._addresses(key))
        if key in self.sidecar_ready:
            self.sidecar_ready[key] = early  # a pod gone or terminating is never forwarded to
        self.holder.update(key, chute_state(self.chutes.get(key), pieces, override, early))

    def _addresses(self, key: Key) -> list[str]:
        """Serving addresses of the Chute's pods that may answer (see :func:`serving_address`)."""
        return [address for pod in self.pods.of_chute(key) if (address := serving_address(pod))]

    async def probe_once(self) -> None:
        """Ask the pods of every Chute with held requests and no ready endpoint whether they are ready."""
        for key in self.holder.waiting():
            addresses = self._addresses(key)[:PROBE_PODS_PER_CHUTE]
            answers = await asyncio.gather(*(self._ready(address) for address in addresses))
            ready = {address for address, ok in zip(addresses, answers, strict=True) if ok}
            if ready - self.sidecar_ready.get(key, set()):
                self.sidecar_ready.setdefault(key, set()).update(ready)
                log.info(
                    "sidecar ready before its slice", extra={"chute": "/".join(key), "pods": sorted(ready)}
                )
                self._refresh(key)

    async def _ready(self, address: str) -> bool:
        assert self._session is not None  # nosec B101  # narrows the type: the session is opened in start()
        try:
            async with self._session.get(f"http://{address}{CONN_STATS_PATH}") as response:
                if response.status != 200:
                    return False
                document = await response.json(content_type=None)
        except (aiohttp.ClientError, TimeoutError, OSError, ValueError):
            return False
        return isinstance(document, dict) and document.get(READY) is True

    async def _probe(self) -> None:
        while True:
            try:
                await self.probe_once()
            except asyncio.CancelledError:
                raise
            except Exception as error:  # never stop probing for one bad answer
                log.warning("probing sidecars failed", extra={"error": str(error)})
            await asyncio.sleep(PROBE_INTERVAL_SECONDS)

    async def start(self) -> None:
        """List every kind once (retrying while the API is not ready), then watch each from its listing."""
        versions: dict[tuple[Any, str], str | None] = {}
        for namespace in self.namespaces:
            for resource in KINDS:
                while True:
                    try:
                        versions[resource, namespace] = await self._relist(resource, namespace, refresh=False)
                        break
                    except Exception as error:  # e.g. "storage is (re)initializing" right after a restart
                        log.warning(
                            "listing failed, retrying", extra={"namespace": namespace, "error": str(error)}
                        )
                        await asyncio.sleep(RELIST_SECONDS)
        for key in list(self.chutes):
            self._refresh(key)
        self.holder.mark_synced()
        self._session = aiohttp.ClientSession(
            timeout=aiohttp.ClientTimeout(total=PROBE_TIMEOUT_SECONDS), cookie_jar=aiohttp.DummyCookieJar()
        )
        for (resource, namespace), version in versions.items():
            self._tasks.append(asyncio.create_task(self._watch(resource, namespace, version)))
        self._tasks.append(asyncio.create_task(self._probe()))

    async def stop(self) -> None:
        for task in self._tasks:
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        if self._session is not None:
            await self._session.close()

    async def _relist(self, resource: Any, namespace: str, refresh: bool = True) -> str | None:
        """One LIST of the kind in ``namespace`` replaces what the cache holds of it there (objects the
        listing lacks were deleted: they are forgotten), and the Chutes it changed are refreshed. Returns
        the listing's resourceVersion, for the watch to resume from (None: unknown)."""
        listing = self.client.list(resource, namespace=namespace, labels=_labels(resource))
        fresh = {}
        async for obj in listing:
            kept = _kept(resource, obj)
            fresh[key_of(kept)] = kept
        try:
            version: str | None = listing.resourceVersion
        except Exception:  # no resourceVersion in the answer
            version = None
        cache, affected = self._cache(resource), set()
        for key in list(cache):
            if key not in fresh and namespace in (ALL_NS, key[0]):
                affected.add(self._forget(resource, key))
        for key, obj in fresh.items():
            if cache.get(key) != obj:
                affected.update(self._put(resource, key, obj))
        if refresh:
            for chute in affected:
                if resource is ChuteResource or chute in self.chutes:
                    self._refresh(chute)
        return version

    async def _watch(self, resource: Any, namespace: str, version: str | None) -> None:
        """Watch the kind from ``version``; after a watch error, list it again and resume from that
        listing (controller-runtime's way): a DELETED event missed in the gap is not missed for good."""
        listed, failures = True, 0
        while True:
            try:
                if not listed:
                    version = await self._relist(resource, namespace)
                    listed, failures = True, 0  # the API server answers: no longer backing off
                async for kind, obj in self.client.watch(
                    resource, namespace=namespace, labels=_labels(resource), resource_version=version
                ):
                    failures = 0
                    self._event(resource, kind, _kept(resource, obj))
            except asyncio.CancelledError:
                raise
            except Exception as error:  # the watch or the listing failed: list again after a pause
                failures += 1
                log.warning(
                    "watch failed, relisting",
                    extra={
                        "kind": getattr(resource, "__name__", ""),
                        "error": str(error),
                        "failures": failures,
                    },
                )
            listed = False
            await asyncio.sleep(min(RELIST_SECONDS * 2 ** min(max(failures - 1, 0), 16), RELIST_MAX_SECONDS))

    def _cache(self, resource: Any) -> Cache:
        stores = {Pod: self.pods, EndpointSlice: self.slices}
        return stores.get(resource, self.chutes)

    def _put(self, resource: Any, key: tuple[str, str], obj: dict[str, Any]) -> set[Key]:
        """Store the object; the Chutes it belonged to before and belongs to now."""
        old = self._cache(resource).put(key, obj)
        return {_chute_key(resource, key, o) for o in (old, obj) if o is not None}

    def _forget(self, resource: Any, key: tuple[str, str]) -> Key:
        """Drop the object; the Chute it belonged to."""
        return _chute_key(resource, key, self._cache(resource).pop(key) or {})

    def _event(self, resource: Any, kind: str, obj: dict[str, Any]) -> None:
        key = key_of(obj)
        if kind == "DELETED":
            self._forget(resource, key)
        else:
            self._put(resource, key, obj)
        if resource is Pod:
            chute = (key[0], chute_of(obj))
            if chute in self.sidecar_ready:
                self._refresh(chute)  # an early endpoint whose pod went away is dropped
        elif resource is EndpointSlice:
            self._refresh((key[0], chute_of(obj)))
        else:
            self._refresh(key)


KINDS = (ChuteResource, EndpointSlice, Pod)
"""Every kind the activator caches (Chutes first: a listing at start refreshes them last)."""


def _labels(resource: Any) -> dict[str, Any] | None:
    """The label selector the kind is listed and watched with."""
    if resource is EndpointSlice:
        return slice_labels()
    if resource is Pod:
        return {CHUTE_LABEL: None}
    return None


def _chute_key(resource: Any, key: tuple[str, str], obj: dict[str, Any]) -> Key:
    """The Chute an object of the kind belongs to: itself, or its label."""
    if resource is ChuteResource:
        return key
    return (key[0], chute_of(obj))


_SLIM: dict[Any, Callable[[dict[str, Any]], dict[str, Any]]] = {Pod: slim_pod, EndpointSlice: slim_slice}
"""How each cached kind is slimmed (:mod:`chute_activator.slim`); a Chute otherwise."""


def _kept(resource: Any, obj: Any) -> dict[str, Any]:
    """What the activator keeps of a listed or watched object."""
    return _SLIM.get(resource, slim_chute)(obj if isinstance(obj, dict) else obj.to_dict())
