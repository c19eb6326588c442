"""An activator in this process on loopback, fed by the test instead of the Kubernetes API."""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import dataclass, field

import aiohttp
import pytest
from aiohttp import web

from chute_activator.app import Activator, metrics_app
from chute_activator.debug import debug_app
from chute_activator.holding import Holder
from chute_activator.metrics import Metrics
from chute_activator.state import Key

LOOPBACK = "127.0.0.1"


@dataclass
class Running:
    holder: Holder
    port: int
    metrics_port: int
    debug_port: int
    wakes: list[Key] = field(default_factory=list)

    def url(self, path: str = "/v1/chat/completions") -> str:
        return f"http://{LOOPBACK}:{self.port}{path}"


class StartActivator:
    def __init__(self) -> None:
        self.runners: list[web.BaseRunner] = []
        self.activators: list[Activator] = []

    async def __call__(self, max_held_body_bytes: int | None = None, **options: float) -> Running:
        wakes: list[Key] = []

        async def wake(key: Key) -> None:
            wakes.append(key)

        holder = Holder(wake, Metrics(), **options)  # type: ignore[arg-type]
        holder.mark_synced()
        activator = Activator(
            holder, max_body_bytes=1 << 20, request_timeout=30, max_held_body_bytes=max_held_body_bytes
        )
        await activator.start()
        self.activators.append(activator)
        serving = web.ServerRunner(web.Server(activator.handle, handler_cancellation=True), access_log=None)
        await serving.setup()
        await web.TCPSite(serving, LOOPBACK, 0).start()
        admin = web.AppRunner(metrics_app(holder), access_log=None)
        await admin.setup()
        await web.TCPSite(admin, LOOPBACK, 0).start()
        debug = web.AppRunner(debug_app(holder), access_log=None)
        await debug.setup()
        await web.TCPSite(debug, LOOPBACK, 0).start()
        self.runners += [serving, admin, debug]
        ports = (serving.addresses[0][1], admin.addresses[0][1], debug.addresses[0][1])
        return Running(holder, *ports, wakes)


@pytest.fixture
async def start_activator() -> AsyncIterator[StartActivator]:
    starter = StartActivator()
    yield starter
    for runner in starter.runners:
        await runner.cleanup()
    for activator in starter.activators:
        await activator.close()


@pytest.fixture
async def session() -> AsyncIterator[aiohttp.ClientSession]:
    async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=0)) as client:
        yield client
