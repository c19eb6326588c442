"""SIGTERM on a real sidecar process: unready at once, drain, finish in-flight requests, exit 0."""

from __future__ import annotations

import asyncio
import json
import signal
from collections.abc import AsyncIterator

import aiohttp
import pytest

from .conftest import (
    LOOPBACK,
    OPERATOR_DIR,
    PYTHON,
    StartSidecar,
    Stub,
    eventually,
    free_port,
    subprocess_env,
)


class Process:
    def __init__(
        self, process: asyncio.subprocess.Process, port: int, metrics_port: int, admin_port: int
    ) -> None:
        self.process = process
        self.port = port
        self.metrics_port = metrics_port
        self.admin_port = admin_port

    def url(self, path: str) -> str:
        return f"http://{LOOPBACK}:{self.port}{path}"

    def admin(self, path: str) -> str:
        return f"http://{LOOPBACK}:{self.admin_port}{path}"

    def metrics(self, path: str) -> str:
        return f"http://{LOOPBACK}:{self.metrics_port}{path}"

    async def logs(self) -> list[dict[str, object]]:
        assert self.process.stderr is not None
        raw = await self.process.stderr.read()
        return [json.loads(line) for line in raw.decode().splitlines() if line.strip()]


@pytest.fixture
async def spawn(stub: Stub) -> AsyncIterator[object]:
    processes: list[asyncio.subprocess.Process] = []

    async def start(*extra: str) -> Process:
        port, metrics_port, admin_port = free_port(), free_port(), free_port()
        process = await asyncio.create_subprocess_exec(
            PYTHON, "-m", "chute_sidecar",
            "--upstream", stub.url,
            "--host", LOOPBACK,
            "--port", str(port),
            "--metrics-port", str(metrics_port),
            "--admin-port", str(admin_port),
            "--health-interval-seconds", "0.1",
            *extra,
            cwd=OPERATOR_DIR,
            env=subprocess_env(),
            stderr=asyncio.subprocess.PIPE,
        )  # fmt: skip
        processes.append(process)
        return Process(process, port, metrics_port, admin_port)

    yield start
    for process in processes:
        if process.returncode is None:
            process.kill()
            await process.wait()


async def _status(session: aiohttp.ClientSession, url: str) -> int:
    try:
        async with session.get(url) as response:
            return response.status
    except aiohttp.ClientConnectionError:
        return -1


async def test_sigterm_loses_no_request_in_flight(spawn, stub: Stub) -> None:  # type: ignore[no-untyped-def]
    sidecar: Process = await spawn(
        "--concurrency", "8", "--drain-seconds", "3", "--shutdown-timeout-seconds", "30"
    )  # fmt: skip
    async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=60)) as session:

        async def ready() -> bool:
            return await _status(session, sidecar.admin("/readyz")) == 200

        await eventually(ready, within=30)

        async def slow() -> tuple[int, str]:
            # each on its own connection, like independent clients
            async with (
                aiohttp.ClientSession() as own,
                own.get(sidecar.url("/slow?seconds=4")) as response,
            ):
                return response.status, await response.text()

        in_flight = [asyncio.create_task(slow()) for _ in range(6)]

        async def all_in_model() -> bool:
            return stub.entered == 6

        await eventually(all_in_model)
        sidecar.process.send_signal(signal.SIGTERM)

        async def unready() -> bool:
            return await _status(session, sidecar.admin("/readyz")) == 503

        await eventually(unready)
        # still serving new requests while the endpoints update
        async with session.get(sidecar.url("/echo")) as response:
            assert response.status == 200
            assert response.headers.get("Connection", "").lower() == "close"
        async with session.get(sidecar.metrics("/metrics")) as response:
            assert "chute_draining 1.0" in await response.text()

        results = await asyncio.gather(*in_flight)
        assert results == [(200, "slept 4.0")] * 6
        assert stub.cancelled == 0
        assert await asyncio.wait_for(sidecar.process.wait(), 30) == 0
    events = [entry["msg"] for entry in await sidecar.logs()]
    assert (
        events.index("signal received: shutting down")
        < events.index("draining")
        < events.index("sidecar stopped")
    )


async def test_shutdown_timeout_bounds_the_wait(spawn, stub: Stub) -> None:  # type: ignore[no-untyped-def]
    sidecar: Process = await spawn("--drain-seconds", "0", "--shutdown-timeout-seconds", "0.5")
    async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=60)) as session:

        async def ready() -> bool:
            return await _status(session, sidecar.admin("/readyz")) == 200

        await eventually(ready, within=30)
        stuck = asyncio.create_task(session.get(sidecar.url("/slow?seconds=60")))

        async def in_model() -> bool:
            return stub.entered == 1

        await eventually(in_model)
        sidecar.process.send_signal(signal.SIGTERM)
        assert await asyncio.wait_for(sidecar.process.wait(), 30) == 0
        with pytest.raises(aiohttp.ClientError):
            await stuck

        async def model_saw_cancel() -> bool:
            return stub.cancelled == 1

        await eventually(model_saw_cancel)
    messages = [entry["msg"] for entry in await sidecar.logs()]
    assert "shutdown timeout: cancelling requests still in flight" in messages


async def test_drainz_returns_only_after_in_flight_requests_finish(
    start_sidecar: StartSidecar, stub: Stub
) -> None:
    """The model container's preStop hook: unready at once, back only when nothing is in flight."""
    running = await start_sidecar(drain_seconds=0.2, shutdown_timeout_seconds=30)
    session = running.session
    held = asyncio.create_task(session.get(running.url("/hold")))

    async def in_model() -> bool:
        return stub.entered == 1

    await eventually(in_model)
    drain = asyncio.create_task(session.get(running.admin("/drainz")))

    async def unready() -> bool:
        return await running.status("/readyz") == 503

    await eventually(unready)
    await asyncio.sleep(0.5)  # past the drain period: still waiting for the held request
    assert not drain.done()
    stub.release.set()
    async with await held as response:
        assert response.status == 200
    async with await drain as response:
        assert response.status == 200
        assert await response.json() == {"in_flight": 0}
