"""The drain of the model container's preStop hook: on its own port, only with the pod's token,
and over once the model container is back after a restart."""

from __future__ import annotations

import asyncio

from .conftest import Running, StartSidecar, Stub, eventually

TOKEN = "drain-token-of-this-pod"
HEADER = "X-Chute-Drain-Token"


async def _get(running: Running, url: str, **headers: str) -> int:
    async with running.session.get(url, headers=headers) as response:
        await response.read()
        return response.status


async def test_probes_and_drain_are_not_on_the_metrics_port(sidecar: Running) -> None:
    for path in ("/livez", "/startupz", "/readyz", "/modelz", "/drainz"):
        assert await _get(sidecar, sidecar.metrics(path)) == 404, path
    assert await _get(sidecar, sidecar.metrics("/metrics")) == 200
    assert await _get(sidecar, sidecar.metrics("/_conn_stats")) == 200
    assert await _get(sidecar, sidecar.admin("/metrics")) == 404
    assert sidecar.sidecar.metrics_port != sidecar.sidecar.admin_port


async def test_drainz_needs_the_pods_drain_token(start_sidecar: StartSidecar, stub: Stub) -> None:
    running = await start_sidecar(drain_token=TOKEN)
    await eventually(lambda: _ready(running, 200))
    assert await _get(running, running.admin("/drainz")) == 403
    assert await _get(running, running.admin("/drainz"), **{HEADER: "guess"}) == 403
    assert await _get(running, running.admin("/drainz"), **{HEADER: "é"}) == 403
    assert await running.status("/readyz") == 200  # nothing was drained
    assert await _get(running, running.admin("/drainz"), **{HEADER: TOKEN}) == 200
    assert await running.status("/readyz") == 503


async def test_drain_ends_when_the_model_container_is_back_after_a_restart(
    start_sidecar: StartSidecar, stub: Stub
) -> None:
    """The kubelet runs the preStop hook before a liveness or startup-probe restart too."""
    running = await start_sidecar(drain_token=TOKEN)
    await eventually(lambda: _ready(running, 200))
    assert await running.status("/startupz") == 200  # this instance passed its startup probe
    assert await _get(running, running.admin("/drainz"), **{HEADER: TOKEN}) == 200  # preStop
    assert await running.status("/readyz") == 503
    assert "chute_draining 1.0" in await running.metrics_text()
    stub.health_status = 503  # the restarted container loads
    assert await running.status("/startupz") == 503  # the new instance's startup probe
    await asyncio.sleep(0.2)
    assert await running.status("/readyz") == 503
    stub.health_status = 200  # the model is back
    await eventually(lambda: _ready(running, 200))
    assert "chute_draining 0.0" in await running.metrics_text()
    async with running.session.get(running.url("/echo")) as response:
        assert response.status == 200
        assert response.headers.get("Connection", "").lower() != "close"


async def test_drain_without_a_restart_stays(start_sidecar: StartSidecar, stub: Stub) -> None:
    """Pod termination: the model is stopped for good; polls that still succeed do not end the drain."""
    running = await start_sidecar()
    await eventually(lambda: _ready(running, 200))
    assert await running.status("/startupz") == 200
    assert await _get(running, running.admin("/drainz")) == 200
    polls = stub.health_polls
    await eventually(lambda: _polled(stub, polls + 3))
    assert await running.status("/readyz") == 503


async def test_sigterm_drain_is_not_ended_by_a_restarted_model(
    start_sidecar: StartSidecar, stub: Stub
) -> None:
    running = await start_sidecar(drain_seconds=30.0)
    await eventually(lambda: _ready(running, 200))
    assert await running.status("/startupz") == 200
    shutdown = asyncio.create_task(running.sidecar.shutdown())
    await eventually(lambda: _ready(running, 503))
    stub.health_status = 503
    assert await running.status("/startupz") == 503
    stub.health_status = 200
    await eventually(lambda: _started(running))
    assert await running.status("/readyz") == 503
    shutdown.cancel()


async def _ready(running: Running, code: int) -> bool:
    return await running.status("/readyz") == code


async def _polled(stub: Stub, count: int) -> bool:
    return stub.health_polls >= count


async def _started(running: Running) -> bool:
    return running.sidecar.health.started
