"""Connections that never send a whole request head do not stay open: each holds one of the real
activator process's file descriptors, which it also needs to accept its probes and clients and to dial
replicas and the API server."""

from __future__ import annotations

import asyncio
from pathlib import Path

import aiohttp

from .fake_api import FakeApi
from .test_process_shutdown import CHUTE_PORTS, api, running_activator, until_ready

__all__ = ["api"]

WAIT_SECONDS = 10.0


async def test_a_connection_that_never_finishes_its_request_head_is_closed(
    api: FakeApi, tmp_path: Path
) -> None:
    with running_activator(api, tmp_path, "--head-timeout-seconds", "1") as (process, host, metrics):
        async with aiohttp.ClientSession() as session:
            await until_ready(session, metrics)
        assert process.poll() is None
        reader, writer = await asyncio.open_connection(host, CHUTE_PORTS[0])
        try:
            writer.write(b"POST /v1/chat/completions HTTP/1.1\r\nHost: x\r\n")  # and never the rest
            await writer.drain()
            try:
                async with asyncio.timeout(WAIT_SECONDS):
                    while await reader.read(65536):
                        pass
                closed = True
            except TimeoutError:
                closed = False
        finally:
            writer.close()
        assert closed, f"a half-sent head kept its connection open for {WAIT_SECONDS:g}s"


async def test_connections_over_the_bound_are_closed_and_the_rest_still_served(
    api: FakeApi, tmp_path: Path
) -> None:
    with running_activator(api, tmp_path, "--max-connections", "5") as (_, host, metrics):
        async with aiohttp.ClientSession() as session:
            await until_ready(session, metrics)
        idle = [await asyncio.open_connection(host, CHUTE_PORTS[0]) for _ in range(5)]
        try:
            reader, writer = await asyncio.open_connection(host, CHUTE_PORTS[0])
            async with asyncio.timeout(WAIT_SECONDS):
                assert await reader.read(1) == b""  # closed at once: over the bound
            writer.close()
        finally:
            for _, idle_writer in idle:
                idle_writer.close()
        await asyncio.sleep(0.5)  # the idle ones are closed
        async with (
            aiohttp.ClientSession() as session,
            session.get(f"http://{host}:{CHUTE_PORTS[1]}/v1/models") as response,
        ):
            assert response.status == 404  # served again: a port no Chute has
