"""A Chute at zero takes what it takes awake: its own body limit and request timeout (its spec's
``maxRequestBodyBytes`` and ``requestTimeoutSeconds``, the sidecar's flags) apply to the requests the
activator holds and forwards for it; the bound on bodies held across requests stays the activator's."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from typing import Any

import aiohttp
import pytest
from aiohttp import web

from chute_activator.derive import chute_state
from tests.unit.chute_activator import test_body
from tests.unit.chute_activator.conftest import LOOPBACK, StartActivator
from tests.unit.chute_activator.test_body import KEY, PATH, Recorder, digest

HOST = {"Host": "llm.team.svc"}
recorder = test_body.recorder
"""The recording replica of the body tests (a fixture)."""


def _chute(**spec: Any) -> dict[str, Any]:
    return {
        "metadata": {"name": "llm", "namespace": "team"},
        "spec": spec,
        "status": {"activatorPort": 20001},
    }


def test_the_limits_are_read_from_the_chutes_spec() -> None:
    state = chute_state(_chute(maxRequestBodyBytes=2048, requestTimeoutSeconds=3600), [])
    assert state is not None
    assert (state.max_body_bytes, state.request_timeout_seconds) == (2048, 3600.0)
    for bad in ({}, {"maxRequestBodyBytes": True, "requestTimeoutSeconds": "60"}, {"maxRequestBodyBytes": 0}):
        state = chute_state(_chute(**bad), [])
        assert state is not None
        assert (state.max_body_bytes, state.request_timeout_seconds) == (None, None), bad


async def test_a_body_over_the_chutes_limit_is_413_under_the_activators_default(
    start_activator: StartActivator, recorder: Recorder, session: aiohttp.ClientSession
) -> None:
    activator = await start_activator()  # the tests' default limit: 1 MiB
    activator.chute(KEY, endpoints=(recorder.endpoint,), max_body_bytes=2048)
    async with session.post(activator.url(), data=b"x" * 2049, headers=HOST) as response:
        assert response.status == 413
        assert (await response.json())["error"]["reason"] == "BodyTooLarge"
    async with session.post(activator.url(), data=b"x" * 2048, headers=HOST) as response:
        assert response.status == 200
    assert recorder.received == [digest(b"x" * 2048)]


async def test_a_chutes_larger_limit_is_taken_within_the_held_bound(
    start_activator: StartActivator, recorder: Recorder, session: aiohttp.ClientSession
) -> None:
    activator = await start_activator(max_held_body_bytes=3_000_000)
    activator.chute(KEY, endpoints=(recorder.endpoint,), max_body_bytes=8 << 20)
    body = b"y" * 2_000_000  # over the activator's default (1 MiB), under the Chute's
    async with session.post(activator.url(), data=body, headers=HOST) as response:
        assert response.status == 200
    assert recorder.received == [digest(body)]
    async with session.post(activator.url(), data=b"z" * 3_000_001, headers=HOST) as response:
        assert response.status == 413, "never held whole: not a 503 to retry for ever"
        assert "--max-held-body-bytes" in (await response.json())["error"]["message"]


@pytest.fixture
async def streamer() -> AsyncIterator[tuple[str, asyncio.Event]]:
    """A replica that streams one event, waits for the test, then ends its stream."""
    finish = asyncio.Event()

    async def stream(request: web.Request) -> web.StreamResponse:
        await request.read()
        response = web.StreamResponse(headers={"Content-Type": "text/event-stream"})
        await response.prepare(request)
        await response.write(b"data: first\n\n")
        await finish.wait()
        await response.write(b"data: [DONE]\n\n")
        await response.write_eof()
        return response

    app = web.Application()
    app.router.add_post(PATH, stream)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    await web.TCPSite(runner, LOOPBACK, 0).start()
    yield f"{LOOPBACK}:{runner.addresses[0][1]}", finish
    finish.set()
    await runner.cleanup()


async def _stream(session: aiohttp.ClientSession, url: str, finish: asyncio.Event, after: float) -> bytes:
    """The whole answer, the replica told to finish ``after`` seconds into it; a cut answer raises."""
    async with session.post(url, data=b"{}", headers=HOST) as response:
        assert response.status == 200
        first = await response.content.readuntil(b"\n\n")
        await asyncio.sleep(after)
        finish.set()
        return first + await response.read()


async def test_a_long_stream_runs_until_the_chutes_timeout_not_the_activators(
    start_activator: StartActivator, streamer: tuple[str, asyncio.Event], session: aiohttp.ClientSession
) -> None:
    endpoint, finish = streamer
    activator = await start_activator()
    start_activator.activators[-1].request_timeout = 0.2  # the activator's default, short
    activator.chute(KEY, endpoints=(endpoint,), request_timeout_seconds=60.0)
    answer = await _stream(session, activator.url(), finish, after=0.5)
    assert answer == b"data: first\n\ndata: [DONE]\n\n"


async def test_without_a_chute_timeout_the_activators_default_cuts_the_stream(
    start_activator: StartActivator, streamer: tuple[str, asyncio.Event], session: aiohttp.ClientSession
) -> None:
    endpoint, finish = streamer
    activator = await start_activator()
    start_activator.activators[-1].request_timeout = 0.2
    activator.chute(KEY, endpoints=(endpoint,))
    with pytest.raises(aiohttp.ClientPayloadError):
        await _stream(session, activator.url(), finish, after=0.5)
