"""The request target a client writes never chooses where the activator sends the request: it goes to
the ready replica of the port's Chute, at the path the client asked for, or nowhere."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import pytest

from tests.raw_http import read_until_closed
from tests.unit.chute_activator.conftest import LOOPBACK, StartActivator

A = ("team-a", "llm")


class Listener:
    """A loopback server that records the first bytes of every connection it gets and answers 200."""

    def __init__(self) -> None:
        self.received: list[bytes] = []
        self.server: asyncio.Server | None = None

    async def start(self) -> int:
        async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
            self.received.append(await reader.read(4096))
            writer.write(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\nConnection: close\r\n\r\nok")
            await writer.drain()
            writer.close()

        self.server = await asyncio.start_server(handle, LOOPBACK, 0)
        port: int = self.server.sockets[0].getsockname()[1]
        return port


@pytest.fixture
async def listeners() -> AsyncIterator[list[Listener]]:
    made: list[Listener] = []
    yield made
    for listener in made:
        if listener.server is not None:
            listener.server.close()


@pytest.mark.xfail(
    strict=True,
    reason="forward() builds the upstream URL as f'http://{endpoint}{request.raw_path}': a CONNECT whose "
    "authority-form target starts with '@' turns the replica's address into userinfo, and the request "
    "goes to whatever host:port the client named (SSRF from every Chute's activator port)",
)
async def test_a_connect_target_naming_another_address_never_reaches_it(
    start_activator: StartActivator, listeners: list[Listener]
) -> None:
    replica, elsewhere = Listener(), Listener()
    listeners += [replica, elsewhere]
    replica_port, elsewhere_port = await replica.start(), await elsewhere.start()
    activator = await start_activator()
    activator.chute(A, endpoints=(f"{LOOPBACK}:{replica_port}",))
    reader, writer = await asyncio.open_connection(LOOPBACK, activator.port_of(A))
    writer.write(
        f"CONNECT @{LOOPBACK}:{elsewhere_port} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n".encode()
    )
    await writer.drain()
    await read_until_closed(reader)
    writer.close()
    assert elsewhere.received == [], f"the activator sent a client's request elsewhere: {elsewhere.received}"
