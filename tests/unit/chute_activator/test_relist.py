"""After a watch error the activator lists the kind again: what was deleted meanwhile is forgotten."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass

import pytest
from lightkube import AsyncClient, KubeConfig

from chute_activator import kube
from chute_activator.holding import Holder, Rejected
from chute_activator.kube import KubeSource
from chute_activator.metrics import Metrics
from chute_activator.state import Key

from .fake_api import FakeApi, chute
from .test_kube_source import pod_with_sidecar

KEY = ("team", "llm")


@dataclass
class Running:
    api: FakeApi
    holder: Holder
    source: KubeSource


@pytest.fixture
async def running(monkeypatch: pytest.MonkeyPatch) -> AsyncIterator[Running]:
    monkeypatch.setattr(kube, "RELIST_SECONDS", 0.05)
    monkeypatch.setattr(kube, "PROBE_INTERVAL_SECONDS", 3600)  # these tests ask no sidecar
    api = FakeApi([chute(*KEY)], pods=[pod_with_sidecar(*KEY, 1)])
    await api.start()

    async def wake(key: Key) -> None:
        pass

    holder = Holder(wake, Metrics())
    client = AsyncClient(config=KubeConfig.from_dict(json.loads(api.kubeconfig())))
    source = KubeSource(client, holder, ("team",))
    await asyncio.wait_for(source.start(), 10)
    try:
        await _until(lambda: len(api.watch_versions) == len(kube.KINDS))  # every watch open
        yield Running(api, holder, source)
    finally:
        await source.stop()
        await client.close()
        await api.stop()


async def _until(condition: Callable[[], bool], seconds: float = 5.0) -> None:
    async with asyncio.timeout(seconds):
        while not condition():  # noqa: ASYNC110 (the source works in the background)
            await asyncio.sleep(0.01)


async def test_a_chute_deleted_while_its_watch_was_broken_answers_404_after_the_relist(
    running: Running,
) -> None:
    held = asyncio.create_task(running.holder.acquire(KEY))
    await _until(lambda: running.holder.waiting() == [KEY])
    running.api.chutes.clear()  # deleted: the broken watch never says so
    running.api.cut_watches()
    with pytest.raises(Rejected) as answered:
        await asyncio.wait_for(held, 5)  # not the 300 s wait
    assert answered.value.status == 404
    with pytest.raises(Rejected) as again:
        await asyncio.wait_for(running.holder.acquire(KEY), 0.5)
    assert again.value.status == 404


async def test_a_pod_deleted_while_its_watch_was_broken_is_no_longer_a_candidate(running: Running) -> None:
    address = "127.0.0.1:1"
    assert running.source._addresses(KEY) == [address]
    running.source.sidecar_ready[KEY] = {address}  # its sidecar had said ready
    running.source._refresh(KEY)
    assert running.holder.known()[KEY].endpoints == (address,)
    running.api.pods.clear()
    running.api.cut_watches()
    await _until(lambda: not running.source._addresses(KEY))
    assert running.holder.known()[KEY].endpoints == ()


async def test_the_watch_resumes_from_the_relists_resource_version(running: Running) -> None:
    kinds = len(kube.KINDS)
    assert running.api.watch_versions == ["10"] * kinds  # from the start's listing, no ADDED replayed
    running.api.version = 12
    running.api.cut_watches()
    await _until(lambda: len(running.api.watch_versions) == 2 * kinds)
    assert running.api.watch_versions[kinds:] == ["12"] * kinds


async def test_a_watch_and_relist_that_keep_failing_back_off(monkeypatch: pytest.MonkeyPatch) -> None:
    """An API server that refuses every LIST and watch was asked again every RELIST_SECONDS, without
    end and without backing off (every kind per namespace, per activator replica)."""
    monkeypatch.setattr(kube, "RELIST_SECONDS", 0.01)
    monkeypatch.setattr(kube, "RELIST_MAX_SECONDS", 0.2, raising=False)
    calls: list[str] = []

    class Refusing:
        def list(self, *_: object, **__: object) -> AsyncIterator[object]:
            calls.append("list")
            raise RuntimeError("the server is currently unable to handle the request")

        def watch(self, *_: object, **__: object) -> AsyncIterator[object]:
            calls.append("watch")
            raise RuntimeError("the server is currently unable to handle the request")

    async def wake(key: Key) -> None:
        pass

    source = KubeSource(Refusing(), Holder(wake, Metrics()), ("team",))  # type: ignore[arg-type]
    watching = asyncio.create_task(source._watch(kube.Pod, "team", "1"))
    await asyncio.sleep(1.0)
    watching.cancel()
    with pytest.raises(asyncio.CancelledError):
        await watching
    assert 4 <= len(calls) <= 16, calls  # 0.01, 0.02, 0.04 ... then every 0.2 s: not every 0.01 s
