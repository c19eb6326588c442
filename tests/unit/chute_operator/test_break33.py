"""Breaking pass 33: kopf's ephemeral memories, the work queue's two lanes, the pods listed first."""

from __future__ import annotations

import asyncio
import copy
from typing import Any

import pytest
from kopf._core.reactor import inventory

from chute_operator import kopf_memory
from chute_operator.controller import Controller
from chute_operator.gpus import builtin_catalog
from chute_operator.metrics import OperatorMetrics
from chute_operator.settings import Leadership, Reconciling, Settings, Watching
from chute_operator.workqueue import WorkQueue

CATALOG = builtin_catalog()


def _settings(child_event_delay_seconds: float = 0.5) -> Settings:
    return Settings(
        leadership=Leadership(enabled=False),
        reconciling=Reconciling(workers=16, child_event_delay_seconds=child_event_delay_seconds),
        watching=Watching(resync_seconds=3600, monitoring_recheck_seconds=3600),
    )


def _chute(name: str, version: str = "1") -> dict[str, Any]:
    return {
        "apiVersion": "chutes.ai/v1alpha1",
        "kind": "Chute",
        "metadata": {"name": name, "namespace": "ns", "uid": f"u-{name}", "resourceVersion": version},
        "spec": {},
    }


async def test_a_background_key_that_fails_is_retried_in_the_background() -> None:
    """The resync's reconciles on a loaded API server fail with 429 (Retry-After 1 s): their retries
    came back in the lane of events, in front of a wake request queued after them."""
    queue = WorkQueue(base_delay=0.01)
    queue.add("resynced", background=True)
    assert await queue.get() == "resynced"
    queue.retry("resynced", retry_after=0.01)  # what the controller does on a 429
    queue.done("resynced")
    await asyncio.sleep(0.1)  # the retry is due and queued
    queue.add("wake")
    assert await asyncio.wait_for(queue.get(), 1) == "wake"
    assert await asyncio.wait_for(queue.get(), 1) == "resynced"
    queue.close()


async def test_a_foreground_key_that_fails_is_retried_in_the_foreground() -> None:
    queue = WorkQueue(base_delay=0.01)
    queue.add("wake")
    assert await queue.get() == "wake"
    queue.retry("wake")
    queue.done("wake")
    queue.add("resynced", background=True)
    await asyncio.sleep(0.1)
    assert await asyncio.wait_for(queue.get(), 1) == "wake"
    queue.close()


async def test_a_background_timer_joined_by_an_event_fires_in_the_foreground() -> None:
    queue = WorkQueue()
    queue.add_after("a", 0.01, background=True)
    queue.add_after("a", 5)  # later: the earlier timer wins, but it now serves an event too
    queue.add("r", background=True)
    await asyncio.sleep(0.1)
    assert await asyncio.wait_for(queue.get(), 1) == "a"
    queue.close()


async def test_a_steady_stream_of_events_does_not_starve_the_background() -> None:
    """An idle Chute's only trigger is the idle check (background): while events kept the workers busy
    (more than they keep up with on a loaded API server: HPAs' status every 15 s at 500 awake Chutes),
    it was never reconciled, so never put to sleep."""
    queue = WorkQueue()
    queue.add("idle", background=True)
    handed: list[str] = []
    for i in range(200):
        queue.add(f"event-{i}")
        queue.add(f"event-{i}-b")
        key = await asyncio.wait_for(queue.get(), 1)
        handed.append(key)  # type: ignore[arg-type]
        queue.done(key)
    assert "idle" in handed
    assert handed.index("idle") < 20  # and the events still go first most of the time
    assert handed[0] == "event-0"


async def test_kopfs_listing_at_a_restart_queues_the_chutes_in_the_background() -> None:
    """At a restart kopf lists every kind too, each object an event of type None; when its listing of
    the Chutes arrived before the controller's (which lists the pods and HPAs first), every Chute was
    queued as an event, in front of a wake request: the very backlog the background lane was for."""
    controller = Controller(_settings(), client=None, metrics=OperatorMetrics(), catalog=CATALOG)  # type: ignore[arg-type]
    chutes = [_chute(f"c{i}") for i in range(50)]
    for chute in chutes:
        controller.observe("Chute", None, copy.deepcopy(chute))  # kopf's own initial listing

    async def listing(
        kind: str, namespaces: tuple[str, ...], labels: Any = None
    ) -> tuple[list[dict[str, Any]], str]:
        return (copy.deepcopy(chutes), "1") if kind == "Chute" else ([], "1")

    controller.api.listing = listing  # type: ignore[method-assign]
    await controller.relist()
    woken = copy.deepcopy(chutes[-1])
    woken["metadata"]["resourceVersion"] = "2"
    woken["metadata"]["annotations"] = {"chutes.ai/wake-requested-at": "now"}
    controller.observe("Chute", "MODIFIED", woken)
    assert await asyncio.wait_for(controller.queue.get(), 1) == ("ns", "c49")
    controller.queue.close()


async def test_kopfs_listing_of_children_at_a_restart_queues_their_chutes_in_the_background() -> None:
    controller = Controller(_settings(0.01), client=None, metrics=OperatorMetrics(), catalog=CATALOG)  # type: ignore[arg-type]
    pod = {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {
            "name": "c0-1",
            "namespace": "ns",
            "uid": "p1",
            "resourceVersion": "1",
            "labels": {"chutes.ai/chute": "c0", "app.kubernetes.io/managed-by": "chute-operator"},
        },
    }
    controller.observe("Pod", None, pod)
    await asyncio.sleep(0.1)
    controller.queue.add(("ns", "woken"))
    assert await asyncio.wait_for(controller.queue.get(), 1) == ("ns", "woken")
    controller.queue.close()


async def test_a_missed_change_relisted_by_kopf_after_the_sync_is_still_an_event() -> None:
    controller = Controller(_settings(), client=None, metrics=OperatorMetrics(), catalog=CATALOG)  # type: ignore[arg-type]
    controller._synced.set()
    controller.queue.add(("ns", "r"), background=True)
    controller.observe("Chute", None, _chute("changed-in-a-watch-gap", "7"))
    assert await asyncio.wait_for(controller.queue.get(), 1) == ("ns", "changed-in-a-watch-gap")


async def test_a_kopf_whose_recall_takes_no_ephemeral_is_left_alone(monkeypatch: pytest.MonkeyPatch) -> None:
    """kopf>=1.45,<2: a later 1.x whose ``recall`` no longer takes ``ephemeral`` got it anyway, and every
    event of every kind then failed in kopf (TypeError) while install() said all was well."""

    class Memories:
        async def recall(
            self, raw_body: Any, *, memobase: Any = None, noticed_by_listing: bool = False
        ) -> str:
            return "memory"

    monkeypatch.setattr(inventory, "ResourceMemories", Memories)
    installed = kopf_memory.install()
    assert await Memories().recall({}, memobase=None, noticed_by_listing=True) == "memory"
    assert not installed
