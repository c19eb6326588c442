"""Admin probes driven by the background health poll: slow start, crash, recovery."""

from __future__ import annotations

from collections.abc import Awaitable, Callable

from .conftest import Running, StartSidecar, Stub, eventually


def _expect(running: Running, path: str, code: int) -> Callable[[], Awaitable[bool]]:
    async def check() -> bool:
        return await running.status(path) == code

    return check


async def test_slow_start_then_crash_then_recovery(start_sidecar: StartSidecar, stub: Stub) -> None:
    stub.health_status = 503  # the model is still loading
    running = await start_sidecar()
    await eventually(lambda: _polled(stub, 2))
    assert await running.status("/livez") == 200
    assert await running.status("/startupz") == 503
    assert await running.status("/readyz") == 503
    assert await running.status("/modelz") == 200  # not started yet is not dead
    text = await running.metrics_text()
    assert "chute_model_started 0.0" in text
    assert "chute_model_up 0.0" in text

    stub.health_status = 200
    await eventually(_expect(running, "/startupz", 200))
    await eventually(_expect(running, "/readyz", 200))
    assert await running.status("/modelz") == 200
    text = await running.metrics_text()
    assert "chute_model_started 1.0" in text
    assert "chute_model_up 1.0" in text

    port = stub.port
    await stub.stop()  # the model process dies: connection refused
    await eventually(_expect(running, "/readyz", 503))
    await eventually(_expect(running, "/modelz", 503))
    assert running.sidecar.health.failures >= 3
    assert await running.status("/startupz") == 200  # it did start once
    assert await running.status("/livez") == 200
    assert "chute_model_up 0.0" in await running.metrics_text()

    await stub.start(port)  # restarted by the kubelet
    await eventually(_expect(running, "/modelz", 200))
    await eventually(_expect(running, "/readyz", 200))
    assert "chute_model_up 1.0" in await running.metrics_text()


async def _polled(stub: Stub, count: int) -> bool:
    return stub.health_polls >= count


async def test_failing_health_status_counts_like_a_crash(start_sidecar: StartSidecar, stub: Stub) -> None:
    running = await start_sidecar()
    await eventually(_expect(running, "/readyz", 200))
    stub.health_status = 500
    await eventually(_expect(running, "/readyz", 503))
    polls = stub.health_polls
    await eventually(_expect(running, "/modelz", 503))
    assert stub.health_polls >= polls + 2  # it took more polls than the first failure


async def test_probes_do_not_poll_the_model(start_sidecar: StartSidecar, stub: Stub) -> None:
    running = await start_sidecar(health_interval_seconds=60.0)
    await eventually(_expect(running, "/readyz", 200))
    polls = stub.health_polls
    for path in ("/readyz", "/startupz", "/modelz", "/livez") * 5:
        await running.status(path)
    assert stub.health_polls == polls


async def test_startup_timeout_fails_modelz(start_sidecar: StartSidecar, stub: Stub) -> None:
    stub.health_status = 503
    running = await start_sidecar(startup_timeout_seconds=0.2)
    assert await running.status("/modelz") == 200
    await eventually(_expect(running, "/modelz", 503))
    assert await running.status("/startupz") == 503
    stub.health_status = 200  # it finally came up
    await eventually(_expect(running, "/modelz", 200))
    assert await running.status("/startupz") == 200


async def test_unknown_admin_path_404(sidecar: Running) -> None:
    assert await sidecar.status("/nope") == 404
