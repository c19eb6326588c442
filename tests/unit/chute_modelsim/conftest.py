"""The simulated model server in this process (aiohttp on loopback) or as a real process."""

from __future__ import annotations

import asyncio
import json
import os
import socket
import subprocess
import sys
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from dataclasses import replace
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from chute_modelsim.config import Config
from chute_modelsim.server import ModelServer
from chute_sidecar.app import Sidecar
from chute_sidecar.config import Config as SidecarConfig

LOOPBACK = "127.0.0.1"
OPERATOR_DIR = Path(__file__).resolve().parents[3] / "operator"


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind((LOOPBACK, 0))
        port: int = sock.getsockname()[1]
        return port


async def eventually(check: Callable[[], Awaitable[bool]], within: float = 10.0, step: float = 0.02) -> None:
    """Poll ``check`` until it holds; fail after ``within`` seconds (a bound, not a timing assertion)."""
    deadline = time.monotonic() + within
    while not await check():
        if time.monotonic() > deadline:
            raise AssertionError(f"condition not reached within {within}s")
        await asyncio.sleep(step)


def fast_config(**overrides: Any) -> Config:
    """Ephemeral ports, no delays: what most tests want."""
    base = Config(
        port=0,
        admin_port=0,
        loading="unavailable",
        time_to_first_token_seconds=0.0,
        tokens_per_second=0.0,
    )
    return replace(base, **overrides)


class Model:
    """A started in-process server, its exit codes (a crash does not exit the test process) and a session."""

    def __init__(self, server: ModelServer, exits: list[int], session: aiohttp.ClientSession) -> None:
        self.server = server
        self.exits = exits
        self.session = session

    def url(self, path: str) -> str:
        return f"http://{LOOPBACK}:{self.server.port}{path}"

    def admin(self, path: str) -> str:
        return f"http://{LOOPBACK}:{self.server.admin_port}{path}"

    async def post(self, path: str, body: object) -> tuple[int, Any]:
        async with self.session.post(self.url(path), json=body) as response:
            return response.status, await response.json()

    async def admin_post(self, path: str) -> dict[str, Any]:
        async with self.session.post(self.admin(path)) as response:
            assert response.status in (200, 202), await response.text()
            state: dict[str, Any] = await response.json()
            return state

    async def state(self) -> dict[str, Any]:
        async with self.session.get(self.admin("/admin/state")) as response:
            state: dict[str, Any] = await response.json()
            return state


StartModel = Callable[..., Awaitable[Model]]


@pytest.fixture
async def start_model() -> AsyncIterator[StartModel]:
    """``await start_model(load_seconds=1, ...)``: a server with :func:`fast_config` plus overrides."""
    started: list[ModelServer] = []
    session = aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=30))

    async def start(wait_loaded: bool = True, **overrides: Any) -> Model:
        exits: list[int] = []
        server = ModelServer(fast_config(**overrides), exit_process=exits.append)
        started.append(server)
        await server.start()
        if wait_loaded:
            await asyncio.wait_for(server.loaded.wait(), 10)
        return Model(server, exits, session)

    yield start
    for server in started:
        await server.stop()
    await session.close()


@pytest.fixture
async def model(start_model: StartModel) -> Model:
    return await start_model()


@pytest.fixture
async def sidecar(model: Model) -> AsyncIterator[Sidecar]:
    """The real sidecar in this process, in front of :func:`model`, on loopback."""
    running = Sidecar(
        SidecarConfig(
            upstream=f"http://{LOOPBACK}:{model.server.port}",
            host=LOOPBACK,
            port=0,
            metrics_port=0,
            admin_port=0,
            concurrency=4,
            health_interval_seconds=0.05,
            drain_seconds=0.0,
            shutdown_timeout_seconds=5.0,
        )
    )
    await running.start()
    yield running
    await running.stop()


def parse_sse(raw: bytes) -> list[Any]:
    """Events of a whole SSE body; every event must be exactly one ``data:`` line and a blank line."""
    assert raw.endswith(b"\n\n"), raw[-40:]
    events = []
    for block in raw[:-2].split(b"\n\n"):
        assert block.startswith(b"data: "), block
        assert b"\n" not in block, block
        data = block[len(b"data: ") :].decode()
        events.append(data if data == "[DONE]" else json.loads(data))
    return events


def subprocess_env(**extra: str) -> dict[str, str]:
    env = {key: value for key, value in os.environ.items() if not key.startswith("CHUTE_MODELSIM_")}
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(OPERATOR_DIR), env.get("PYTHONPATH")]))
    env["PYTHONUNBUFFERED"] = "1"
    env.update(extra)
    return env


class Process:
    """``python -m chute_modelsim`` as a real process on free loopback ports."""

    def __init__(self, args: list[str], env: dict[str, str] | None = None) -> None:
        self.port = free_port()
        self.admin_port = free_port()
        command = [
            sys.executable, "-m", "chute_modelsim",
            "--port", str(self.port), "--admin-port", str(self.admin_port), *args,
        ]  # fmt: skip
        self.popen = subprocess.Popen(
            command, env=env or subprocess_env(), stdout=subprocess.PIPE, stderr=subprocess.STDOUT
        )

    def url(self, path: str) -> str:
        return f"http://{LOOPBACK}:{self.port}{path}"

    def admin(self, path: str) -> str:
        return f"http://{LOOPBACK}:{self.admin_port}{path}"

    def wait(self, timeout: float = 10.0) -> int:
        return self.popen.wait(timeout)

    def output(self) -> str:
        if self.popen.poll() is None:
            self.popen.kill()
            self.popen.wait()
        assert self.popen.stdout is not None
        return self.popen.stdout.read().decode()

    def stop(self) -> None:
        if self.popen.poll() is None:
            self.popen.kill()
            self.popen.wait()
        if self.popen.stdout is not None:
            self.popen.stdout.close()


@pytest.fixture
def run_process() -> Iterator[Callable[..., Process]]:
    started: list[Process] = []

    def run(*args: str, env: dict[str, str] | None = None) -> Process:
        process = Process(list(args), env)
        started.append(process)
        return process

    yield run
    for process in started:
        process.stop()
