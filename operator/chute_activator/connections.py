"""The activator's listener, bounded: connections at once, and the time a new one has to send its
first request head. Anyone who reaches a Chute at zero reaches the activator; each connection holds
one of its open files, which it also needs to accept its probes and clients and to dial replicas."""

from __future__ import annotations

import asyncio
from typing import Any

from aiohttp import web
from aiohttp.web_protocol import RequestHandler

HEAD_TIMEOUT_SECONDS = 30.0
"""Longest a new connection may take to send its first request head; then it is closed."""
MAX_CONNECTIONS = 2000
"""Client connections at once; one more is closed at once (each forwarded request needs another
open file to its replica, and the process has its range of ports plus 4096)."""


class BoundedServer(web.Server):
    """An aiohttp server that closes a connection over ``max_connections`` at once, and one that has
    not sent a whole request head within ``head_timeout`` seconds."""

    def __init__(
        self,
        handler: Any,
        *,
        head_timeout: float = HEAD_TIMEOUT_SECONDS,
        max_connections: int = MAX_CONNECTIONS,
        **kwargs: Any,
    ) -> None:
        self._inner = handler
        super().__init__(self._guarded, **kwargs)
        self.head_timeout, self.max_connections = head_timeout, max_connections
        self._waiting: dict[RequestHandler, asyncio.TimerHandle] = {}
        self.refused = 0
        """Connections closed at once, over ``max_connections``."""
        self.timed_out = 0
        """Connections closed without a whole first head within ``head_timeout``."""

    def connection_made(self, handler: RequestHandler, transport: asyncio.Transport) -> None:
        super().connection_made(handler, transport)
        if len(self.connections) > self.max_connections:
            self.refused += 1
            transport.abort()
            return
        loop = asyncio.get_running_loop()
        self._waiting[handler] = loop.call_later(self.head_timeout, self._too_slow, handler, transport)

    def connection_lost(self, handler: RequestHandler, exc: BaseException | None = None) -> None:
        timer = self._waiting.pop(handler, None)
        if timer is not None:
            timer.cancel()
        super().connection_lost(handler, exc)

    def _too_slow(self, handler: RequestHandler, transport: asyncio.Transport) -> None:
        if self._waiting.pop(handler, None) is not None:
            self.timed_out += 1
            transport.abort()

    async def _guarded(self, request: web.BaseRequest) -> web.StreamResponse:
        timer = self._waiting.pop(request.protocol, None)  # its head came: no longer timed
        if timer is not None:
            timer.cancel()
        response: web.StreamResponse = await self._inner(request)
        return response
