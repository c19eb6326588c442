"""The sidecar's HTTP/1.1 client against raw loopback servers that answer with exact bytes."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Awaitable, Callable

import aiohttp
import pytest

from chute_sidecar.upstream import Exchange, Pool, ProtocolError, request_head

from .conftest import LOOPBACK, Running, StartSidecar, Stub

Script = Callable[[asyncio.StreamReader, asyncio.StreamWriter], Awaitable[None]]


async def _read_head(reader: asyncio.StreamReader) -> bytes:
    return await reader.readuntil(b"\r\n\r\n")


@pytest.fixture
async def raw_server() -> AsyncIterator[Callable[[Script], Awaitable[int]]]:
    servers: list[asyncio.Server] = []

    async def start(script: Script) -> int:
        async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
            try:
                await script(reader, writer)
            except (ConnectionError, asyncio.IncompleteReadError):
                pass
            finally:
                writer.close()

        server = await asyncio.start_server(handle, LOOPBACK, 0)
        servers.append(server)
        port: int = server.sockets[0].getsockname()[1]
        return port

    yield start
    for server in servers:
        server.close()
        await server.wait_closed()


async def _get(pool: Pool, path: str = "/", method: str = "GET") -> tuple[int, dict[str, str], bytes]:
    head = request_head(method, path, pool.host_header, [])
    async with Exchange(pool, head, None, head_only=method == "HEAD") as response:
        parts = []
        while chunk := await response.read():
            parts.append(chunk)
        return response.status, dict(response.headers), b"".join(parts)


async def test_chunked_with_extensions_and_trailers(raw_server: Callable[[Script], Awaitable[int]]) -> None:
    async def script(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        for _ in range(2):  # two exchanges on one keep-alive connection
            await _read_head(reader)
            writer.write(b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\nX-A: 1\r\n\r\n")
            for piece in (b"5;ext=1\r\nhel", b"lo\r\n", b"6\r\n world\r\n0\r\nX-Trailer: t\r\n\r\n"):
                writer.write(piece)
                await writer.drain()
                await asyncio.sleep(0.01)

    pool = Pool(LOOPBACK, await raw_server(script), max_idle=2)
    for _ in range(2):
        status, headers, body = await _get(pool)
        assert (status, headers["X-A"], body) == (200, "1", b"hello world")
    assert len(pool._idle) == 1  # the same connection served both


async def test_interim_response_then_body_until_close(raw_server: Callable[[Script], Awaitable[int]]) -> None:
    async def script(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await _read_head(reader)
        writer.write(
            b"HTTP/1.1 100 Continue\r\n\r\nHTTP/1.0 200 OK\r\nContent-Type: text/plain\r\n\r\nall of"
        )
        await writer.drain()
        writer.write(b" it")

    pool = Pool(LOOPBACK, await raw_server(script), max_idle=2)
    status, _, body = await _get(pool)
    assert (status, body) == (200, b"all of it")
    assert pool._idle == []  # read-until-close connections are not reused


async def test_head_and_no_content_have_no_body(raw_server: Callable[[Script], Awaitable[int]]) -> None:
    async def script(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await _read_head(reader)
        writer.write(b"HTTP/1.1 200 OK\r\nContent-Length: 1234\r\n\r\n")
        await _read_head(reader)
        writer.write(b"HTTP/1.1 204 No Content\r\n\r\n")
        await _read_head(reader)
        writer.write(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok")
        await writer.drain()
        await asyncio.sleep(1)

    pool = Pool(LOOPBACK, await raw_server(script), max_idle=2)
    assert await _get(pool, method="HEAD") == (200, {"Content-Length": "1234"}, b"")
    assert (await _get(pool))[0::2] == (204, b"")
    assert (await _get(pool))[0::2] == (200, b"ok")


@pytest.mark.parametrize(
    "answer",
    [
        b"SSH-2.0-OpenSSH\r\n\r\n",
        b"HTTP/1.1 abc OK\r\n\r\n",
        b"HTTP/1.1 200 OK\r\nContent-Length: x\r\n\r\n",
        b"HTTP/1.1 200 OK\r\nbad header line\r\n\r\n",
        b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n",
        b"HTTP/1.1 200 OK\r\nContent-Length: 10\r\n\r\nshort",
        b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok-and-more",
    ],
)
async def test_malformed_answers_raise(raw_server: Callable[[Script], Awaitable[int]], answer: bytes) -> None:
    async def script(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await _read_head(reader)
        writer.write(answer)

    pool = Pool(LOOPBACK, await raw_server(script), max_idle=2)
    with pytest.raises(ProtocolError):
        await _get(pool)
    assert pool._idle == []


async def test_stale_keepalive_connection_is_retried(raw_server: Callable[[Script], Awaitable[int]]) -> None:
    """The server closes each connection after one answer without saying so."""
    connections = 0

    async def script(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        nonlocal connections
        connections += 1
        await _read_head(reader)
        writer.write(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok")
        await writer.drain()

    pool = Pool(LOOPBACK, await raw_server(script), max_idle=2)
    for _ in range(3):
        assert (await _get(pool))[0::2] == (200, b"ok")
    assert connections == 3


async def test_early_answer_before_the_upload_ends(
    raw_server: Callable[[Script], Awaitable[int]], start_sidecar: StartSidecar, stub: Stub
) -> None:
    """A model that refuses a body without reading it: the client still gets the model's answer."""

    async def script(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await _read_head(reader)
        writer.write(b"HTTP/1.1 413 Payload Too Large\r\nContent-Length: 4\r\nConnection: close\r\n\r\nnope")
        await writer.drain()
        await asyncio.sleep(0.2)

    port = await raw_server(script)
    running = await start_sidecar(upstream=f"http://{LOOPBACK}:{port}")
    async with running.session.post(running.url("/upload"), data=b"x" * (4 * 1024 * 1024)) as response:
        assert response.status == 413
        assert await response.read() == b"nope"


async def test_slow_client_backpressure_keeps_the_stream_whole(sidecar: Running) -> None:
    size = 8 * 1024 * 1024
    async with (
        aiohttp.ClientSession(read_bufsize=4096) as session,
        session.get(sidecar.url(f"/big?size={size}")) as response,
    ):
        received = 0
        while chunk := await response.content.read(65536):
            received += len(chunk)
            if received < 512 * 1024:
                await asyncio.sleep(0.005)  # a slow reader at first: the sidecar must pause, not drop
    assert received == size


async def test_chunked_and_content_length_reach_the_client_well_framed(
    raw_server: Callable[[Script], Awaitable[int]], start_sidecar: StartSidecar, stub: Stub
) -> None:
    """RFC 9112 6.3: Transfer-Encoding wins over a Content-Length that lies about the body."""

    async def script(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        while True:
            await _read_head(reader)
            writer.write(
                b"HTTP/1.1 200 OK\r\nContent-Length: 3\r\nTransfer-Encoding: chunked\r\n\r\n"
                b"5\r\nhello\r\n6\r\n world\r\n0\r\n\r\n"
            )
            await writer.drain()

    port = await raw_server(script)
    running = await start_sidecar(upstream=f"http://{LOOPBACK}:{port}")
    for _ in range(2):  # the same client connection carries a second exchange intact
        async with running.session.get(running.url("/x")) as response:
            assert response.status == 200
            assert await response.read() == b"hello world"
            assert response.headers.get("Content-Length") in (None, "11")


@pytest.mark.parametrize(("method", "replayed"), [("GET", True), ("DELETE", True), ("POST", False)])
async def test_only_idempotent_requests_are_replayed_on_a_stale_connection(
    raw_server: Callable[[Script], Awaitable[int]], method: str, replayed: bool
) -> None:
    """A reused connection that the model closed as the request arrived: the model may have acted on
    it, so only a request that is safe to repeat (RFC 9110 9.2.2) is sent again, on a new connection."""
    received: list[bytes] = []

    async def script(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        head = await _read_head(reader)
        received.append(head.split(b" ", 1)[0])
        writer.write(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok")
        await writer.drain()
        if len(received) == 1:  # the first connection: read the next request, then close unanswered
            head = await _read_head(reader)
            received.append(head.split(b" ", 1)[0])

    pool = Pool(LOOPBACK, await raw_server(script), max_idle=2)
    assert (await _get(pool))[0::2] == (200, b"ok")
    if replayed:
        assert (await _get(pool, method=method))[0::2] == (200, b"ok")
        assert received == [b"GET", method.encode(), method.encode()]
    else:
        with pytest.raises(ProtocolError):
            await _get(pool, method=method)
        assert received == [b"GET", method.encode()]
