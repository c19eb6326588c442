"""``Expect: 100-continue`` on the activator's serving port (a Chute's Service while it is at zero):
``100 Continue`` at once, never a client (curl, for bodies over 1 KiB) left to wait 1 s for its own
timeout; the body then reaches the replica whole, without the Expect header."""

from __future__ import annotations

import hashlib
import json
from collections.abc import AsyncIterator

import pytest
from aiohttp import web

from tests.unit.chute_activator.conftest import LOOPBACK, StartActivator
from tests.unit.chute_sidecar.test_expect_continue import expect_continue

KEY = ("team", "llm")


@pytest.fixture
async def replica() -> AsyncIterator[tuple[str, list[dict[str, str]]]]:
    seen: list[dict[str, str]] = []

    async def echo(request: web.Request) -> web.Response:
        body = await request.read()
        seen.append(dict(request.headers))
        return web.json_response({"sha256": hashlib.sha256(body).hexdigest()})

    app = web.Application()
    app.router.add_post("/v1/chat/completions", echo)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    await web.TCPSite(runner, LOOPBACK, 0).start()
    yield f"{LOOPBACK}:{runner.addresses[0][1]}", seen
    await runner.cleanup()


async def test_the_activator_answers_100_continue_at_once_and_forwards_the_whole_body(
    start_activator: StartActivator, replica: tuple[str, list[dict[str, str]]]
) -> None:
    activator = await start_activator()
    endpoint, seen = replica
    activator.chute(KEY, endpoints=(endpoint,))
    body = b"c" * 4096
    interim, final = await expect_continue(
        activator.port, "/v1/chat/completions", body, extra="X-Chute: team/llm\r\n"
    )
    assert interim.startswith(b"HTTP/1.1 100")
    assert final.startswith(b"HTTP/1.1 200")
    assert json.loads(final.split(b"\r\n\r\n", 1)[1])["sha256"] == hashlib.sha256(body).hexdigest()
    assert "Expect" not in seen[0]  # answered here: the replica has the whole body already


async def test_a_held_request_gets_100_continue_at_once_too(start_activator: StartActivator) -> None:
    activator = await start_activator(max_wait_seconds=0.5, default_retry_after=3)
    activator.chute(KEY)  # at zero: the body is read, then held
    interim, final = await expect_continue(
        activator.port, "/v1/chat/completions", b"h" * 2048, extra="X-Chute: team/llm\r\n"
    )
    assert interim.startswith(b"HTTP/1.1 100")
    assert final.startswith(b"HTTP/1.1 503")  # held until its wait ran out


async def test_a_body_refused_before_it_is_read_gets_its_final_answer_without_100(
    start_activator: StartActivator,
) -> None:
    activator = await start_activator()  # the tests' limit: 1 MiB
    activator.chute(KEY)
    reader_body = b"x" * (2 * 1024 * 1024)
    interim, _ = await expect_continue(
        activator.port, "/v1/chat/completions", reader_body, extra="X-Chute: team/llm\r\n"
    )
    assert interim.startswith(b"HTTP/1.1 413")
