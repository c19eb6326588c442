"""A real model stub (aiohttp on loopback) and the real sidecar in front of it."""

from __future__ import annotations

import asyncio
import hashlib
import json
import os
import socket
import sys
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import replace
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from aiohttp import web

from chute_sidecar.app import Sidecar
from chute_sidecar.config import Config

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
    while True:
        if await check():
            return
        if time.monotonic() > deadline:
            raise AssertionError(f"condition not reached within {within}s")
        await asyncio.sleep(step)


class Stub:
    """A model server double: echo, streams, slow answers, a controllable health path."""

    def __init__(self) -> None:
        self.port = 0
        self.health_status = 200
        self.health_polls = 0
        self.health_gate: asyncio.Event | None = None  # when set, health answers wait for it
        self.health_held = 0  # health answers waiting for the gate
        self.seen: list[dict[str, Any]] = []
        self.release = asyncio.Event()  # lets /stream and /hold finish
        self.entered = 0  # requests that reached /hold or /stream
        self.cancelled = 0  # handlers cancelled because the client went away
        self.finished = 0  # /hold and /slow handlers that completed
        self.engine_document = b""  # what the model's own /metrics answers
        self.engine_status = 200
        self.engine_gate: asyncio.Event | None = None  # when set, /metrics answers wait for it
        self.engine_scrapes = 0  # /metrics requests received
        self._runner: web.AppRunner | None = None

    @property
    def url(self) -> str:
        return f"http://{LOOPBACK}:{self.port}"

    # -- handlers -------------------------------------------------------------
    async def health(self, request: web.Request) -> web.Response:
        status = self.health_status
        if self.health_gate is not None and not self.health_gate.is_set():
            self.health_held += 1
            await self.health_gate.wait()
        self.health_polls += 1
        return web.Response(status=status, text="health")

    async def engine_metrics(self, request: web.Request) -> web.Response:
        self.engine_scrapes += 1
        if self.engine_gate is not None:
            await self.engine_gate.wait()
        return web.Response(status=self.engine_status, body=self.engine_document, content_type="text/plain")

    async def echo(self, request: web.Request) -> web.Response:
        digest = hashlib.sha256()
        size = 0
        async for chunk in request.content.iter_any():
            digest.update(chunk)
            size += len(chunk)
        record = {
            "method": request.method,
            "path": request.path,
            "query": request.rel_url.raw_query_string,
            "raw_path": request.raw_path,
            "headers": {k: v for k, v in request.headers.items()},
            "sha256": digest.hexdigest(),
            "size": size,
            "chunked": "chunked" in request.headers.get("Transfer-Encoding", ""),
        }
        self.seen.append(record)
        headers = {
            "X-Model": "stub",
            "Keep-Alive": "timeout=5",
            "Proxy-Authenticate": "Basic",
            "Set-Cookie": "model=1",
        }
        if request.method == "HEAD":
            return web.Response(headers=headers, content_type="application/json")
        return web.json_response(record, headers=headers)

    async def mirror(self, request: web.Request) -> web.StreamResponse:
        """Streams the request body straight back."""
        response = web.StreamResponse()
        response.content_type = "application/octet-stream"
        await response.prepare(request)
        async for chunk in request.content.iter_any():
            await response.write(chunk)
        await response.write_eof()
        return response

    async def big(self, request: web.Request) -> web.StreamResponse:
        size = int(request.query["size"])
        block = bytes(range(256)) * 256  # 64 KiB
        response = web.StreamResponse()
        response.content_length = size
        await response.prepare(request)
        sent = 0
        while sent < size:
            part = block[: min(len(block), size - sent)]
            await response.write(part)
            sent += len(part)
        await response.write_eof()
        return response

    async def stream(self, request: web.Request) -> web.StreamResponse:
        """SSE: one event, then waits for :attr:`release`, then the rest with usage."""
        self.entered += 1
        response = web.StreamResponse(
            headers={"Content-Type": "text/event-stream", "Cache-Control": "no-cache"}
        )
        await response.prepare(request)
        try:
            await response.write(b'data: {"choices":[{"delta":{"content":"first"}}],"usage":null}\n\n')
            await self.release.wait()
            for word in ("second", "third"):
                event = {"choices": [{"delta": {"content": word}}], "usage": None}
                await response.write(f"data: {json.dumps(event)}\n\n".encode())
            usage = {"prompt_tokens": 7, "completion_tokens": 3, "total_tokens": 10}
            await response.write(f"data: {json.dumps({'choices': [], 'usage': usage})}\n\n".encode())
            await response.write(b"data: [DONE]\n\n")
            await response.write_eof()
        except asyncio.CancelledError:
            self.cancelled += 1
            raise
        return response

    async def hold(self, request: web.Request) -> web.Response:
        """Answers once :attr:`release` is set; counts cancellations."""
        self.entered += 1
        try:
            await self.release.wait()
        except asyncio.CancelledError:
            self.cancelled += 1
            raise
        self.finished += 1
        return web.Response(text="held")

    async def slow(self, request: web.Request) -> web.Response:
        seconds = float(request.query.get("seconds", "1"))
        self.entered += 1
        try:
            await asyncio.sleep(seconds)
        except asyncio.CancelledError:
            self.cancelled += 1
            raise
        self.finished += 1
        return web.Response(text=f"slept {seconds}")

    async def chat(self, request: web.Request) -> web.Response:
        await request.read()
        return web.json_response(
            {
                "id": "cmpl-1",
                "object": "chat.completion",
                "choices": [{"index": 0, "message": {"role": "assistant", "content": "hi"}}],
                "usage": {
                    "prompt_tokens": 11,
                    "completion_tokens": 5,
                    "total_tokens": 16,
                    "prompt_tokens_details": {"cached_tokens": 2},
                },
            }
        )

    async def broken(self, request: web.Request) -> web.StreamResponse:
        """Promises 1000 bytes, sends 10, then drops the connection."""
        response = web.StreamResponse()
        response.content_length = 1000
        await response.prepare(request)
        await response.write(b"0123456789")
        await asyncio.sleep(0.05)
        assert request.transport is not None
        request.transport.abort()
        return response

    # -- lifecycle ------------------------------------------------------------
    def app(self) -> web.Application:
        app = web.Application(client_max_size=1024**3)
        app.router.add_get("/health", self.health)
        app.router.add_get("/metrics{tail:.*}", self.engine_metrics)  # as vLLM mounts it: below too
        app.router.add_route("*", "/echo{tail:.*}", self.echo)
        app.router.add_post("/mirror", self.mirror)
        app.router.add_get("/big", self.big)
        app.router.add_get("/stream", self.stream)
        app.router.add_route("*", "/hold", self.hold)
        app.router.add_get("/slow", self.slow)
        app.router.add_post("/v1/chat/completions", self.chat)
        app.router.add_get("/v1/models", self.echo)
        app.router.add_get("/broken", self.broken)
        return app

    async def start(self, port: int = 0) -> None:
        self._runner = web.AppRunner(
            self.app(), handler_cancellation=True, access_log=None, shutdown_timeout=0.5
        )
        await self._runner.setup()
        await web.TCPSite(self._runner, LOOPBACK, port, reuse_address=True).start()
        self.port = self._runner.addresses[0][1]

    async def stop(self) -> None:
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None


@pytest.fixture
async def stub() -> AsyncIterator[Stub]:
    model = Stub()
    await model.start()
    yield model
    model.release.set()
    await model.stop()


def sidecar_config(stub: Stub, **overrides: Any) -> Config:
    base = Config(
        upstream=stub.url,
        host=LOOPBACK,
        port=0,
        metrics_port=0,
        admin_port=0,
        health_interval_seconds=0.05,
        health_timeout_seconds=1.0,
        drain_seconds=0.0,
        shutdown_timeout_seconds=5.0,
    )
    return replace(base, **overrides)


class Running:
    """A started in-process sidecar with a client session and URL helpers."""

    def __init__(self, sidecar: Sidecar, session: aiohttp.ClientSession) -> None:
        self.sidecar = sidecar
        self.session = session

    def url(self, path: str) -> str:
        return f"http://{LOOPBACK}:{self.sidecar.port}{path}"

    def admin(self, path: str) -> str:
        return f"http://{LOOPBACK}:{self.sidecar.admin_port}{path}"

    def metrics(self, path: str) -> str:
        return f"http://{LOOPBACK}:{self.sidecar.metrics_port}{path}"

    async def status(self, path: str) -> int:
        async with self.session.get(self.admin(path)) as response:
            return response.status

    async def metrics_text(self) -> str:
        async with self.session.get(self.metrics("/metrics")) as response:
            assert response.status == 200
            return await response.text()


StartSidecar = Callable[..., Awaitable[Running]]


@pytest.fixture
async def start_sidecar(stub: Stub) -> AsyncIterator[StartSidecar]:
    """``await start_sidecar(concurrency=2, ...)``: a sidecar in front of ``stub``, stopped at teardown."""
    started: list[Running] = []
    session = aiohttp.ClientSession(
        timeout=aiohttp.ClientTimeout(total=60), connector=aiohttp.TCPConnector(limit=0)
    )

    async def start(**overrides: Any) -> Running:
        sidecar = Sidecar(sidecar_config(stub, **overrides))
        await sidecar.start()
        running = Running(sidecar, session)
        started.append(running)
        return running

    yield start
    stub.release.set()
    for running in started:
        await running.sidecar.stop()
    await session.close()


@pytest.fixture
async def sidecar(start_sidecar: StartSidecar, stub: Stub) -> Running:
    """A default sidecar (concurrency 4) whose model has started."""
    running = await start_sidecar(concurrency=4)

    async def ready() -> bool:
        return await running.status("/readyz") == 200

    await eventually(ready)
    return running


def subprocess_env() -> dict[str, str]:
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(OPERATOR_DIR), env.get("PYTHONPATH")]))
    env["PYTHONUNBUFFERED"] = "1"
    return env


PYTHON = sys.executable
