"""``Expect: 100-continue`` (curl sends it for bodies over 1 KiB): ``100 Continue`` at once, never a
client left to wait for its own timeout (curl's: 1 s) before it sends the body."""

from __future__ import annotations

import asyncio
import hashlib
import json

from tests.raw_http import read_until_closed
from tests.unit.chute_sidecar.conftest import LOOPBACK, StartSidecar

CONTINUE_WITHIN = 0.5
"""Well under curl's 1 s: the interim answer comes at once, or not at all."""


async def expect_continue(port: int, path: str, body: bytes, extra: str = "") -> tuple[bytes, bytes]:
    """Send the head with ``Expect: 100-continue``, wait for ``HTTP/1.1 100`` (at most
    :data:`CONTINUE_WITHIN`), then the body; the interim answer and the final one (or the final
    answer that came instead of the interim one, and nothing)."""
    reader, writer = await asyncio.open_connection(LOOPBACK, port)
    try:
        writer.write(
            f"POST {path} HTTP/1.1\r\nHost: {LOOPBACK}\r\nContent-Type: application/octet-stream\r\n"
            f"Content-Length: {len(body)}\r\nExpect: 100-continue\r\n{extra}"
            "Connection: close\r\n\r\n".encode()
        )
        await writer.drain()
        async with asyncio.timeout(CONTINUE_WITHIN):
            interim = await reader.readuntil(b"\r\n\r\n")
        if not interim.startswith(b"HTTP/1.1 100"):
            return interim, b""  # a final answer instead: the body is not sent
        writer.write(body)
        await writer.drain()
        final = await read_until_closed(reader)
        return interim, final
    finally:
        writer.close()


async def test_the_serving_port_answers_100_continue_at_once_then_forwards_the_body(
    start_sidecar: StartSidecar,
) -> None:
    running = await start_sidecar()
    body = b"e" * 4096
    interim, final = await expect_continue(running.sidecar.port, "/echo", body)
    assert interim.startswith(b"HTTP/1.1 100")
    assert final.startswith(b"HTTP/1.1 200")
    echoed = json.loads(final.split(b"\r\n\r\n", 1)[1])
    assert echoed["sha256"] == hashlib.sha256(body).hexdigest()
