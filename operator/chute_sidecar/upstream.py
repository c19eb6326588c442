"""A lean HTTP/1.1 client for the one upstream: the model server on loopback.

Why not ``aiohttp.ClientSession``: on the benchmark machine a minimal proxy built on it needed twice
the CPU per request of the same proxy built on this client (httpx: 15 times; see
docs/benchmarks/sidecar.md), and the sidecar needs none of its features (cookies, redirects, TLS,
proxies, decompression). This client keeps a LIFO pool of keep-alive
connections, writes request heads as raw bytes, streams request bodies with flow control, and hands
response bodies over as they arrive (Content-Length, chunked, or until close), pausing the socket
when the reader falls behind.
"""

from __future__ import annotations

import asyncio
import collections
import time
from collections.abc import AsyncIterator, Iterable

from multidict import CIMultiDict

MAX_HEAD = 64 * 1024
HIGH_WATER = 256 * 1024  # buffered response bytes before the socket is paused


class UpstreamError(Exception):
    """The model server could not be reached or answered with something that is not HTTP/1.x."""


class ConnectError(UpstreamError):
    """No connection could be made."""


class ProtocolError(UpstreamError):
    """The connection broke or the response was malformed."""


class _Stale(ProtocolError):
    """A reused connection closed before any byte of the response: a bodyless idempotent request may
    be sent again; any other may have been acted on by the model."""


_HEAD, _LENGTH, _CHUNK_SIZE, _CHUNK_DATA, _CHUNK_CRLF, _TRAILERS, _UNTIL_CLOSE, _DONE = range(8)
_NO_BODY_STATUS = frozenset({204, 304})
_HEX_DIGITS = b"0123456789abcdefABCDEF"
_IDEMPOTENT = frozenset({b"GET", b"HEAD", b"OPTIONS", b"TRACE", b"PUT", b"DELETE"})  # RFC 9110 9.2.2


def _digits(text: str) -> bool:
    return text.isascii() and text.isdigit()  # isdigit alone takes "²"


def _content_length(values: list[str], headers: CIMultiDict[str]) -> int:
    """The one length that repeated fields or a list (``2, 2``) agree on (RFC 9110 8.6), left as a
    single field in ``headers``; :class:`ProtocolError` for anything else."""
    if len(values) == 1 and _digits(values[0]):
        return int(values[0])
    parts = {part.strip() for value in values for part in value.split(",")}
    if len(parts) != 1 or not _digits(length := parts.pop()):
        raise ProtocolError(f"bad Content-Length {values!r}")
    headers["Content-Length"] = length  # replaces every field of that name
    return int(length)


class Response:
    """Status, headers and a body read with :meth:`read` (``b""`` at the end)."""

    __slots__ = ("_connection", "headers", "reason", "status", "version")

    def __init__(
        self, connection: Connection, status: int, reason: str, version: str, headers: CIMultiDict[str]
    ) -> None:
        self._connection = connection
        self.status = status
        self.reason = reason
        self.version = version
        self.headers = headers

    async def read(self) -> bytes:
        """The next part of the body as it arrived; ``b""`` once complete. Raises :class:`ProtocolError`."""
        return await self._connection.read_body()

    def ready(self) -> bool:
        """Whether :meth:`read` would return without waiting for the network."""
        return self._connection.body_ready()


class Connection(asyncio.Protocol):
    """One connection to the model server, one exchange at a time."""

    def __init__(self, pool: Pool) -> None:
        self.pool = pool
        self.loop = pool.loop
        self.transport: asyncio.Transport | None = None
        self.closed = False
        self.reused = False
        self.idle_since = 0.0
        self._buffer = bytearray()
        self._state = _DONE
        self._remaining = 0
        self._keep_alive = False
        self._head_only = False
        self._head: asyncio.Future[Response] | None = None
        self._chunks: collections.deque[bytes] = collections.deque()
        self._buffered = 0
        self._reading_paused = False
        self._body_waiter: asyncio.Future[None] | None = None
        self._error: BaseException | None = None
        self._received_any = False
        self._write_paused = False
        self._drain_waiter: asyncio.Future[None] | None = None

    # -- asyncio.Protocol -------------------------------------------------------------
    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]  # uvloop's transports are no subclass

    def connection_lost(self, exc: Exception | None) -> None:
        self.closed = True
        self.transport = None
        if self._state == _UNTIL_CLOSE:
            self._finish()
        elif self._state != _DONE:
            stale = self.reused and not self._received_any
            error = (_Stale if stale else ProtocolError)(
                f"model server closed the connection: {exc or 'EOF'}"
            )
            self._fail(error)
        self._wake_drain()

    def pause_writing(self) -> None:
        self._write_paused = True

    def resume_writing(self) -> None:
        self._write_paused = False
        self._wake_drain()

    def data_received(self, data: bytes) -> None:
        self._received_any = True
        state = self._state
        if state == _LENGTH and not self._buffer and len(data) <= self._remaining:
            self._remaining -= len(data)  # fast path: body bytes straight through
            self._push(data)
            if self._remaining == 0:
                self._finish()
            return
        if state == _UNTIL_CLOSE:
            self._push(data)
            return
        if state == _DONE:
            self._fail(ProtocolError("unexpected data from the model server"))
            return
        self._buffer += data
        try:
            self._parse()
        except ProtocolError as error:
            self._fail(error)

    # -- parsing ----------------------------------------------------------------------
    def _parse(self) -> None:
        buffer = self._buffer
        while buffer:
            state = self._state
            if state == _HEAD:
                end = buffer.find(b"\r\n\r\n")
                if end < 0:
                    if len(buffer) > MAX_HEAD:
                        raise ProtocolError("response head too large")
                    return
                head = bytes(buffer[:end])
                del buffer[: end + 4]
                self._parse_head(head)
            elif state == _LENGTH:
                take = min(self._remaining, len(buffer))
                self._push(bytes(buffer[:take]))
                del buffer[:take]
                self._remaining -= take
                if self._remaining == 0:
                    self._finish()
            elif state == _CHUNK_SIZE:
                end = buffer.find(b"\r\n")
                if end < 0:
                    if len(buffer) > 1024:
                        raise ProtocolError("chunk size line too long")
                    return
                digits = bytes(buffer[:end]).split(b";", 1)[0].rstrip(b" \t")
                if not digits or digits.translate(None, _HEX_DIGITS):  # int() would take 0x, +, _
                    raise ProtocolError("bad chunk size")
                del buffer[: end + 2]
                size = int(digits, 16)
                self._remaining = size
                self._state = _CHUNK_DATA if size else _TRAILERS
            elif state == _CHUNK_DATA:
                take = min(self._remaining, len(buffer))
                self._push(bytes(buffer[:take]))
                del buffer[:take]
                self._remaining -= take
                if self._remaining == 0:
                    self._state = _CHUNK_CRLF
            elif state == _CHUNK_CRLF:
                if len(buffer) < 2:
                    return
                if buffer[:2] != b"\r\n":
                    raise ProtocolError("missing CRLF after chunk")
                del buffer[:2]
                self._state = _CHUNK_SIZE
            elif state == _TRAILERS:
                end = buffer.find(b"\r\n")
                if end < 0:
                    if len(buffer) > MAX_HEAD:
                        raise ProtocolError("trailers too large")
                    return
                del buffer[: end + 2]
                if end == 0:
                    self._finish()
            elif state == _UNTIL_CLOSE:
                self._push(bytes(buffer))
                buffer.clear()
            else:  # _DONE with bytes left over: the server sent more than one response
                raise ProtocolError("unexpected data after the response")

    def _parse_head(self, head: bytes) -> None:
        lines = head.decode("latin-1").split("\r\n")
        status_line = lines[0]
        if not status_line.startswith("HTTP/1.") or len(status_line) < 12:
            raise ProtocolError(f"not an HTTP/1.x response: {status_line[:40]!r}")
        try:
            status = int(status_line[9:12])
        except ValueError:
            raise ProtocolError("bad status code") from None
        if 100 <= status < 200:  # interim (100 Continue, 103 Early Hints): wait for the real one
            return
        version = status_line[5:8]
        headers: CIMultiDict[str] = CIMultiDict()
        add = headers.add
        for line in lines[1:]:
            name, sep, value = line.partition(":")
            if not sep or not name or name[-1] in " \t" or name[0] in " \t":
                raise ProtocolError("malformed header line")
            add(name, value.strip())
        connection = headers.get("Connection", "").lower()
        self._keep_alive = "close" not in connection if version == "1.1" else "keep-alive" in connection
        transfer = headers.get("Transfer-Encoding")
        lengths = headers.getall("Content-Length", None)
        if self._head_only or status in _NO_BODY_STATUS:
            self._state = _DONE
        elif transfer is not None:
            if transfer.lower().rsplit(",", 1)[-1].strip() != "chunked":
                raise ProtocolError(f"unsupported transfer coding {transfer!r}")
            if lengths is not None:
                # RFC 9112 6.3: Transfer-Encoding wins; a Content-Length must not travel on beside
                # the decoded body, and such a message is suspect: the connection is not reused
                del headers["Content-Length"]
                self._keep_alive = False
            self._state = _CHUNK_SIZE
        elif lengths is not None:
            self._remaining = _content_length(lengths, headers)
            self._state = _LENGTH if self._remaining else _DONE
        else:
            self._state = _UNTIL_CLOSE
            self._keep_alive = False
        response = Response(self, status, status_line[13:], version, headers)
        if self._state == _DONE:
            self._finish()
        if self._head is not None and not self._head.done():
            self._head.set_result(response)

    # -- body hand-over ---------------------------------------------------------------
    def _push(self, data: bytes) -> None:
        if not data:
            return
        self._chunks.append(data)
        self._buffered += len(data)
        transport = self.transport
        if self._buffered > HIGH_WATER and not self._reading_paused and transport is not None:
            self._reading_paused = True
            transport.pause_reading()
        self._wake_body()

    def _finish(self) -> None:
        self._state = _DONE
        if self._buffer:
            self._fail(ProtocolError("unexpected data after the response"))
            return
        self._wake_body()

    def fail(self, error: BaseException) -> None:
        """End the exchange with ``error`` (raised to whoever waits) and close the connection."""
        self._fail(error)

    def _fail(self, error: BaseException) -> None:
        if self._error is None:
            self._error = error
        self._state = _DONE
        self._keep_alive = False
        if self._head is not None and not self._head.done():
            self._head.set_exception(error)
        self._wake_body()
        if self.transport is not None:
            self.transport.close()

    def _wake_body(self) -> None:
        waiter = self._body_waiter
        if waiter is not None and not waiter.done():
            waiter.set_result(None)

    def _wake_drain(self) -> None:
        waiter = self._drain_waiter
        if waiter is not None and not waiter.done():
            waiter.set_result(None)

    def body_ready(self) -> bool:
        return bool(self._chunks) or self._state == _DONE or self._error is not None

    async def read_body(self) -> bytes:
        while not self._chunks:
            if self._error is not None:
                raise self._error
            if self._state == _DONE:
                return b""
            self._body_waiter = self.loop.create_future()
            await self._body_waiter
            self._body_waiter = None
        chunks = self._chunks
        if len(chunks) == 1:
            chunk = chunks.popleft()
        else:
            chunk = b"".join(chunks)
            chunks.clear()
        self._buffered = 0
        if self._reading_paused and self.transport is not None:
            self._reading_paused = False
            self.transport.resume_reading()
        return chunk

    # -- one exchange -----------------------------------------------------------------
    def reusable(self) -> bool:
        return not self.closed and self._keep_alive and self._state == _DONE and self._error is None

    async def drain(self) -> None:
        while self._write_paused and not self.closed:
            self._drain_waiter = self.loop.create_future()
            await self._drain_waiter
            self._drain_waiter = None
        if self.closed:
            raise ProtocolError("model server closed the connection while receiving the request body")

    def begin(self, head: bytes, head_only: bool) -> asyncio.Future[Response]:
        """Write the request head; the future resolves with the response head."""
        assert self.transport is not None  # nosec B101  # narrows the type: a connection begins once made
        self._state = _HEAD
        self._head_only = head_only
        self._received_any = False
        self._error = None
        self._chunks.clear()
        self._buffered = 0
        self._head = self.loop.create_future()
        self.transport.write(head)
        return self._head

    def close(self) -> None:
        self.closed = True
        if self.transport is not None:
            self.transport.close()


class Pool:
    """Keep-alive connections to one ``host:port``; never more idle ones than ``max_idle``."""

    def __init__(self, host: str, port: int, *, max_idle: int, keepalive_seconds: float = 4.0) -> None:
        self.host = host
        self.port = port
        self.max_idle = max_idle
        self.keepalive_seconds = keepalive_seconds
        self.loop = asyncio.get_running_loop()
        self._idle: list[Connection] = []
        self.host_header = f"{host}:{port}".encode("latin-1")

    async def _connect(self) -> Connection:
        try:
            _, connection = await self.loop.create_connection(lambda: Connection(self), self.host, self.port)
        except OSError as error:
            raise ConnectError(f"cannot connect to {self.host}:{self.port}: {error}") from error
        return connection

    async def acquire(self, fresh: bool = False) -> Connection:
        """The most recently used live connection (unless ``fresh``), or a new one."""
        now = time.monotonic()
        while self._idle and not fresh:
            connection = self._idle.pop()
            if not connection.closed and now - connection.idle_since < self.keepalive_seconds:
                connection.reused = True
                return connection
            connection.close()
        connection = await self._connect()
        connection.reused = False
        return connection

    def release(self, connection: Connection) -> None:
        """Back to the pool if the exchange ended cleanly, else closed."""
        if connection.reusable() and len(self._idle) < self.max_idle:
            connection.idle_since = time.monotonic()
            self._idle.append(connection)
        else:
            connection.close()

    def close(self) -> None:
        for connection in self._idle:
            connection.close()
        self._idle.clear()


def request_head(method: str, target: str, host: bytes, headers: Iterable[tuple[bytes, bytes]]) -> bytes:
    """``METHOD target HTTP/1.1`` with Host and the given raw headers."""
    parts = [f"{method} {target} HTTP/1.1\r\nHost: ".encode("latin-1"), host, b"\r\n"]
    for name, value in headers:
        parts += (name, b": ", value, b"\r\n")
    parts.append(b"\r\n")
    return b"".join(parts)


def _consume(task: asyncio.Task[None]) -> None:
    if not task.cancelled():
        task.exception()  # retrieved: a failed upload shows up as a failed exchange instead


class Exchange:
    """One request/response on a pooled connection: ``async with Exchange(...) as response``."""

    __slots__ = ("_body", "_connection", "_head", "_head_only", "_pool", "_writer")

    def __init__(
        self, pool: Pool, head: bytes, body: AsyncIterator[bytes] | None, head_only: bool = False
    ) -> None:
        self._pool = pool
        self._head = head
        self._body = body
        self._head_only = head_only
        self._connection: Connection | None = None
        self._writer: asyncio.Task[None] | None = None

    async def __aenter__(self) -> Response:
        fresh = False
        while True:
            connection = self._connection = await self._pool.acquire(fresh)
            pending = connection.begin(self._head, self._head_only)
            if self._body is not None:
                self._writer = writer = asyncio.ensure_future(_write_body(connection, self._body))
                writer.add_done_callback(_consume)
            try:
                return await pending
            except _Stale:
                self._cleanup()
                if fresh or self._body is not None or self._head.split(b" ", 1)[0] not in _IDEMPOTENT:
                    raise
                fresh = True  # a bodyless idempotent request is replayed once, on a new connection
            except BaseException:
                self._cleanup()
                raise

    async def __aexit__(self, *exc_info: object) -> None:
        self._cleanup()

    def _cleanup(self) -> None:
        connection, writer = self._connection, self._writer
        if connection is None:
            return
        self._connection = self._writer = None
        if writer is not None and (not writer.done() or writer.cancelled() or writer.exception() is not None):
            writer.cancel()  # the model answered before the upload ended, or the upload failed
            connection.close()
        self._pool.release(connection)


async def _write_body(connection: Connection, body: AsyncIterator[bytes]) -> None:
    try:
        async for chunk in body:
            transport = connection.transport
            if transport is None or connection.closed:
                raise ProtocolError("model server closed the connection while receiving the request body")
            transport.write(chunk)
            await connection.drain()
    except asyncio.CancelledError:
        raise
    except BaseException as error:
        connection.fail(error)  # the waiting exchange raises it
        raise
