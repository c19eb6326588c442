"""A request is for the Chute whose activator port it arrived on: no header moves it to another.

Before, the activator took the Chute from ``X-Chute`` or the Host header, so any client that could
reach one Chute's Service at zero could reach (wake, fill the queue of) any Chute in any namespace by
naming it, and a request through a LoadBalancer, an Ingress or a Gateway (``Host: llm.example.com``)
was answered 404 and never woke its Chute."""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable

import aiohttp
import pytest
from aiohttp import web

from tests.unit.chute_activator.conftest import LOOPBACK, StartActivator

A, B = ("team-a", "llm"), ("team-b", "secret")
FORGED = [
    {"X-Chute": "team-b/secret"},
    {"Host": "secret.team-b.svc.cluster.local"},
    {"Host": "secret.team-b", "X-Chute": "team-b/secret"},
    {"Host": "llm.example.com"},  # what a LoadBalancer, an Ingress or a Gateway passes on
    {},
]

Replica = Callable[[str], Awaitable[str]]


@pytest.fixture
async def replica() -> AsyncIterator[Replica]:
    """``replica(name)``: a server that answers every request with its name; its ``host:port``."""
    runners: list[web.AppRunner] = []

    async def start(name: str) -> str:
        async def answer(request: web.Request) -> web.Response:
            await request.read()
            return web.json_response({"replica": name})

        app = web.Application()
        app.router.add_route("*", "/{tail:.*}", answer)
        runner = web.AppRunner(app, access_log=None)
        await runner.setup()
        await web.TCPSite(runner, LOOPBACK, 0).start()
        runners.append(runner)
        return f"{LOOPBACK}:{runner.addresses[0][1]}"

    yield start
    for runner in runners:
        await runner.cleanup()


@pytest.mark.parametrize("headers", FORGED)
async def test_a_request_on_a_chutes_port_reaches_that_chute_whatever_its_headers_say(
    start_activator: StartActivator, session: aiohttp.ClientSession, replica: Replica, headers: dict[str, str]
) -> None:
    activator = await start_activator()
    activator.chute(A, endpoints=(await replica("a"),))
    activator.chute(B, endpoints=(await replica("b"),))
    async with session.post(activator.url(key=A), json={}, headers=headers) as response:
        assert response.status == 200
        assert await response.json() == {"replica": "a"}
    async with session.post(activator.url(key=B), json={}, headers=headers) as response:
        assert await response.json() == {"replica": "b"}


async def test_a_forged_name_at_zero_wakes_only_the_chute_of_the_port(
    start_activator: StartActivator, session: aiohttp.ClientSession
) -> None:
    """Waking costs a GPU: a client of A's Service that names B wakes A (its own Chute), never B."""
    activator = await start_activator(max_wait_seconds=0.3)
    activator.chute(A)
    activator.chute(B)
    async with session.post(activator.url(key=A), json={}, headers={"X-Chute": "team-b/secret"}) as response:
        assert response.status == 503  # held, then the bounded wait ends
    assert activator.wakes
    assert set(activator.wakes) == {A}
