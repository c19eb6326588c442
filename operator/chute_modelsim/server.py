"""The aiohttp servers: the OpenAI-compatible port and the admin port."""

from __future__ import annotations

import asyncio
import hashlib
import itertools
import json
import logging
import os
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

from aiohttp import web

from chute_modelsim import exposition
from chute_modelsim.batch import Batch, Sequence
from chute_modelsim.config import Config
from chute_modelsim.faults import Faults
from chute_modelsim.openai import (
    Plan,
    RequestError,
    embeddings_answer,
    full_answer,
    models_answer,
    plan_chat,
    plan_text,
    step_chunks,
    usage_chunk,
)
from chute_modelsim.weights import WeightsError
from chute_modelsim.weights import load as load_weights
from chute_shared.paths import METRICS_PATH, MODEL_HEALTH_PATH

log = logging.getLogger("chute_modelsim")

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]
MAX_BODY_BYTES = 16 * 1024 * 1024
DIGEST_PATH = "/v1/echo/digest"
"""``POST``: the length and SHA-256 of the body as it arrived, read to its end: a client compares them
with what it sent, so a body cut or changed on the way (sidecar, activator) shows."""
NOT_REQUESTS = frozenset({MODEL_HEALTH_PATH, METRICS_PATH})
"""Paths polled by the sidecar and scrapers: never counted as answered requests (crash/hang switches)."""


def sse(event: dict[str, Any] | str) -> bytes:
    """One server-sent event: ``data: <json>`` and a blank line."""
    data = event if isinstance(event, str) else json.dumps(event, separators=(",", ":"))
    return f"data: {data}\n\n".encode()


def _error(error: RequestError) -> web.Response:
    return web.json_response(error.body(), status=error.status)


class ModelServer:
    """One simulated model: ``await start()``, ``loaded`` (an event), ``port``, ``admin_port``, ``stop()``."""

    def __init__(self, config: Config, exit_process: Callable[[int], None] = os._exit) -> None:
        self.config = config
        self.faults = Faults(config, exit_process)
        self.loaded = asyncio.Event()
        self.batch = Batch(config.max_num_seqs, config.kv_cache_tokens)
        self.created = int(time.time())
        self.port: int | None = None
        self.admin_port: int | None = None
        self._ids = itertools.count(1)
        self._runners: list[web.AppRunner] = []
        self._load_task: asyncio.Task[None] | None = None

    # -- lifecycle --------------------------------------------------------------------------------
    async def start(self) -> None:
        """Binds the admin port (and the serving port when ``loading=unavailable``), then loads."""
        if self.config.admin_port is not None:
            self.admin_port = await self._listen(
                self.admin_app(), self.config.admin_host, self.config.admin_port
            )
            log.info("admin port listening on %s:%d", self.config.admin_host, self.admin_port)
        if self.config.loading == "unavailable":
            await self._listen_serving()
        self._load_task = asyncio.get_running_loop().create_task(self._load(), name="load")

    async def _load(self) -> None:
        log.info("loading %s (%gs)", self.config.model, self.config.load_seconds)
        seconds = self.config.load_seconds
        if self.config.weights is not None:
            try:
                found = await asyncio.to_thread(load_weights, Path(self.config.weights))
            except WeightsError as error:
                log.error("weights: %s", error)
                self.faults.exit_process(1)
                return
            seconds += found.gib * self.config.load_seconds_per_gib
            log.info(
                "weights: %d files, %d tensors, %.3f GiB checked and read; loading %.1fs more",
                found.files, found.tensors, found.gib, seconds,
            )  # fmt: skip
        await asyncio.sleep(seconds)
        if self.port is None:
            await self._listen_serving()
        self.loaded.set()
        log.info("model %s loaded; /health answers 200", self.config.model)
        self.faults.arm()

    async def _listen_serving(self) -> None:
        self.port = await self._listen(self.app(), self.config.host, self.config.port)
        log.info("serving port listening on %s:%d", self.config.host, self.port)

    async def _listen(self, app: web.Application, host: str, port: int) -> int:
        debug = logging.getLogger().isEnabledFor(logging.DEBUG)
        runner = web.AppRunner(
            app, handler_cancellation=True, access_log=log if debug else None, shutdown_timeout=1.0
        )
        await runner.setup()
        self._runners.append(runner)
        await web.TCPSite(runner, host, port, reuse_address=True).start()
        bound: int = runner.addresses[-1][1]
        return bound

    async def stop(self) -> None:
        if self._load_task is not None:
            self._load_task.cancel()
        await self.faults.close()
        for runner in reversed(self._runners):
            await runner.cleanup()
        self._runners.clear()

    # -- serving port -----------------------------------------------------------------------------
    def app(self) -> web.Application:
        app = web.Application(client_max_size=MAX_BODY_BYTES, middlewares=[self._middleware])
        app.router.add_get(MODEL_HEALTH_PATH, self.health)
        app.router.add_get(METRICS_PATH, self.metrics)
        app.router.add_get("/v1/models", self.models)
        app.router.add_post("/v1/chat/completions", self.chat)
        app.router.add_post("/v1/completions", self.completions)
        app.router.add_post("/v1/embeddings", self.embeddings)
        app.router.add_post(DIGEST_PATH, self.digest)
        return app

    @web.middleware
    async def _middleware(self, request: web.Request, handler: Handler) -> web.StreamResponse:
        await self.faults.wait_while_hung()
        if not self.loaded.is_set():
            if request.path == MODEL_HEALTH_PATH:
                return web.Response(status=503)
            return _error(RequestError("the model is still loading", status=503))
        response = await handler(request)
        if request.path not in NOT_REQUESTS:
            if not response.prepared:  # send it now, so a crash after this request never cuts it
                await response.prepare(request)
                await response.write_eof()
            self.faults.request_answered()
        return response

    async def health(self, request: web.Request) -> web.Response:
        return web.Response(status=200)

    async def metrics(self, request: web.Request) -> web.Response:
        """The batch as vLLM reports it: requests running and waiting, the KV cache's fill."""
        batch = self.batch
        now = asyncio.get_running_loop().time()
        body = exposition.render(self.config.model, len(batch.running), batch.waiting, batch.kv_usage(now))
        return web.Response(body=body, headers={"Content-Type": exposition.CONTENT_TYPE})

    async def models(self, request: web.Request) -> web.Response:
        return web.json_response(models_answer(self.config, self.created))

    async def _body(self, request: web.Request) -> object:
        try:
            return json.loads(await request.read())
        except (ValueError, UnicodeDecodeError) as error:
            raise RequestError(f"the request body is not JSON: {error}") from None

    async def chat(self, request: web.Request) -> web.StreamResponse:
        try:
            plan = plan_chat(await self._body(request), self.config)
        except RequestError as error:
            return _error(error)
        return await self._answer(request, plan, f"chatcmpl-{next(self._ids)}")

    async def completions(self, request: web.Request) -> web.StreamResponse:
        try:
            plan = plan_text(await self._body(request), self.config)
        except RequestError as error:
            return _error(error)
        return await self._answer(request, plan, f"cmpl-{next(self._ids)}")

    async def embeddings(self, request: web.Request) -> web.Response:
        try:
            answer = embeddings_answer(await self._body(request), self.config)
        except RequestError as error:
            return _error(error)
        async with self.batch.seat(Sequence(answer["usage"]["prompt_tokens"])) as sequence:
            due = asyncio.get_running_loop().time() + self.config.time_to_first_token_seconds
            sequence.start(due, 0.0)
            await self._sleep_until(due)
        return web.json_response(answer)

    async def digest(self, request: web.Request) -> web.Response:
        """``{"bytes": N, "sha256": HEX}`` of the whole body (Content-Length or chunked), hashed as it
        arrives; over :data:`MAX_BODY_BYTES`, 413 like the other routes."""
        digest, size = hashlib.sha256(), 0
        async for chunk in request.content.iter_any():
            size += len(chunk)
            if size > MAX_BODY_BYTES:
                return _error(RequestError(f"the request body is over {MAX_BODY_BYTES} bytes", status=413))
            digest.update(chunk)
        return web.json_response({"bytes": size, "sha256": digest.hexdigest()})

    def _token_time(self, first: float, step: int) -> float:
        """When token ``step`` is due: the first after the time to first token, then at the set rate."""
        rate = self.config.tokens_per_second
        return first + (step / rate if rate > 0 else 0.0)

    async def _sleep_until(self, due: float) -> None:
        delay = due - asyncio.get_running_loop().time()
        if delay > 0:
            await asyncio.sleep(delay)
        await self.faults.wait_while_hung()

    async def _answer(self, request: web.Request, plan: Plan, ident: str) -> web.StreamResponse:
        """Wait for room in the batch, then generate (see :mod:`chute_modelsim.batch`)."""
        sequence = Sequence(plan.prompt_tokens, plan.completion_tokens, len(plan.choices))
        async with self.batch.seat(sequence):
            first = asyncio.get_running_loop().time() + self.config.time_to_first_token_seconds
            sequence.start(first, self.config.tokens_per_second)
            return await self._generate(request, plan, ident, first)

    async def _generate(
        self, request: web.Request, plan: Plan, ident: str, first: float
    ) -> web.StreamResponse:
        created = int(time.time())
        if not plan.stream:
            await self._sleep_until(self._token_time(first, max(plan.steps - 1, 0)))
            return web.json_response(full_answer(plan, ident, created))
        response = web.StreamResponse(
            headers={"Content-Type": "text/event-stream", "Cache-Control": "no-cache"}
        )
        await response.prepare(request)
        for step in range(plan.steps):
            await self._sleep_until(self._token_time(first, step))
            await response.write(b"".join(sse(event) for event in step_chunks(plan, ident, created, step)))
        tail = sse(usage_chunk(plan, ident, created)) if plan.include_usage else b""
        await response.write(tail + sse("[DONE]"))
        await response.write_eof()
        return response

    # -- admin port -------------------------------------------------------------------------------
    def admin_app(self) -> web.Application:
        app = web.Application()
        app.router.add_get("/admin/state", self.admin_state)
        app.router.add_post("/admin/crash", self.admin_crash)
        app.router.add_post("/admin/hang", self.admin_hang)
        app.router.add_delete("/admin/hang", self.admin_release)
        app.router.add_post("/admin/allocate", self.admin_allocate)
        app.router.add_delete("/admin/allocate", self.admin_free)
        return app

    def _state(self) -> dict[str, Any]:
        return {"model": self.config.model, "loaded": self.loaded.is_set(), **self.faults.state()}

    async def admin_state(self, request: web.Request) -> web.Response:
        return web.json_response(self._state())

    @staticmethod
    def _query_number(request: web.Request, name: str, kind: type[int] | type[float]) -> int | float | None:
        text = request.query.get(name)
        if text is None:
            return None
        try:
            value = kind(text)
        except ValueError:
            raise web.HTTPBadRequest(text=f"{name} must be a number: {text!r}") from None
        if value < 0:
            raise web.HTTPBadRequest(text=f"{name} must be >= 0: {text!r}")
        return value

    async def admin_crash(self, request: web.Request) -> web.Response:
        """``?after_requests=N``: crash after N more answered requests; without it: exit now."""
        after = self._query_number(request, "after_requests", int)
        code = self._query_number(request, "exit_code", int)
        if code is not None and not 1 <= code <= 255:
            raise web.HTTPBadRequest(text="exit_code must be 1..255")
        if after:
            if code:
                self.faults.exit_code = int(code)
            self.faults.crash_after_requests = self.faults.requests + int(after)
            return web.json_response(self._state())
        self.faults.crash(int(code) if code else None, reason="admin route")
        return web.json_response(self._state(), status=202)

    async def admin_hang(self, request: web.Request) -> web.Response:
        """``?after_requests=N``: hang after N more answered requests; without it: hang now."""
        after = self._query_number(request, "after_requests", int)
        if after:
            self.faults.hang_after_requests = self.faults.requests + int(after)
        else:
            self.faults.hang(reason="admin route")
        return web.json_response(self._state())

    async def admin_release(self, request: web.Request) -> web.Response:
        self.faults.hang_after_requests = None
        self.faults.release()
        return web.json_response(self._state())

    async def admin_allocate(self, request: web.Request) -> web.Response:
        """``?mb=N``: allocate N MiB now (answers once resident); ``?mb_per_second=R``: keep growing."""
        mb = self._query_number(request, "mb", int)
        rate = self._query_number(request, "mb_per_second", float)
        if mb is None and rate is None:
            raise web.HTTPBadRequest(text="give mb=N or mb_per_second=R")
        if mb:
            await self.faults.allocate(int(mb))
        if rate is not None:
            self.faults.grow(float(rate))
        return web.json_response(self._state())

    async def admin_free(self, request: web.Request) -> web.Response:
        self.faults.free()
        return web.json_response(self._state())
