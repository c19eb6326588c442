"""The activator's start against an API server that answers errors first."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator

import pytest
from aiohttp import web
from lightkube import AsyncClient, KubeConfig

from chute_activator import kube
from chute_activator.holding import Holder
from chute_activator.kube import KubeSource
from chute_activator.metrics import Metrics
from chute_activator.state import Key
from chute_shared.cluster import CHUTE_LABEL

from .fake_api import FakeApi, chute


@pytest.fixture
async def api() -> AsyncIterator[FakeApi]:
    server = FakeApi([chute("team", "llm")], failures_before_lists=2)
    await server.start()
    yield server
    await server.stop()


async def test_start_retries_listing_while_the_api_answers_errors_and_syncs_after(
    api: FakeApi, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(kube, "RELIST_SECONDS", 0.05)

    async def wake(key: Key) -> None:
        pass

    holder = Holder(wake, Metrics())
    client = AsyncClient(config=KubeConfig.from_dict(json.loads(api.kubeconfig())))
    source = KubeSource(client, holder, ("team",))
    try:
        await asyncio.wait_for(source.start(), 10)
        assert holder.synced
        assert ("team", "llm") in holder.known()
        assert api.list_calls >= 4  # two failures, then Chutes and slices
    finally:
        await source.stop()
        await client.close()


def pod_with_sidecar(namespace: str, chute_name: str, port: int, **meta: object) -> dict[str, object]:
    """A pod of the Chute whose sidecar runs and serves on 127.0.0.1:port (the stand-in's address)."""
    return {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"namespace": namespace, "name": f"{chute_name}-1", "resourceVersion": "1",
                     "labels": {CHUTE_LABEL: chute_name}, **meta},
        "spec": {
            "initContainers": [{"name": "chute-sidecar", "ports": [{"name": "http", "containerPort": port}]}],
            "containers": [{"name": "model"}],
        },
        "status": {
            "phase": "Running",
            "podIP": "127.0.0.1",
            "initContainerStatuses": [
                {"name": "chute-sidecar", "state": {"running": {}}, "ready": False, "image": "sidecar",
                 "imageID": "", "restartCount": 0}
            ],
        },
    }  # fmt: skip


async def test_a_held_request_goes_to_a_pod_as_soon_as_its_sidecar_says_ready_before_any_slice(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """No EndpointSlice lists the pod (the kubelet's readiness probe has not run yet): the activator
    asks the pod's sidecar on its serving port and forwards once it answers ``"ready": true``."""
    monkeypatch.setattr(kube, "PROBE_INTERVAL_SECONDS", 0.02)
    ready = {"value": False}
    asked: list[str] = []

    async def conn_stats(request: web.Request) -> web.Response:
        asked.append(request.path)
        return web.json_response({"in_flight": 0, "concurrency": 1, "ready": ready["value"]})

    app = web.Application()
    app.router.add_get("/_conn_stats", conn_stats)
    sidecar = web.AppRunner(app, access_log=None)
    await sidecar.setup()
    await web.TCPSite(sidecar, "127.0.0.1", 0).start()
    port = sidecar.addresses[0][1]
    api = FakeApi([chute("team", "llm")], pods=[pod_with_sidecar("team", "llm", port)])
    await api.start()
    wakes: list[Key] = []

    async def wake(key: Key) -> None:
        wakes.append(key)

    holder = Holder(wake, Metrics())
    client = AsyncClient(config=KubeConfig.from_dict(json.loads(api.kubeconfig())))
    source = KubeSource(client, holder, ("team",))
    try:
        await asyncio.wait_for(source.start(), 10)
        held = asyncio.create_task(holder.acquire(("team", "llm")))
        async with asyncio.timeout(10):
            while len(asked) < 3:  # noqa: ASYNC110 (the prober asks in the background)
                await asyncio.sleep(0.01)
        assert not held.done()  # asked, not ready: still held
        ready["value"] = True
        endpoint, _ = await asyncio.wait_for(held, 10)
        assert endpoint == f"127.0.0.1:{port}"
        assert holder.known()[("team", "llm")].source == "sidecar"
        assert wakes == [("team", "llm")]
    finally:
        await source.stop()
        await client.close()
        await api.stop()
        await sidecar.cleanup()


async def test_the_activator_learns_each_chutes_port_from_its_status_and_forgets_a_deleted_one() -> None:
    """The port a request arrives on names its Chute: the activator reads the ports from the Chutes'
    status (written by the operator only), not from anything a client sends."""
    llm = {**chute("team", "llm"), "status": {"activatorPort": 20007}}
    other = {**chute("team", "other"), "status": {"activatorPort": 20008}}
    api = FakeApi([llm, other])
    await api.start()

    async def wake(key: Key) -> None:
        pass

    holder = Holder(wake, Metrics())
    client = AsyncClient(config=KubeConfig.from_dict(json.loads(api.kubeconfig())))
    source = KubeSource(client, holder, ("team",))
    try:
        await asyncio.wait_for(source.start(), 10)
        assert holder.ports() == {20007: ("team", "llm"), 20008: ("team", "other")}
        assert await holder.resolve(20007) == ("team", "llm")
        source._event(kube.ChuteResource, "DELETED", other)
        assert holder.chute_at(20008) is None
    finally:
        await source.stop()
        await client.close()
        await api.stop()


async def test_a_restarted_activator_answers_retry_after_from_the_chutes_measured_load_time() -> None:
    """A fresh activator (no wake seen yet) takes the load time the operator wrote to the Chute's status."""
    measured = {**chute("team", "llm"), "status": {"loadSeconds": 37}}
    api = FakeApi([measured, chute("team", "new")])
    await api.start()

    async def wake(key: Key) -> None:
        pass

    holder = Holder(wake, Metrics(), default_retry_after=10)
    client = AsyncClient(config=KubeConfig.from_dict(json.loads(api.kubeconfig())))
    source = KubeSource(client, holder, ("team",))
    try:
        await asyncio.wait_for(source.start(), 10)
        assert holder.retry_after(("team", "llm")) == 37
        assert holder.retry_after(("team", "new")) == 10  # never measured: the default
    finally:
        await source.stop()
        await client.close()
        await api.stop()


async def test_the_source_keeps_of_each_object_only_what_the_activator_reads() -> None:
    """A Chute, its EndpointSlice and its pod as the fleet benchmark's API server sent them: the caches
    hold their slimmed copies (chute_activator.slim)."""
    from pathlib import Path

    from chute_activator.slim import slim_chute, slim_pod, slim_slice

    data = Path(__file__).parents[2] / "data" / "activator" / "fleet-objects.json"
    awake = json.loads(data.read_text())["awake"]
    api = FakeApi([awake["chute"]], pods=[awake["pod"]], slices=awake["slices"])
    await api.start()

    async def wake(key: Key) -> None:
        pass

    client = AsyncClient(config=KubeConfig.from_dict(json.loads(api.kubeconfig())))
    source = KubeSource(client, Holder(wake, Metrics()), ("fleet",))
    key = kube.key_of(awake["chute"])
    expected = (
        {key: slim_chute(awake["chute"])},
        {kube.key_of(s): slim_slice(s) for s in awake["slices"]},
        {kube.key_of(awake["pod"]): slim_pod(awake["pod"])},
    )
    try:
        await asyncio.wait_for(source.start(), 10)
        assert (dict(source.chutes), dict(source.slices), dict(source.pods)) == expected
        assert "managedFields" not in json.dumps([list(kind.values()) for kind in expected])
        assert source.holder.known()[key].endpoints  # the slimmed slice still lists its ready endpoint
        source._event(kube.ChuteResource, "MODIFIED", kube._kept(kube.ChuteResource, awake["chute"]))
        assert dict(source.chutes) == expected[0]  # a watch event is kept as the watch loop keeps it
    finally:
        await source.stop()
        await client.close()
        await api.stop()
