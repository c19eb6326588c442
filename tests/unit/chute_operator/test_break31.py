"""Breaking pass 31: the optional APIs' recheck (every served kind re-read) and kopf's guarded CRD
observer (rescan.py)."""

from __future__ import annotations

import asyncio
import dataclasses
from typing import Any

from chute_operator import rescan
from chute_operator.controller import Controller
from chute_operator.metrics import OperatorMetrics
from chute_operator.plan import make_plan
from chute_operator.pool_route import with_route_via_service
from chute_operator.store import Key
from chute_operator.zero import Action
from tests.unit.chute_operator.test_controller import CATALOG, CHUTE, SERVICE_MONITOR, _settings
from tests.unit.chute_operator.test_plan import ACTIVATOR, MANAGER, NOW, _pod, _scale_to_zero, _snapshot
from tests.unit.chute_operator.test_pool_route import EXPOSE


async def test_one_transient_404_of_discovery_does_not_make_a_served_api_go_away() -> None:
    """Breaking pass 31 (fixed): one 404 of discovery (an API server replica whose CRD discovery is not
    synced yet) is read as 'the API went away': available flips False, the kind's objects are forgotten,
    every Chute is reconciled without that child (Monitored/Exposed False, an HTTPRoute left out of the
    sleep check) until the next recheck."""
    settings = _settings(workers=2, resync_seconds=3600, monitoring_recheck_seconds=0.05)
    controller = Controller(settings, client=None, metrics=OperatorMetrics(), catalog=CATALOG)  # type: ignore[arg-type]
    reads: list[bool] = []
    reconciled: list[Key] = []

    async def listing(kind: str, namespaces: tuple[str, ...], labels: Any = None) -> tuple[list[Any], str]:
        if kind == "Chute":
            return [CHUTE], "1"
        if kind == "ServiceMonitor":
            # the same unsynced replica answers the LIST with a 404 too (kube.listing: nothing)
            return ([], "") if len(reads) == 1 else ([SERVICE_MONITOR], "6")
        return [], ""

    async def kind_served(kind: str) -> bool:
        reads.append(len(reads) != 0)  # the first read of discovery is a 404, the rest find it
        return reads[-1]

    async def reconcile(key: Key) -> None:
        reconciled.append(key)

    controller.api.listing = listing  # type: ignore[method-assign]
    controller.api.kind_served = kind_served  # type: ignore[method-assign]
    controller.reconciler.reconcile = reconcile  # type: ignore[method-assign]
    controller.reconciler.apis.available["ServiceMonitor"] = True
    flips: list[bool] = []
    controller.start()
    try:
        for _ in range(300):
            flips.append(controller.reconciler.apis.available.get("ServiceMonitor", True))
            if len(reads) >= 3:
                break
            await asyncio.sleep(0.005)
        assert len(reads) >= 3
        assert all(flips), "a served API was marked missing after one failed read"
    finally:
        await controller.stop()


def test_a_chute_does_not_sleep_while_its_routes_api_is_read_as_unserved() -> None:
    """Breaking pass 31 (fixed): a Chute whose HTTPRoute API was (transiently) read as unserved leaves
    its HTTPRoute out of the children, so _route_still_to_pool cannot see that the live route still sends
    to the pool: it sleeps, and the pool it routes to has no pod."""
    chute = _scale_to_zero(expose=EXPOSE)
    base = _snapshot(chute, pods=(_pod("a-1"),), activator=ACTIVATOR, idle={"a-1": 61.0})
    assert base.workload is not None
    desired = with_route_via_service(base.desired, base.workload)
    # observe._served dropped the HTTPRoute (apis.available["HTTPRoute"] is False)
    children = tuple(f for f in base.children if f.manifest["kind"] != "HTTPRoute")
    plan = make_plan(dataclasses.replace(base, desired=desired, children=children), NOW, MANAGER)
    assert "HTTPRoute" in plan.unserved
    assert plan.zero is None or plan.zero.action is not Action.SLEEP


async def test_a_crd_event_whose_discovery_fails_for_long_is_not_silently_dropped() -> None:
    """Breaking pass 31 (fixed): after ~15 s of failed reads the CRD event is dropped: a CRD created
    meanwhile (the ServiceMonitor CRD installed during an API server restart) is never watched by kopf
    until the CRD changes again or the operator restarts; before, kopf stopped and the pod restart
    rescanned."""
    calls: list[int] = []

    async def original(**_: Any) -> None:
        calls.append(1)
        if len(calls) <= 6:  # discovery fails for a little longer than the pauses
            raise ConnectionError("503")

    guarded = rescan.guarded(original, pauses=(0.0,) * 5)
    event = {"type": "ADDED", "object": {"spec": {"group": "monitoring.coreos.com"}}}
    raised = False
    try:
        await asyncio.wait_for(guarded(raw_event=event), timeout=5)
    except ConnectionError:
        raised = True
    assert raised or len(calls) == 7, "the scan never succeeded and nobody was told"
