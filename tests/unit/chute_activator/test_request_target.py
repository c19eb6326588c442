"""The request target a client writes never chooses where the activator sends the request: it goes to
the ready replica of the port's Chute, at the path the client asked for, or nowhere."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import pytest

from chute_activator.forward import upstream_url
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


@pytest.mark.parametrize(
    "target",
    [f"CONNECT @{LOOPBACK}:1 HTTP/1.1", f"GET http://{LOOPBACK}:1/x HTTP/1.1", "OPTIONS * HTTP/1.1"],
)
async def test_a_target_that_is_not_a_path_is_answered_400_by_the_activator(
    start_activator: StartActivator, listeners: list[Listener], target: str
) -> None:
    replica = Listener()
    listeners.append(replica)
    activator = await start_activator()
    activator.chute(A, endpoints=(f"{LOOPBACK}:{await replica.start()}",))
    reader, writer = await asyncio.open_connection(LOOPBACK, activator.port_of(A))
    writer.write(f"{target}\r\nHost: x\r\nConnection: close\r\n\r\n".encode())
    await writer.drain()
    answer = await read_until_closed(reader)
    writer.close()
    assert answer.startswith(b"HTTP/1.1 400"), answer[:200]
    assert b"BadRequestTarget" in answer
    assert replica.received == []


def test_the_replicas_url_keeps_the_replicas_host_whatever_the_path_says() -> None:
    assert str(upstream_url("10.0.0.5:8080", "/v1/x?a=1")) == "http://10.0.0.5:8080/v1/x?a=1"
    assert upstream_url("10.0.0.5:8080", "//evil.example/x").host == "10.0.0.5"
    assert upstream_url("10.0.0.5:8080", "/@evil:1/x").host == "10.0.0.5"
    assert upstream_url("[fd00::5]:8080", "/x").host == "fd00::5"
