"""A connection made while a port was one Chute's stays that Chute's: its next request never reaches
the Chute the port is given to afterwards."""

from __future__ import annotations

import asyncio
import json

from chute_activator.state import ChuteState
from tests.unit.chute_activator.conftest import LOOPBACK, StartActivator
from tests.unit.chute_activator.test_routing_by_port import Replica, replica

__all__ = ["replica"]

A, B = ("team-a", "llm"), ("team-b", "secret")


async def _answer(reader: asyncio.StreamReader) -> tuple[bytes, bytes]:
    """One answer on a kept-alive connection: its head and its Content-Length body (empty if closed)."""
    async with asyncio.timeout(5):
        head = await reader.readuntil(b"\r\n\r\n")
        length = next(
            int(line.split(b":", 1)[1])
            for line in head.split(b"\r\n")
            if line.lower().startswith(b"content-length")
        )
        return head, await reader.readexactly(length)


async def test_a_kept_alive_connection_never_reaches_the_chute_that_gets_its_port_later(
    start_activator: StartActivator, replica: Replica
) -> None:
    activator = await start_activator()
    port = activator.port_of(A)
    activator.holder.update(A, ChuteState(port=port, endpoints=(await replica("a"),), created="2026-01-01"))
    reader, writer = await asyncio.open_connection(LOOPBACK, port)
    request = b"POST /v1/completions HTTP/1.1\r\nHost: llm.team-a\r\nContent-Length: 2\r\n\r\n{}"
    writer.write(request)
    _, body = await _answer(reader)
    assert json.loads(body) == {"replica": "a"}
    # A goes to minInstances 1 (its status loses the port), B is created and given the port.
    activator.holder.update(A, ChuteState(port=None, endpoints=(await replica("a2"),), created="2026-01-01"))
    activator.holder.update(B, ChuteState(port=port, endpoints=(await replica("b"),), created="2026-02-01"))
    writer.write(request)  # the same client of A, on its kept-alive connection
    try:
        _, body = await _answer(reader)
    except (asyncio.IncompleteReadError, ConnectionError):
        body = b"{}"  # closed: the client opens a new connection, through A's own Service
    writer.close()
    assert json.loads(body) != {"replica": "b"}, "A's client got an answer from B's pods"
