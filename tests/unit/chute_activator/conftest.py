"""An activator in this process on loopback, fed by the test instead of the Kubernetes API.

It listens on :data:`CHUTE_PORTS` ports (as the real one listens on its whole range); the first Chute
a test declares (:meth:`Running.chute`) gets the first port, the next the second: a request is for the
Chute whose port it arrived on, as in production."""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import Any

import aiohttp
import pytest
from aiohttp import web

from chute_activator.app import Activator, metrics_app
from chute_activator.debug import debug_app
from chute_activator.holding import Holder
from chute_activator.metrics import Metrics
from chute_activator.state import ChuteState, Key

LOOPBACK = "127.0.0.1"
CHUTE_PORTS = 3
"""Serving ports of one activator in a test: one per Chute it declares."""


@dataclass
class Running:
    holder: Holder
    ports: tuple[int, ...]
    metrics_port: int
    debug_port: int
    wakes: list[Key] = field(default_factory=list)
    given: dict[Key, int] = field(default_factory=dict)

    @property
    def port(self) -> int:
        """The first Chute's port."""
        return self.ports[0]

    def port_of(self, key: Key) -> int:
        """The Chute's port (the next free one for a Chute not declared yet)."""
        if key not in self.given:
            self.given[key] = self.ports[len(self.given)]
        return self.given[key]

    def chute(self, key: Key, **fields: Any) -> None:
        """The source says the Chute is as ``fields`` say, on its port."""
        self.holder.update(key, ChuteState(port=self.port_of(key), **fields))

    def url(self, path: str = "/v1/chat/completions", key: Key | None = None) -> str:
        port = self.port_of(key) if key is not None else self.port
        return f"http://{LOOPBACK}:{port}{path}"


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
        serving_ports = []
        for _ in range(CHUTE_PORTS):
            site = web.TCPSite(serving, LOOPBACK, 0)
            await site.start()
            assert site._server is not None
            serving_ports.append(site._server.sockets[0].getsockname()[1])
        admin = web.AppRunner(metrics_app(holder), access_log=None)
        await admin.setup()
        await web.TCPSite(admin, LOOPBACK, 0).start()
        debug = web.AppRunner(debug_app(holder), access_log=None)
        await debug.setup()
        await web.TCPSite(debug, LOOPBACK, 0).start()
        self.runners += [serving, admin, debug]
        return Running(holder, tuple(serving_ports), admin.addresses[0][1], debug.addresses[0][1], wakes)


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
