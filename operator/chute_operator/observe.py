"""Observe one Chute: everything a reconcile decides from, read once into a :class:`Snapshot`.

The store, and the API server for what the store cannot show: a desired child the store lacks (it
sees only objects labelled as the operator's, so one made by hand is in the way, not missing), and
whether the APIs of the optional children (ServiceMonitor, the kinds of ``spec.expose``) are served.
Writes nothing but what it reads into the store.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime
from typing import Any

from chute_operator.activator_ports import ActivatorPorts
from chute_operator.gpus import NoEligibleGpu
from chute_operator.kube import OPTIONAL_KINDS, KubeApi
from chute_operator.plan import PRUNABLE, Found, Manifest, Snapshot, owned_by
from chute_operator.pool_route import route_via_service, with_route_via_service
from chute_operator.render import DesiredManifests, render_weights
from chute_operator.rollout import observe as observe_rollout
from chute_operator.sidecars import SidecarPolicy, SidecarUpdates
from chute_operator.store import Store, key_of
from chute_operator.validation import InvalidChute, parse_chute
from chute_operator.weights import (
    WEIGHTS_KINDS,
    WEIGHTS_PREFIX,
    WeightsCache,
    WeightsView,
    is_cache_object,
    is_owner,
    job_pods,
    progress_of,
)
from chute_operator.workload import RenderOptions, Workload, resolve
from chute_operator.zero import (
    ACTIVATOR_SLICE_SUFFIX,
    Action,
    ActivatorReading,
    Reading,
    decide,
)
from chute_shared.weights import DOWNLOAD_CONTAINER, WEIGHTS_LABEL

IdleReadings = Callable[[str, str], float | None]
"""Seconds a pod (namespace, name) has served nothing, from the metrics API's readings; None: unknown."""


ConfirmIdle = Callable[[str, str], Awaitable[float | None]]
"""Read a pod's (namespace, name) sidecar now: its own ``idle_secs``; None: busy or not read."""


def no_readings(namespace: str, pod: str) -> float | None:
    return None


async def no_confirmation(namespace: str, pod: str) -> float | None:
    return None


class Observer:
    """Reads what one reconcile needs to know of a Chute."""

    def __init__(
        self,
        api: KubeApi,
        store: Store,
        options: RenderOptions,
        desired: DesiredManifests,
        served: Callable[[str], Awaitable[bool]],
        activator: Callable[[], ActivatorReading],
        idle_seconds: IdleReadings,
        confirm_idle: ConfirmIdle = no_confirmation,
        ports: ActivatorPorts | None = None,
        sidecars: SidecarUpdates | None = None,
    ) -> None:
        """``ports``: the activator's port per Chute (None: no activator configured). ``sidecars``:
        the sidecar updates under way (None: running Chutes keep their sidecar, ``Manual``)."""
        self.api, self.store, self.options, self.desired = api, store, options, desired
        self.ports = ports
        self.sidecars = sidecars or SidecarUpdates(SidecarPolicy(options.sidecar_image))
        self.served = served
        """Whether an optional kind's API is served (kube.OPTIONAL_KINDS)."""
        self.activator = activator
        self.idle_seconds = idle_seconds
        self.confirm_idle = confirm_idle

    async def observe(self, chute: Manifest) -> Snapshot:
        key, uid = key_of(chute), chute["metadata"].get("uid")
        live = self.store.get("Deployment", key)
        pods = tuple(self.store.children("Pod", key))
        owned = live if live and owned_by(live, uid) else None
        rollout = observe_rollout(owned, list(pods))
        sidecar = self.sidecars.choose(key, chute, owned, pods)
        workload: Workload | None = None
        invalid: str | None = None
        try:
            workload = resolve(parse_chute(chute), self.options, rollout, sidecar.image)
        except (InvalidChute, NoEligibleGpu) as error:
            invalid = "; ".join(str(error).splitlines())
        desired = tuple(self.desired.of(key, workload)) if workload is not None else ()
        idle = {}
        if workload is not None and workload.scale_to_zero:
            names = [(pod.get("metadata") or {}).get("name", "") for pod in pods]
            idle = {name: self.idle_seconds(key[0], name) for name in names}
        deployment, activator = self.store.get("Deployment", key), self.activator()
        port = self._port(chute, workload)
        looks_idle = decide(
            workload, chute, deployment, pods, lambda _, pod: idle.get(pod), activator, port is not None
        )
        if workload is not None and route_via_service(workload, deployment, pods, looks_idle):
            desired = with_route_via_service(desired, workload)
        served = await self._served(desired)
        if workload is not None and _pool_unserved(desired, served):
            served = with_route_via_service(served, workload)  # no pool to send to: its Service
        children: list[Found] = []
        for manifest in served:
            children.append(await self._look_up(manifest, uid, held=_held(manifest, children)))
        confirmed: dict[str, Reading] = {}
        if looks_idle is Action.SLEEP:
            confirmed = await self._confirm(key[0], list(idle))
        return Snapshot(
            key=key,
            chute=chute,
            workload=workload,
            invalid=invalid,
            rollout=rollout,
            sidecar=sidecar,
            desired=desired,
            children=tuple(children),
            deployment=deployment,
            pods=pods,
            prunable={kind: tuple(self.store.children(kind, key)) for kind in PRUNABLE},
            activator_slice=self.store.get("EndpointSlice", (key[0], key[1] + ACTIVATOR_SLICE_SUFFIX)),
            activator=activator,
            activator_port=port,
            idle=idle,
            confirmed=confirmed,
            weights=await self._weights(workload.weights) if workload and workload.weights else None,
            weights_owned=self._weights_owned(key[0], uid),
        )

    async def _weights(self, cache: WeightsCache) -> WeightsView:
        """The cache's objects (from the store, else a GET until they exist), its download pods, and
        the running one's last progress line (a read of its log, only while it runs)."""
        desired = tuple(render_weights(cache))
        live: list[Manifest | None] = []
        in_the_way: list[str] = []
        for manifest in desired:
            kind, key = manifest["kind"], key_of(manifest)
            found = self.store.get(kind, key) or await self.api.get(kind, *key)
            if found is not None and not is_cache_object(found, cache.key):
                in_the_way.append(f"{kind} {key[1]}")
                found = None
            elif found is not None:
                self.store.put(kind, found)
            live.append(found)
        pods = tuple(
            pod
            for key in self.store.keys("Pod")
            if key[0] == cache.namespace
            and (pod := self.store.get("Pod", key)) is not None
            and ((pod.get("metadata") or {}).get("labels") or {}).get(WEIGHTS_LABEL) == cache.key
        )
        view = WeightsView(cache, desired, tuple(live), tuple(in_the_way), pods)
        owned = job_pods(view.live_of("Job"), pods)
        running = [p for p in owned if (p.get("status") or {}).get("phase") == "Running"]
        if running and view.state().working:
            name = running[0]["metadata"]["name"]
            try:
                line = await self.api.log_tail(cache.namespace, name, DOWNLOAD_CONTAINER)
            except Exception:  # no progress to show: the status says so, nothing else depends on it
                line = ""
            view = WeightsView(cache, desired, tuple(live), tuple(in_the_way), pods, progress_of(line))
        return view

    def _weights_owned(self, namespace: str, uid: str | None) -> tuple[Manifest, ...]:
        """The weights caches' objects of the namespace this Chute owns a share of (found by their PVCs:
        a cache's three objects share its name)."""
        if not uid:
            return ()
        names = [
            key[1]
            for key in self.store.keys("PersistentVolumeClaim")
            if key[0] == namespace and key[1].startswith(WEIGHTS_PREFIX)
        ]
        owned = []
        for name in names:
            for kind in WEIGHTS_KINDS:
                found = self.store.get(kind, (namespace, name))
                if found is not None and is_cache_object(found) and is_owner(found, uid):
                    owned.append(found)
        return tuple(owned)

    def _port(self, chute: Manifest, workload: Workload | None) -> int | None:
        """The Chute's activator port while it may be at zero (an invalid spec keeps the one it had)."""
        if self.ports is None:
            return None
        if workload is None:
            return self.ports.held(key_of(chute))
        if not workload.scale_to_zero:
            self.ports.release(key_of(chute))
            return None
        return self.ports.port_for(chute)

    async def _confirm(self, namespace: str, names: list[str]) -> dict[str, Reading]:
        """Read every pod's sidecar now: the metrics API's readings say the Chute may sleep, but a
        request that began after them is invisible there."""
        began = datetime.now(UTC)
        read = await asyncio.gather(*(self.confirm_idle(namespace, name) for name in names))
        return {name: Reading(idle, began) for name, idle in zip(names, read, strict=True)}

    async def _served(self, desired: tuple[Manifest, ...]) -> tuple[Manifest, ...]:
        """Without the optional children whose API does not exist (the Monitored and Exposed
        conditions say so)."""
        missing = {
            m["kind"] for m in desired if m["kind"] in OPTIONAL_KINDS and not await self.served(m["kind"])
        }
        return tuple(m for m in desired if m["kind"] not in missing)

    async def _look_up(self, manifest: dict[str, Any], uid: str | None, held: bool = False) -> Found:
        """The child of the manifest's kind and name: from the store if this Chute owns it there, else
        from the API server (a read, only until the child exists, and not for a child that will be
        held back), stored if it is this Chute's."""
        kind, key = manifest["kind"], key_of(manifest)
        known = self.store.get(kind, key)
        if known is not None and owned_by(known, uid):
            return Found(manifest, known)
        if held:
            return Found(manifest)
        try:
            live = await self.api.get(kind, *key)
        except Exception as error:  # reported by act as a failed apply of this child would be
            return Found(manifest, error=error)
        if live is None:
            return Found(manifest)
        if not owned_by(live, uid):
            return Found(manifest, in_the_way=True)
        self.store.put(kind, live)
        return Found(manifest, live)


def _pool_unserved(desired: tuple[Manifest, ...], served: tuple[Manifest, ...]) -> bool:
    """Whether the Chute asks for an InferencePool whose API the cluster does not serve: its HTTPRoute
    then sends to its Service, not to a pool that cannot exist."""
    return any(m["kind"] == "InferencePool" for m in desired) and not any(
        m["kind"] == "InferencePool" for m in served
    )


def _held(manifest: Manifest, found: list[Found]) -> bool:
    """A Deployment whose NetworkPolicy is in the way or could not be read: it will not be applied
    (plan.holds), so it is not looked up."""
    return manifest["kind"] == "Deployment" and any(
        f.manifest["kind"] == "NetworkPolicy" and (f.in_the_way or f.error is not None) for f in found
    )
