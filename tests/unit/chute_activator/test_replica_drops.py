"""A replica that closes the connection: another is tried, then a JSON 503; a started answer is ended.

The replicas are raw sockets on loopback that accept, read the request's head and close (before
answering, or after the head and part of the body of an answer).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
from collections.abc import AsyncIterator, Awaitable, Callable

import aiohttp
import pytest
from aiohttp import web

from chute_activator.app import CONNECT_ATTEMPTS, REPLICA_DISCONNECTED
from tests.raw_http import read_until_closed
from tests.unit.chute_activator.conftest import LOOPBACK, StartActivator

KEY = ("team", "llm")
HOST = {"Host": "llm.team.svc"}
CHAT = {"model": "m", "messages": [{"role": "user", "content": "hi"}]}

Reply = Callable[[asyncio.StreamWriter], Awaitable[None]]


class RawReplica:
    """Accepts, reads the request's head, writes ``reply`` (nothing by default) and closes."""

    def __init__(self, reply: bytes = b"") -> None:
        self.reply, self.connections = reply, 0
        self.server: asyncio.Server | None = None

    @property
    def endpoint(self) -> str:
        assert self.server is not None
        return f"{LOOPBACK}:{self.server.sockets[0].getsockname()[1]}"

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.connections += 1
        with contextlib.suppress(ConnectionError, asyncio.IncompleteReadError):
            await reader.readuntil(b"\r\n\r\n")
            writer.write(self.reply)
            await writer.drain()
        writer.close()

    async def __aenter__(self) -> RawReplica:
        self.server = await asyncio.start_server(self._serve, LOOPBACK, 0)
        return self

    async def __aexit__(self, *_: object) -> None:
        assert self.server is not None
        self.server.close()


@pytest.fixture
async def good_replica() -> AsyncIterator[str]:
    async def answer(request: web.Request) -> web.Response:
        await request.read()
        return web.json_response({"object": "chat.completion"})

    app = web.Application()
    app.router.add_post("/v1/chat/completions", answer)
    app.router.add_get("/v1/models", answer)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    await web.TCPSite(runner, LOOPBACK, 0).start()
    yield f"{LOOPBACK}:{runner.addresses[0][1]}"
    await runner.cleanup()


async def test_a_replica_that_closes_before_answering_is_retried_then_a_json_503_with_retry_after(
    start_activator: StartActivator, session: aiohttp.ClientSession
) -> None:
    activator = await start_activator(default_retry_after=7)
    async with RawReplica() as dropping:
        activator.chute(KEY, endpoints=(dropping.endpoint,))
        async with session.get(activator.url("/v1/models"), headers=HOST) as response:
            status, retry_after, text = (
                response.status,
                response.headers.get("Retry-After"),
                await response.text(),
            )
    assert (status, retry_after) == (503, "7")
    assert json.loads(text)["error"]["reason"] == REPLICA_DISCONNECTED == "ReplicaDisconnected"
    # bounded (aiohttp itself tries an idempotent request once more on a connection closed early)
    assert CONNECT_ATTEMPTS <= dropping.connections <= 2 * CONNECT_ATTEMPTS


async def test_after_a_replica_closes_before_answering_another_replica_answers(
    start_activator: StartActivator, session: aiohttp.ClientSession, good_replica: str
) -> None:
    activator = await start_activator()
    async with RawReplica() as dropping:
        activator.chute(KEY, endpoints=(dropping.endpoint, good_replica))
        async with session.get(activator.url("/v1/models"), headers=HOST) as response:
            assert response.status == 200
            assert (await response.json())["object"] == "chat.completion"
    assert dropping.connections in (1, 2)  # aiohttp's own second try of a GET, then the next replica


async def test_a_post_the_replica_read_before_closing_is_never_sent_to_another_replica(
    start_activator: StartActivator, session: aiohttp.ClientSession
) -> None:
    """A replica that reads the whole request and dies before answering (a generation that OOM-kills
    it) may have acted on it: the POST was sent to every replica in turn (3 generations, and a
    poison request took down each replica). Now: one replica, then a JSON 503 with Retry-After."""
    activator = await start_activator(default_retry_after=7)
    bodies: list[bytes] = []

    async def read_all_then_close(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        with contextlib.suppress(ConnectionError, asyncio.IncompleteReadError, ValueError):
            head = await reader.readuntil(b"\r\n\r\n")
            length = next(
                int(line.split(b":")[1])
                for line in head.split(b"\r\n")
                if line.lower().startswith(b"content-length:")
            )
            bodies.append(await reader.readexactly(length))
        writer.close()

    servers = [await asyncio.start_server(read_all_then_close, LOOPBACK, 0) for _ in range(2)]
    try:
        endpoints = tuple(f"{LOOPBACK}:{server.sockets[0].getsockname()[1]}" for server in servers)
        activator.chute(KEY, endpoints=endpoints)
        async with session.post(activator.url(), json=CHAT, headers=HOST) as response:
            status, retry_after, text = (
                response.status,
                response.headers.get("Retry-After"),
                await response.text(),
            )
    finally:
        for server in servers:
            server.close()
    assert (status, retry_after) == (503, "7")
    assert json.loads(text)["error"]["reason"] == REPLICA_DISCONNECTED
    assert len(bodies) == 1  # sent once, not once per replica


async def test_a_post_goes_to_the_next_replica_when_the_first_cannot_be_reached(
    start_activator: StartActivator, session: aiohttp.ClientSession, good_replica: str
) -> None:
    activator = await start_activator()
    closed = await asyncio.start_server(lambda _r, w: w.close(), LOOPBACK, 0)
    unreachable = f"{LOOPBACK}:{closed.sockets[0].getsockname()[1]}"
    closed.close()
    await closed.wait_closed()
    activator.chute(KEY, endpoints=(unreachable, good_replica))
    async with session.post(activator.url(), json=CHAT, headers=HOST) as response:
        assert response.status == 200


async def test_an_answer_the_replica_cuts_after_it_started_is_ended_without_a_second_status(
    start_activator: StartActivator,
) -> None:
    activator = await start_activator()
    started = b"HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nContent-Length: 100\r\n\r\n" + b"partial"
    async with RawReplica(started) as cutting:
        activator.chute(KEY, endpoints=(cutting.endpoint,))
        reader, writer = await asyncio.open_connection(LOOPBACK, activator.port)
        writer.write(f"GET /v1/models HTTP/1.1\r\nHost: {HOST['Host']}\r\n\r\n".encode())
        answer = await read_until_closed(reader)
        writer.close()
    assert answer.startswith(b"HTTP/1.1 200")
    assert answer.count(b"HTTP/1.1") == 1  # ended (the connection closed), no second status
    assert answer.endswith(b"partial")
    assert cutting.connections == 1


async def test_a_replica_silent_past_the_request_timeout_gets_a_json_504_and_a_stalled_stream_is_cut(
    start_activator: StartActivator, session: aiohttp.ClientSession, caplog: pytest.LogCaptureFixture
) -> None:
    """A replica that does not answer within --request-timeout-seconds gave aiohttp's own plain-text
    504 (no JSON, no reason, not counted); one that stalls in the middle of a streamed answer raised
    out of the handler (an 'Error handling request' traceback) instead of ending the client's answer."""
    activator = await start_activator()
    start_activator.activators[-1].request_timeout = 0.5
    stall = asyncio.Event()

    async def silent(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        with contextlib.suppress(ConnectionError, asyncio.IncompleteReadError):
            head = await reader.readuntil(b"\r\n\r\n")
            if head.startswith(b"GET /stream"):
                writer.write(b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nfirst\r\n")
                await writer.drain()
            await asyncio.wait_for(stall.wait(), 5)
        writer.close()

    server = await asyncio.start_server(silent, LOOPBACK, 0)
    try:
        activator.chute(KEY, endpoints=(f"{LOOPBACK}:{server.sockets[0].getsockname()[1]}",))
        async with session.get(activator.url("/v1/models"), headers=HOST) as response:
            status, text = response.status, await response.text()
        assert status == 504
        assert json.loads(text)["error"]["reason"] == "ReplicaTimeout"
        async with session.get(activator.url("/stream"), headers=HOST) as response:
            assert response.status == 200
            with pytest.raises(aiohttp.ClientPayloadError):
                await response.read()
    finally:
        stall.set()
        server.close()
    assert not [r for r in caplog.records if r.levelname == "ERROR"]


@pytest.mark.parametrize(
    "reply",
    [
        b"garbage\r\n\r\n",  # no status line
        b"HTTP/1.1 200 OK\r\nX-Long: " + b"a" * 100_000 + b"\r\n\r\n",  # a header past aiohttp's bound
        b"HTTP/1.1 200 OK\r\nContent-Length: zz\r\n\r\n",  # an invalid Content-Length
    ],
)
async def test_a_replica_that_answers_malformed_http_gets_a_json_502_not_a_plain_500(
    start_activator: StartActivator, session: aiohttp.ClientSession, reply: bytes
) -> None:
    activator = await start_activator()
    async with RawReplica(reply) as broken:
        activator.chute(KEY, endpoints=(broken.endpoint,))
        async with session.post(activator.url(), json=CHAT, headers=HOST) as response:
            status, text = response.status, await response.text()
    assert status == 502
    assert json.loads(text)["error"]["reason"] == "ReplicaBadAnswer"
    assert broken.connections == 1  # it may have acted on the request: not sent elsewhere
