"""``chute-operator explain --plan NAMESPACE/NAME --cluster``: what the operator would do to a live
Chute now, and the status it expects; nothing is written.

The Chute and its children are read from the cluster (reads only: GET, LIST), observed as the
operator's reconcile observes them (``observe.py``) and planned by the same pure function
(``plan.py``). Rendering uses this environment's ``CHUTE_OPERATOR_*`` settings (sidecar image, DNS
and Prometheus selectors...): they must match the operator's, or every child looks drifted. The
drain key is read from its Secret (``get`` only; without it the Deployment may look drifted). The
idle readings are the operator's own (its metrics API): unknown here, so no sleep is planned.
"""

from __future__ import annotations

import asyncio
import sys
from dataclasses import replace
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

from chute_operator.gpu_profile_pick import ProfilePick
from chute_operator.plan import Plan, Snapshot, make_plan
from chute_operator.report import (
    expected_outcome,
    observation,
    owned_deployment,
    status_events,
    warnings,
)
from chute_operator.settings import Settings
from chute_operator.status import compute_status, status_changed
from chute_operator.workload import RenderOptions

if TYPE_CHECKING:
    from chute_operator.kube import KubeApi
from chute_shared.cluster import CHUTE_LABEL, MANAGED_BY

LABEL = {"create": "create", "update": "update", "keep": "unchanged"}


def format_plan(snapshot: Snapshot, plan: Plan, status: dict[str, Any]) -> list[str]:
    """The plan as text: each child's fate, the writes after them, the Events and the status."""
    namespace, name = snapshot.key
    generation = snapshot.chute["metadata"].get("generation")
    lines = [f"Plan for Chute {namespace}/{name} (generation {generation}):"]
    if snapshot.invalid:
        lines.append(f"  invalid spec: {snapshot.invalid}")
    for step in plan.steps:
        if step.action == "in the way":
            fate = "in the way: exists and is not owned by this Chute, left untouched"
        elif step.action == "held":
            fate = "held: not applied until its NetworkPolicy is in place"
        elif step.action == "look up failed":
            fate = f"could not be read: {step.found.error}"
        elif step.action == "waits":
            fate = "waits: not applied until its weights cache is ready (it keeps its pod template)"
        else:
            fate = LABEL[step.action] + (" (its replicas handed over first)" if step.handover else "")
        lines.append(f"  {step.label}: {fate}")
    lines += [f"  {kind}: left out (the {kind} API is not served)" for kind in plan.unserved]
    for manifest in plan.weights_join:
        what = "create" if "spec" in manifest else "add this Chute's owner reference"
        lines.append(f"  {manifest['kind']} {manifest['metadata']['name']}: {what} (weights cache)")
    lines += [
        f"  {kind} {name}: remove this Chute's owner reference (weights cache no longer used; deleted "
        "with its last owner)"
        for kind, name in plan.weights_leave
    ]
    lines += [f"  {prune.kind} {prune.name}: delete (no longer in the spec)" for prune in plan.prune]
    after = " (once applying succeeds)"
    if plan.zero is not None:
        lines.append(f"  Deployment {name}: {plan.zero.action.value}{after}: {plan.zero.event.message}")
    if plan.slice_apply is not None:
        lines.append(f"  EndpointSlice {plan.slice_apply['metadata']['name']}: apply{after} (the activator)")
    if plan.slice_delete is not None:
        lines.append(f"  EndpointSlice {plan.slice_delete[1]}: delete{after} (a replica is ready)")
    if plan.empty and not plan.conflicts:
        lines.append("  nothing to write to the children")
    events = [*plan.events, *warnings(snapshot.chute, expected_outcome(snapshot, plan))]
    previous = snapshot.chute.get("status") or {}
    changed = status_changed(previous, status)
    events += status_events(previous, status) if changed else []
    lines += [f"  Event {e.type} {e.reason}: {e.message}" for e in events]
    lines.append(f"Status it expects ({'to be written' if changed else 'unchanged'}):")
    for condition in status["conditions"]:
        message = f": {condition['message']}" if condition["message"] else ""
        lines.append(f"  {condition['type']} {condition['status']} ({condition['reason']}){message}")
    return lines


def render_options(settings: Settings, catalog: str | None, kubeconfig: str | None = None) -> RenderOptions:
    """What the operator renders with, from this environment (as the controller builds it): its GPU
    profile named, or picked from the nodes of the cluster as the operator picks it (auto)."""
    from chute_operator.gpu_profile_setup import choose_profile
    from chute_operator.gpu_profiles import load_profiles
    from chute_operator.gpus import load_catalog

    path = catalog or settings.render.gpu_catalog
    gpus = load_catalog(path)

    async def pick() -> ProfilePick:
        from lightkube import AsyncClient, KubeConfig

        config = KubeConfig.from_file(kubeconfig) if kubeconfig else KubeConfig.from_env()
        client = AsyncClient(config=config, field_manager="chute-operator-explain")
        try:
            return await choose_profile(
                client, settings.render.gpu_profile, load_profiles(path), gpus.values()
            )
        finally:
            await client.close()

    return settings.render_options(gpus, gpu_profile=asyncio.run(pick()))


async def observe_live(
    kubeconfig: str | None, namespace: str, name: str, settings: Settings, options: RenderOptions
) -> Snapshot | None:
    """The live Chute as the operator would observe it (None: no such Chute). Reads only."""
    from lightkube import AsyncClient, KubeConfig

    from chute_operator.discover import learn
    from chute_operator.kube import CHILD_KINDS, KubeApi
    from chute_operator.observe import Observer, no_readings
    from chute_operator.reconcile import ApiProbe
    from chute_operator.render import DesiredManifests
    from chute_operator.sidecars import SidecarUpdates
    from chute_operator.store import Store
    from chute_operator.zero import ABSENT, ActivatorReading, activator_from_slices

    config = KubeConfig.from_file(kubeconfig) if kubeconfig else KubeConfig.from_env()
    api = KubeApi(
        AsyncClient(config=config), settings.reconciling.field_manager, "chute-operator-explain", "explain"
    )
    try:
        server = await learn(api, namespace)  # as the operator learns it at start (a dry run writes nothing)
        options = replace(options, drain_key=await drain_key(api, settings), server=server)
        chute = await api.get("Chute", namespace, name)
        if chute is None:
            return None
        store = Store()
        store.put("Chute", chute)
        selector = {"app.kubernetes.io/managed-by": MANAGED_BY, CHUTE_LABEL: name}
        shared = {"app.kubernetes.io/managed-by": MANAGED_BY}
        for kind in (*CHILD_KINDS, "Pod"):
            # weights caches are shared (no Chute label), and so are their download pods
            wide = kind in ("PersistentVolumeClaim", "Job", "Pod")
            listed, _ = await api.listing(kind, (namespace,), shared if wide else selector)
            for obj in listed:
                store.put(kind, obj)
        activator: ActivatorReading = ABSENT
        if settings.scale_to_zero.activator_service:
            where, _, service = settings.scale_to_zero.activator_service.partition("/")
            activator = activator_from_slices(await api.endpoint_slices(where, service))
        apis = ApiProbe(api)
        observer = Observer(
            api,
            store,
            options,
            DesiredManifests(),
            apis.served,
            lambda: activator,
            no_readings,
            sidecars=SidecarUpdates(settings.sidecar_policy()),
        )
        return await observer.observe(chute)
    finally:
        await api.close()


async def drain_key(api: KubeApi, settings: Settings) -> bytes | None:
    """The operator's drain key, read only; None (and a warning) when it cannot be read."""
    from chute_operator.drainkey import DrainKeyError, read_drain_key
    from chute_operator.kube import ApiFailure

    namespace, name = settings.drain_key_secret()
    try:
        key = await read_drain_key(api, namespace, name)
    except (ApiFailure, DrainKeyError) as error:
        reason = str(error)
    else:
        if key is not None:
            return key
        reason = "no such Secret"
    print(
        f"warning: the drain key (Secret {namespace}/{name}) cannot be read: {reason}; the Deployment is "
        "rendered without its drain token, so it may show as updated",
        file=sys.stderr,
    )
    return None


def plan_command(target: str, kubeconfig: str | None, catalog: str | None = None) -> int:
    """Print the plan for the live Chute ``NAMESPACE/NAME``; exit 1 when it cannot be read."""
    from chute_operator.settled import SettledTemplates

    namespace, slash, name = target.partition("/")
    if not slash or not namespace or not name:
        print(f"error: --plan takes NAMESPACE/NAME, not {target!r}", file=sys.stderr)
        return 1
    try:
        settings = Settings.from_env()
        path = str(Path(kubeconfig).expanduser()) if kubeconfig else None
        options = render_options(settings, catalog, path)
        snapshot = asyncio.run(observe_live(path, namespace, name, settings, options))
    except Exception as error:  # configuration, HTTP and API errors of many kinds
        print(f"error: cannot read Chute {target} from the cluster: {error}", file=sys.stderr)
        return 1
    if snapshot is None:
        print(f"error: no Chute {target} in the cluster", file=sys.stderr)
        return 1
    now = datetime.now(UTC)
    plan = make_plan(snapshot, now, settings.reconciling.field_manager)
    outcome = expected_outcome(snapshot, plan)
    deployment = owned_deployment(snapshot, outcome)
    settled = deployment is not None and SettledTemplates().settled(deployment)
    status = compute_status(observation(snapshot, plan, outcome, settled), now)
    print("\n".join(format_plan(snapshot, plan, status)))
    return 0
