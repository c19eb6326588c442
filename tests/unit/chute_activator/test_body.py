"""Request bodies reach the replica whole: read to their end, bounded per request and across requests.

Real sockets on loopback: the client sends the body as it likes (at once, in segments with pauses,
chunked); a recording replica counts and hashes what it received.
"""

from __future__ import annotations

import asyncio
import contextlib
import gc
import hashlib
import json
import tracemalloc
from collections.abc import AsyncIterator
from dataclasses import dataclass, field

import aiohttp
import pytest
from aiohttp import web

from tests.raw_http import read_until_closed
from tests.unit.chute_activator.conftest import LOOPBACK, Running, StartActivator

KEY = ("team", "llm")
PATH = "/v1/chat/completions"


@dataclass
class Recorder:
    """A replica that answers each request with the length and SHA-256 of the body it received."""

    received: list[tuple[int, str]] = field(default_factory=list)
    endpoint: str = ""

    async def handle(self, request: web.Request) -> web.Response:
        body = await request.read()
        self.received.append((len(body), hashlib.sha256(body).hexdigest()))
        return web.json_response({"length": len(body)})


@pytest.fixture
async def recorder() -> AsyncIterator[Recorder]:
    replica = Recorder()
    app = web.Application(client_max_size=1 << 30)
    app.router.add_post(PATH, replica.handle)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    await web.TCPSite(runner, LOOPBACK, 0).start()
    replica.endpoint = f"{LOOPBACK}:{runner.addresses[0][1]}"
    yield replica
    await runner.cleanup()


def digest(body: bytes) -> tuple[int, str]:
    return len(body), hashlib.sha256(body).hexdigest()


async def send_raw(activator: Running, head: bytes, parts: list[bytes], pause: float = 0.2) -> bytes:
    """Write ``head`` then each of ``parts`` with a pause between; what the server answered until it
    closed (it may stop reading and close while the body is still being sent)."""
    reader, writer = await asyncio.open_connection(LOOPBACK, activator.port)
    answer = b""
    try:
        with contextlib.suppress(ConnectionError):
            writer.write(head)
            for index, part in enumerate(parts):
                if index:
                    await asyncio.sleep(pause)
                writer.write(part)
                await writer.drain()
        answer += await read_until_closed(reader)
        return answer
    finally:
        writer.close()


def request_head(length: int | None) -> bytes:
    framing = f"Content-Length: {length}" if length is not None else "Transfer-Encoding: chunked"
    return (
        f"POST {PATH} HTTP/1.1\r\nHost: llm.team.svc\r\nContent-Type: application/octet-stream\r\n"
        f"{framing}\r\nConnection: close\r\n\r\n"
    ).encode()


async def test_a_million_byte_body_arrives_whole_at_the_replica(
    start_activator: StartActivator, recorder: Recorder, session: aiohttp.ClientSession
) -> None:
    activator = await start_activator()
    activator.chute(KEY, endpoints=(recorder.endpoint,))
    body = bytes(range(256)) * 3906 + b"x" * 64  # 1,000,000 bytes
    assert len(body) == 1_000_000
    async with session.post(activator.url(), data=body, headers={"Host": "llm.team.svc"}) as response:
        assert response.status == 200
    assert recorder.received == [digest(body)]


async def test_a_body_sent_in_two_segments_with_a_pause_arrives_whole(
    start_activator: StartActivator, recorder: Recorder
) -> None:
    activator = await start_activator()
    activator.chute(KEY, endpoints=(recorder.endpoint,))
    body = b"a" * 100 + b"b" * 5000
    answer = await send_raw(activator, request_head(len(body)), [body[:100], body[100:]])
    assert answer.startswith(b"HTTP/1.1 200")
    assert recorder.received == [digest(body)]


async def test_a_chunked_body_in_segments_arrives_whole(
    start_activator: StartActivator, recorder: Recorder
) -> None:
    activator = await start_activator()
    activator.chute(KEY, endpoints=(recorder.endpoint,))
    pieces = [b"first " * 50, b"second " * 300, b"third"]
    chunks = [b"%x\r\n%b\r\n" % (len(piece), piece) for piece in pieces] + [b"0\r\n\r\n"]
    answer = await send_raw(activator, request_head(None), chunks)
    assert answer.startswith(b"HTTP/1.1 200")
    assert recorder.received == [digest(b"".join(pieces))]


async def test_a_body_over_the_limit_is_413_with_a_json_reason_even_when_chunked(
    start_activator: StartActivator, recorder: Recorder
) -> None:
    activator = await start_activator()  # the tests' limit: 1 MiB
    activator.chute(KEY, endpoints=(recorder.endpoint,))
    piece = b"z" * (600 * 1024)
    chunks = [b"%x\r\n%b\r\n" % (len(piece), piece)] * 2 + [b"0\r\n\r\n"]
    answer = await send_raw(activator, request_head(None), chunks, pause=0.05)
    assert answer.startswith(b"HTTP/1.1 413")
    assert b'"reason": "BodyTooLarge"' in answer
    assert recorder.received == []


async def test_bodies_held_across_requests_are_bounded_one_more_gets_503_with_retry_after_never_cut(
    start_activator: StartActivator, recorder: Recorder, session: aiohttp.ClientSession
) -> None:
    activator = await start_activator(max_held_body_bytes=1_500_000, default_retry_after=7)
    activator.chute(KEY)  # at zero: bodies are held
    body = b"q" * 1_000_000
    host = {"Host": "llm.team.svc"}

    async def post() -> tuple[int, str | None, bytes]:
        async with session.post(activator.url(), data=body, headers=host) as response:
            return response.status, response.headers.get("Retry-After"), await response.read()

    held = asyncio.create_task(post())
    async with asyncio.timeout(10):
        while activator.holder.waiting() != [KEY]:  # noqa: ASYNC110 (another task holds it)
            await asyncio.sleep(0.01)
    status, retry_after, answer = await post()
    assert (status, retry_after) == (503, "7")
    assert json.loads(answer)["error"]["reason"] == "HeldBytesFull"
    activator.chute(KEY, endpoints=(recorder.endpoint,))  # awake
    assert (await held)[0] == 200
    assert (await post())[0] == 200  # the bytes were given back
    assert recorder.received == [digest(body)] * 2


async def test_a_client_that_stalls_mid_body_gets_408_and_gives_its_held_bytes_back(
    start_activator: StartActivator, recorder: Recorder, session: aiohttp.ClientSession
) -> None:
    """A client that announces a Content-Length and then sends nothing (or trickles) kept its share
    of the held bytes for as long as it liked: a few such connections refused every other body."""
    activator = await start_activator(max_held_body_bytes=1000)
    start_activator.activators[-1].body_timeout = 0.5
    activator.chute(KEY, endpoints=(recorder.endpoint,))
    head = f"POST {PATH} HTTP/1.1\r\nHost: llm.team.svc\r\nContent-Length: 1000\r\n\r\n".encode()
    reader, writer = await asyncio.open_connection(LOOPBACK, activator.port)
    try:
        writer.write(head + b"x" * 10)
        async with asyncio.timeout(5):
            answer = await reader.read(65536)
    finally:
        writer.close()
    assert answer.startswith(b"HTTP/1.1 408")
    assert b"BodyTimeout" in answer
    assert start_activator.activators[-1].held.held == 0
    async with session.post(activator.url(PATH), data=b"y" * 1000, headers={"Host": "llm.team.svc"}) as r:
        assert r.status == 200  # the stalled client's bytes were given back
    assert recorder.received == [digest(b"y" * 1000)]


async def test_a_body_whose_replica_answered_is_freed_while_the_answer_streams(
    start_activator: StartActivator, session: aiohttp.ClientSession
) -> None:
    """A body stops counting against --max-held-body-bytes once its replica answers, so it must stop
    taking memory then too: it stayed referenced until a streamed answer (minutes of tokens) ended,
    so streams with large prompts took memory past the bound (an OOM kill loses every held request)."""
    size = 16 * 1024 * 1024
    activator = await start_activator()
    start_activator.activators[-1].max_body_bytes = 2 * size
    streaming, finish = asyncio.Event(), asyncio.Event()

    async def stream(request: web.Request) -> web.StreamResponse:
        while await request.content.readany():  # read, not kept
            pass
        response = web.StreamResponse()
        await response.prepare(request)
        await response.write(b"data: first\n\n")
        streaming.set()
        await finish.wait()
        await response.write(b"data: [DONE]\n\n")
        return response

    app = web.Application(client_max_size=1 << 30)
    app.router.add_post(PATH, stream)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    await web.TCPSite(runner, LOOPBACK, 0).start()
    activator.chute(KEY, endpoints=(f"{LOOPBACK}:{runner.addresses[0][1]}",))
    payload = b"p" * size
    tracemalloc.start()
    try:
        before = tracemalloc.get_traced_memory()[0]
        async with session.post(activator.url(PATH), data=payload, headers={"Host": "llm.team.svc"}) as r:
            assert r.status == 200
            assert await r.content.readuntil(b"\n\n") == b"data: first\n\n"
            await asyncio.wait_for(streaming.wait(), 5)
            gc.collect()
            during = tracemalloc.get_traced_memory()[0] - before
            finish.set()
            assert (await r.read()).endswith(b"[DONE]\n\n")
    finally:
        tracemalloc.stop()
        finish.set()
        await runner.cleanup()
    assert during < size // 2, f"{during} bytes still traced while the answer streams"


async def test_a_head_that_only_announces_a_large_body_does_not_refuse_other_chutes_bodies(
    start_activator: StartActivator, recorder: Recorder, session: aiohttp.ClientSession
) -> None:
    activator = await start_activator(max_held_body_bytes=1_000_000)
    other = ("team-b", "other")
    activator.chute(KEY)  # at zero, reached through its public LoadBalancer by anyone
    activator.chute(other, endpoints=(recorder.endpoint,))
    head = f"POST {PATH} HTTP/1.1\r\nHost: x\r\nContent-Length: 1000000\r\n\r\n".encode()
    _, writer = await asyncio.open_connection(LOOPBACK, activator.port_of(KEY))
    try:
        writer.write(head)  # and not one byte of the body, well within the body timeout
        await writer.drain()
        await asyncio.sleep(0.3)  # the head is read: its body is awaited
        assert start_activator.activators[-1].held.held == 0  # nothing arrived, nothing held
        async with session.post(activator.url(PATH, key=other), data=b"y" * 10) as response:
            status = response.status
    finally:
        writer.close()
    assert status == 200, "another Chute's 10-byte body was refused: held bytes nobody sent"
