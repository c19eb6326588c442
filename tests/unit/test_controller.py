"""The controller reconciles nothing until its caches are filled by one listing per kind."""

from __future__ import annotations

import asyncio
from typing import Any

from chute_operator.controller import Controller
from chute_operator.metrics import OperatorMetrics
from chute_operator.settings import Settings
from chute_operator.store import Key

CHUTE = {"apiVersion": "chutes.ai/v1alpha1", "kind": "Chute", "metadata": {"name": "a", "namespace": "ns"}}


async def test_no_reconcile_before_the_initial_listing() -> None:
    settings = Settings(
        leader_election=False, workers=2, resync_seconds=3600, monitoring_recheck_seconds=3600
    )
    controller = Controller(settings, client=None, metrics=OperatorMetrics())  # type: ignore[arg-type]
    listing_may_finish = asyncio.Event()
    listed: list[str] = []
    reconciled: list[Key] = []

    async def list_all(kind: str, namespaces: tuple[str, ...], labels: Any = None) -> list[dict[str, Any]]:
        await listing_may_finish.wait()
        listed.append(kind)
        return [CHUTE] if kind == "Chute" else []

    async def reconcile(key: Key) -> None:
        reconciled.append(key)  # (an assertion here would be caught by the controller's retries)

    controller.api.list_all = list_all  # type: ignore[method-assign]
    controller.reconciler.reconcile = reconcile  # type: ignore[method-assign]
    controller.start()
    try:
        controller.observe("Chute", None, CHUTE)  # a watch event arrives before the listing is done
        await asyncio.sleep(0.2)
        assert reconciled == []
        listing_may_finish.set()
        for _ in range(100):
            if reconciled:
                break
            await asyncio.sleep(0.01)
        assert reconciled == [("ns", "a")]
        assert set(listed) >= {"Chute", "Deployment", "Service", "Pod"}
        assert controller.store.get("Chute", ("ns", "a")) == CHUTE
    finally:
        await controller.stop()


def test_readiness_metrics_are_read_from_the_store_at_scrape_time() -> None:
    metrics = OperatorMetrics()
    controller = Controller(Settings(leader_election=False), client=None, metrics=metrics)  # type: ignore[arg-type]
    ready = {"type": "Ready", "status": "True", "reason": "Serving"}
    stuck = {"type": "Ready", "status": "False", "reason": "Unschedulable"}
    for name, condition in (("a", ready), ("b", stuck)):
        controller.observe(
            "Chute",
            None,
            {**CHUTE, "metadata": {"name": name, "namespace": "ns"}, "status": {"conditions": [condition]}},
        )
    controller.observe("Chute", None, {**CHUTE, "metadata": {"name": "new", "namespace": "ns"}})

    def sample(name: str, **labels: str) -> float | None:
        return metrics.registry.get_sample_value(name, labels)

    assert sample("chute_operator_chute_ready", chute_namespace="ns", chute="a", reason="") == 1
    assert sample("chute_operator_chute_ready", chute_namespace="ns", chute="b", reason="Unschedulable") == 0
    assert (
        sample("chute_operator_chutes", ready="True"),
        sample("chute_operator_chutes", ready="False"),
    ) == (1, 1)
    assert sample("chute_operator_chutes", ready="Unknown") == 1
    controller.observe("Chute", "DELETED", {**CHUTE, "metadata": {"name": "b", "namespace": "ns"}})
    assert (
        sample("chute_operator_chute_ready", chute_namespace="ns", chute="b", reason="Unschedulable") is None
    )
