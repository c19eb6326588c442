"""The upstream response parser, h11 style: every answer fed whole, byte by byte, and with trailing
bytes; the result must not depend on how the bytes were cut."""

from __future__ import annotations

from collections.abc import Callable

import pytest

from chute_sidecar.upstream import Connection, Pool, ProtocolError

REQUEST = b"GET / HTTP/1.1\r\nHost: model\r\n\r\n"
TRAILING = b"HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n"  # a second, unasked-for response


class _Transport:
    """The socket side of a connection: what the parser writes, and whether it closed."""

    def __init__(self) -> None:
        self.written = b""
        self.closed = False

    def write(self, data: bytes) -> None:
        self.written += data

    def close(self) -> None:
        self.closed = True

    def pause_reading(self) -> None:
        pass

    def resume_reading(self) -> None:
        pass


class Parsed:
    def __init__(self, status: int, headers: dict[str, list[str]], body: bytes, reusable: bool) -> None:
        self.status, self.headers, self.body, self.reusable = status, headers, body, reusable


async def _parse(parts: list[bytes], head_only: bool = False) -> Parsed:
    pool = Pool("127.0.0.1", 9, max_idle=1)
    connection = Connection(pool)
    connection.connection_made(_Transport())  # type: ignore[arg-type]
    pending = connection.begin(REQUEST, head_only)
    for part in parts:
        connection.data_received(part)
    response = await pending
    body = b""
    while chunk := await response.read():
        body += chunk
    headers: dict[str, list[str]] = {}
    for name, value in response.headers.items():
        headers.setdefault(name.lower(), []).append(value)
    return Parsed(response.status, headers, body, connection.reusable())


def _whole(data: bytes) -> list[bytes]:
    return [data]


def _bytewise(data: bytes) -> list[bytes]:
    return [data[i : i + 1] for i in range(len(data))]


FEEDS: list[Callable[[bytes], list[bytes]]] = [_whole, _bytewise]

VALID = {
    "content-length": (
        b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\nX-A: 1\r\n\r\nhello",
        200,
        b"hello",
        True,
    ),
    "chunked-with-extension-and-trailer": (
        b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n"
        b"5;ext=1\r\nhello\r\n6\r\n world\r\n0\r\nX-Trailer: t\r\n\r\n",
        200,
        b"hello world",
        True,
    ),
    # RFC 9112 6.3: Transfer-Encoding wins; Content-Length is dropped and the connection not reused
    "chunked-and-content-length": (
        b"HTTP/1.1 200 OK\r\nContent-Length: 3\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n0\r\n\r\n",
        200,
        b"hello",
        False,
    ),
    "repeated-equal-content-length": (
        b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\nContent-Length: 2\r\n\r\nok",
        200,
        b"ok",
        True,
    ),
    "content-length-list-of-equal-values": (
        b"HTTP/1.1 200 OK\r\nContent-Length: 2, 2\r\n\r\nok",
        200,
        b"ok",
        True,
    ),
    "interim-then-final": (
        b"HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 103 Early Hints\r\nLink: </a>\r\n\r\n"
        b"HTTP/1.1 201 Created\r\nContent-Length: 2\r\n\r\nok",
        201,
        b"ok",
        True,
    ),
    "no-content": (b"HTTP/1.1 204 No Content\r\n\r\n", 204, b"", True),
    "http-1.0-close": (b"HTTP/1.0 200 OK\r\nContent-Length: 2\r\n\r\nok", 200, b"ok", False),
    "connection-close": (
        b"HTTP/1.1 200 OK\r\nConnection: close\r\nContent-Length: 2\r\n\r\nok",
        200,
        b"ok",
        False,
    ),
}


@pytest.mark.parametrize("feed", FEEDS, ids=lambda f: f.__name__.strip("_"))
@pytest.mark.parametrize(("answer", "status", "body", "reusable"), VALID.values(), ids=VALID.keys())
async def test_valid_answers(
    feed: Callable[[bytes], list[bytes]], answer: bytes, status: int, body: bytes, reusable: bool
) -> None:
    parsed = await _parse(feed(answer))
    assert (parsed.status, parsed.body, parsed.reusable) == (status, body, reusable)
    if b"Transfer-Encoding" in answer:
        assert "content-length" not in parsed.headers  # never forwarded beside the decoded body
    elif parsed.body:
        assert parsed.headers["content-length"] == [str(len(body))]  # one value, the right one


@pytest.mark.parametrize("feed", FEEDS, ids=lambda f: f.__name__.strip("_"))
@pytest.mark.parametrize(("answer", "status", "body", "reusable"), VALID.values(), ids=VALID.keys())
async def test_trailing_bytes_never_pass_as_a_response(
    feed: Callable[[bytes], list[bytes]], answer: bytes, status: int, body: bytes, reusable: bool
) -> None:
    """Bytes after a complete response (the model sent more than it framed): the exchange fails,
    the connection is dropped, nothing of the extra bytes reaches the client as body."""
    received: list[bytes] = []
    pool = Pool("127.0.0.1", 9, max_idle=1)
    connection = Connection(pool)
    transport = _Transport()
    connection.connection_made(transport)  # type: ignore[arg-type]
    pending = connection.begin(REQUEST, False)
    for part in feed(answer + TRAILING):
        connection.data_received(part)

    async def read_all() -> None:
        response = await pending
        while chunk := await response.read():
            received.append(chunk)

    with pytest.raises(ProtocolError):
        await read_all()
    assert b"".join(received) == body
    assert transport.closed
    assert not connection.reusable()


async def test_head_answer_has_no_body_whatever_it_declares() -> None:
    for feed in FEEDS:
        parsed = await _parse(feed(b"HTTP/1.1 200 OK\r\nContent-Length: 1234\r\n\r\n"), head_only=True)
        assert (parsed.status, parsed.body, parsed.headers["content-length"]) == (200, b"", ["1234"])


INVALID = {
    "not-http": b"SSH-2.0-OpenSSH\r\n\r\n",
    "bad-status": b"HTTP/1.1 abc OK\r\n\r\n",
    "bad-content-length": b"HTTP/1.1 200 OK\r\nContent-Length: x\r\n\r\n",
    "negative-content-length": b"HTTP/1.1 200 OK\r\nContent-Length: -1\r\n\r\n",
    "conflicting-content-lengths": b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\nContent-Length: 3\r\n\r\nok!",
    "conflicting-content-length-list": b"HTTP/1.1 200 OK\r\nContent-Length: 2, 3\r\n\r\nok!",
    "header-without-colon": b"HTTP/1.1 200 OK\r\nbad header line\r\n\r\n",
    "space-before-colon": b"HTTP/1.1 200 OK\r\nX-A : 1\r\n\r\n",
    "unsupported-transfer-coding": b"HTTP/1.1 200 OK\r\nTransfer-Encoding: gzip\r\n\r\nxx",
    "bad-chunk-size": b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n",
    "content-length-not-ascii-digit": b"HTTP/1.1 200 OK\r\nContent-Length: \xb2\r\n\r\nok",
    "content-length-plus-sign": b"HTTP/1.1 200 OK\r\nContent-Length: +2\r\n\r\nok",
    "chunk-size-0x-prefix": b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n0x2\r\nok\r\n0\r\n\r\n",
    "chunk-size-underscore": b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n0_2\r\nok\r\n0\r\n\r\n",
    "chunk-size-signed": b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n+2\r\nok\r\n0\r\n\r\n",
    "chunk-without-crlf": b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n2\r\nokXX0\r\n\r\n",
}


@pytest.mark.parametrize("feed", FEEDS, ids=lambda f: f.__name__.strip("_"))
@pytest.mark.parametrize("answer", INVALID.values(), ids=INVALID.keys())
async def test_invalid_answers_raise(feed: Callable[[bytes], list[bytes]], answer: bytes) -> None:
    with pytest.raises(ProtocolError):
        await _parse(feed(answer))
