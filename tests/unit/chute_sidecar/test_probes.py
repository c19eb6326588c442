"""Admin probes driven by the background health poll: slow start, crash, recovery."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable

from .conftest import Running, StartSidecar, Stub, eventually


def _expect(running: Running, path: str, code: int) -> Callable[[], Awaitable[bool]]:
    async def check() -> bool:
        return await running.status(path) == code

    return check


async def test_slow_start_then_crash_then_recovery(start_sidecar: StartSidecar, stub: Stub) -> None:
    """Probed the way the kubelet probes the model container: startup until it passes, then liveness;
    a restarted container instance is probed for startup again."""
    stub.health_status = 503  # the model is still loading
    running = await start_sidecar()
    await eventually(lambda: _polled(stub, 2))
    assert await running.status("/livez") == 200
    assert await running.status("/startupz") == 503
    assert await running.status("/readyz") == 503
    text = await running.metrics_text()
    assert "chute_model_started 0.0" in text
    assert "chute_model_up 0.0" in text

    stub.health_status = 200
    await eventually(_expect(running, "/startupz", 200))  # the first instance passed its startup probe
    await eventually(_expect(running, "/readyz", 200))
    assert await running.status("/modelz") == 200  # liveness from now on
    text = await running.metrics_text()
    assert "chute_model_started 1.0" in text
    assert "chute_model_up 1.0" in text

    port = stub.port
    await stub.stop()  # the model process dies: connection refused
    await eventually(_expect(running, "/readyz", 503))
    await eventually(_expect(running, "/modelz", 503))
    assert running.sidecar.health.failures >= 3
    assert await running.status("/livez") == 200
    assert "chute_model_up 0.0" in await running.metrics_text()

    stub.health_status = 503  # the kubelet restarted the container: the new instance is loading again
    await stub.start(port)
    assert await running.status("/startupz") == 503  # a startup phase of its own
    await eventually(lambda: _polled(stub, 3))
    assert await running.status("/startupz") == 503  # still loading: not judged by the old instance
    assert "chute_model_started 0.0" in await running.metrics_text()
    stub.health_status = 200
    await eventually(_expect(running, "/startupz", 200))
    # liveness judges only this instance: the failures of the previous one are gone
    assert await running.status("/modelz") == 200
    assert running.sidecar.health.failures == 0
    await eventually(_expect(running, "/readyz", 200))
    assert "chute_model_up 1.0" in await running.metrics_text()


async def test_restarted_instance_gets_the_full_startup_timeout(
    start_sidecar: StartSidecar, stub: Stub
) -> None:
    running = await start_sidecar(startup_timeout_seconds=0.5)
    await eventually(_expect(running, "/startupz", 200))
    await asyncio.sleep(0.6)  # the sidecar is older than the startup timeout
    stub.health_status = 503  # the container restarts and loads again
    assert await running.status("/startupz") == 503
    polls = stub.health_polls
    await eventually(lambda: _polled(stub, polls + 2))
    # within its own startup timeout the new instance is not dead, however old the sidecar is
    assert not running.sidecar.health.startup_expired
    assert running.sidecar.health.alive
    await eventually(lambda: _expired(running))  # and its own timeout does expire
    stub.health_status = 200
    await eventually(_expect(running, "/startupz", 200))


async def test_restart_after_liveness_starts_a_new_phase(start_sidecar: StartSidecar, stub: Stub) -> None:
    """The sidecar itself restarted while the model ran: it never saw that instance's startup probe;
    the kubelet's liveness probe shows the instance had started, so the next startup probe is a new one."""
    running = await start_sidecar()
    await eventually(_expect(running, "/readyz", 200))  # the model answers; no startup probe seen
    assert await running.status("/modelz") == 200  # the kubelet's liveness probe
    stub.health_status = 503  # the model container restarts and loads
    assert await running.status("/startupz") == 503
    stub.health_status = 200
    await eventually(_expect(running, "/startupz", 200))


async def test_new_instance_is_polled_at_once(start_sidecar: StartSidecar, stub: Stub) -> None:
    running = await start_sidecar(health_interval_seconds=60.0)
    await eventually(_expect(running, "/startupz", 200))
    health = running.sidecar.health
    phase = health.phase
    assert await running.status("/startupz") == 503  # the next instance's first startup probe
    assert health.phase == phase + 1
    # the poller is woken for the new instance instead of sleeping out the 60 s interval
    await eventually(_expect(running, "/startupz", 200))


async def test_a_poll_answered_by_the_old_instance_does_not_start_the_new_one(
    start_sidecar: StartSidecar, stub: Stub
) -> None:
    running = await start_sidecar(health_timeout_seconds=30.0)
    await eventually(_expect(running, "/startupz", 200))
    stub.health_gate = asyncio.Event()  # the next poll is answered 200, but only once released
    await eventually(lambda: _held(stub))
    stub.health_status = 503  # the new instance is loading
    assert await running.status("/startupz") == 503  # its first startup probe
    stub.health_gate.set()  # the old instance's 200 arrives late
    polls = stub.health_polls
    await eventually(lambda: _polled(stub, polls + 2))
    assert await running.status("/startupz") == 503


async def _held(stub: Stub) -> bool:
    return stub.health_held > 0


async def _expired(running: Running) -> bool:
    return running.sidecar.health.startup_expired


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
    await eventually(_expect(running, "/startupz", 200))
    polls = stub.health_polls
    for path in ("/readyz", "/modelz", "/livez") * 5:  # what the kubelet probes once startup passed
        await running.status(path)
    assert stub.health_polls == polls


async def test_startup_timeout_fails_modelz(start_sidecar: StartSidecar, stub: Stub) -> None:
    stub.health_status = 503
    running = await start_sidecar(startup_timeout_seconds=0.2)
    assert await running.status("/modelz") == 200  # not started yet is not dead
    await eventually(_expect(running, "/modelz", 503))
    assert not running.sidecar.health.started
    stub.health_status = 200  # it finally came up
    await eventually(_expect(running, "/modelz", 200))


async def test_unknown_admin_path_404(sidecar: Running) -> None:
    assert await sidecar.status("/nope") == 404


async def test_a_loading_model_is_polled_several_times_a_second(
    start_sidecar: StartSidecar, stub: Stub
) -> None:
    """Whatever the (steady) health interval, the sidecar sees a loading model come up within a fraction
    of a second: a request held at zero waits for that moment (docs/scale-to-zero.md)."""
    stub.health_status = 503  # loading
    running = await start_sidecar(health_interval_seconds=60.0)
    await eventually(lambda: _polled(stub, 1))
    polls = stub.health_polls
    await asyncio.sleep(1.0)
    assert stub.health_polls >= polls + 3  # one a second before
    assert await running.status("/readyz") == 503
    stub.health_status = 200
    await eventually(_expect(running, "/readyz", 200), within=1.0)
