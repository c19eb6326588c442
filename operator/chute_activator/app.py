"""The activator's HTTP server: find the Chute by the port the request arrived on, hold the request,
forward it or answer 503/404.

Never by a header: Host, or any other, is the client's to write, and the activator is reachable
through every Chute's Service at zero (LoadBalancers and Ingresses included). The operator gives each
Chute with minInstances 0 a port of the activator and writes it in the Chute's activator
EndpointSlice: a connection on that port came through that Chute's Service (or a Gateway, an
Ingress that reached it), so it is forwarded to that Chute's pods only."""

from __future__ import annotations

import asyncio
import functools
import logging
import time
import weakref

import aiohttp
from aiohttp import web
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

from chute_activator.body import (
    BODY_TIMEOUT_SECONDS,
    Body,
    BodyIncomplete,
    BodyTimeout,
    BodyTooLarge,
    HeldBytes,
    HeldBytesFull,
    read_body,
)
from chute_activator.forward import (
    ConnectFailed,
    ReplicaBadAnswer,
    ReplicaDisconnected,
    ReplicaTimeout,
    forward,
    origin_form,
)
from chute_activator.holding import Holder, Rejected
from chute_activator.state import Key

log = logging.getLogger("chute_activator")

CONNECT_ATTEMPTS = 3
"""Replicas tried for one request (one that cannot be reached or closes before answering: the next)."""
RETRIED_AFTER_DISCONNECT = frozenset({"GET", "HEAD", "OPTIONS", "TRACE", "PUT", "DELETE"})
"""Methods (idempotent, RFC 9110) sent to the next replica when one closed the connection without
answering: it may have read the whole request and acted on it (a generation that OOM-killed it), so
a POST is answered 503 instead of being sent to, and perhaps killing, every replica in turn. A
replica that could not be reached read nothing: any request goes to the next."""
REPLICA_UNREACHABLE = "ReplicaUnreachable"
"""The reason of a 503 when the last replica tried could not be reached."""
REPLICA_DISCONNECTED = "ReplicaDisconnected"
"""The reason of a 503 when the last replica tried closed the connection before answering."""
REPLICA_BAD_ANSWER = "ReplicaBadAnswer"
"""The reason of a 502 when the replica answered something that is not valid HTTP."""
REPLICA_TIMEOUT = "ReplicaTimeout"
"""The reason of a 504 when the replica did not answer within ``--request-timeout-seconds``."""
PORT_MOVED = "PortMoved"
"""The reason of a 503 on a kept-alive connection whose port was given to another Chute since."""
BAD_REQUEST_TARGET = "BadRequestTarget"
"""The reason of a 400 for a request whose target is not a path: CONNECT, an absolute URL, ``*``."""
HELD_BYTES_FULL = "HeldBytesFull"
"""The reason of a 503 when holding one more body would pass ``--max-held-body-bytes``."""


def _reject(rejected: Rejected) -> web.Response:
    headers = {"Retry-After": str(rejected.retry_after)} if rejected.retry_after is not None else {}
    body = {"error": {"reason": rejected.reason, "message": rejected.message}}
    return web.json_response(body, status=rejected.status, headers=headers)


def _too_large(limit: int, held_limit: int) -> str:
    """Why a body is refused: over the Chute's limit, or over all the activator may hold at once."""
    if limit == held_limit:
        return f"body over {limit} bytes, all the activator holds at once (--max-held-body-bytes)"
    return f"body over {limit} bytes"


def _answered(holder: Holder, key: Key, body: Body) -> None:
    """The replica answered: the request counts as forwarded, its body no longer as held."""
    holder.count_forwarded(key)
    body.release()


class Activator:
    """One activator: a :class:`Holder` behind an HTTP handler."""

    def __init__(
        self,
        holder: Holder,
        *,
        max_body_bytes: int,
        request_timeout: float,
        max_held_body_bytes: int | None = None,
        body_timeout: float = BODY_TIMEOUT_SECONDS,
    ) -> None:
        self.holder, self.max_body_bytes, self.request_timeout = holder, max_body_bytes, request_timeout
        self.body_timeout = body_timeout
        """Longest a client may take to send its body (``--body-timeout-seconds``); then 408."""
        self.held = HeldBytes(max_held_body_bytes if max_held_body_bytes is not None else 1 << 62)
        """Bytes of bodies held across all requests (``--max-held-body-bytes``)."""
        self.session: aiohttp.ClientSession | None = None
        self._connections: weakref.WeakKeyDictionary[asyncio.BaseTransport, Key] = weakref.WeakKeyDictionary()
        """The Chute each open client connection was made for: its port's owner when it was made."""

    async def start(self) -> None:
        self.session = aiohttp.ClientSession(
            connector=aiohttp.TCPConnector(limit=0, keepalive_timeout=30), auto_decompress=False
        )

    async def close(self) -> None:
        if self.session is not None:
            await self.session.close()
            self.session = None

    async def handle(self, request: web.BaseRequest) -> web.StreamResponse:
        response = await self._answer(request)
        if self.holder.draining and not response.prepared:
            response.force_close()  # its next request opens a new connection, sent elsewhere
        return response

    async def _answer(self, request: web.BaseRequest) -> web.StreamResponse:
        if request.method == "CONNECT" or not origin_form(request.raw_path):
            response = _reject(
                Rejected(400, BAD_REQUEST_TARGET, "only a path is forwarded (no CONNECT, no absolute URL)")
            )
            response.force_close()
            return response
        try:
            key = await self.holder.resolve(arrived_on(request))
        except Rejected as rejected:
            return _reject(rejected)
        transport = request.transport
        if transport is not None and self._connections.setdefault(transport, key) != key:
            # the port was given to another Chute since this connection was made (through the old
            # Chute's Service): it is never that Chute's; its client reconnects through its Service
            response = _reject(Rejected(503, PORT_MOVED, "this connection's Chute is no longer here", 0))
            response.force_close()
            return response
        chute_limit, timeout = self.holder.limits(key)
        limit = min(chute_limit or self.max_body_bytes, self.held.limit)
        try:
            async with read_body(request, limit=limit, held=self.held, within=self.body_timeout) as body:
                return await self._forward(request, key, body, timeout or self.request_timeout)
        except BodyTooLarge:
            response = _reject(Rejected(413, "BodyTooLarge", _too_large(limit, self.held.limit)))
        except HeldBytesFull:
            self.holder.count_rejected(key, HELD_BYTES_FULL)
            message = f"the activator holds {self.held.held} bytes of bodies already, its bound"
            response = _reject(Rejected(503, HELD_BYTES_FULL, message, self.holder.retry_after(key)))
        except BodyIncomplete:
            response = _reject(Rejected(400, "BodyIncomplete", "the body ended before its Content-Length"))
        except BodyTimeout:
            message = f"the body did not arrive within {self.body_timeout:g}s"
            response = _reject(Rejected(408, "BodyTimeout", message))
        response.force_close()  # the rest of the body is not read
        return response

    async def _forward(
        self,
        request: web.BaseRequest,
        key: Key,
        body: Body,
        timeout: float,  # noqa: ASYNC109 (the Chute's request timeout, handed to aiohttp per request)
    ) -> web.StreamResponse:
        # narrows the type: the session is opened before serving (bandit B101)
        assert self.session is not None  # nosec B101
        start, failed, tried = time.monotonic(), REPLICA_UNREACHABLE, 0
        for attempt in range(CONNECT_ATTEMPTS):
            tried = attempt + 1
            try:
                endpoint, waited = await self.holder.acquire(key)
            except Rejected as rejected:
                return _reject(rejected)
            if waited:
                self.holder.mark(key, "forwarded")
            answered = functools.partial(_answered, self.holder, key, body)
            try:
                response = await forward(
                    self.session,
                    request,
                    body.data,
                    endpoint,
                    timeout=timeout,
                    on_answer=answered,
                    close=self.holder.draining,
                )
            except ReplicaTimeout as error:
                self.holder.metrics.rejected.labels(*key, REPLICA_TIMEOUT).inc()
                message = f"the replica of Chute {key[0]}/{key[1]} at {endpoint}: {error}"
                return _reject(Rejected(504, REPLICA_TIMEOUT, message))
            except ReplicaBadAnswer as error:
                self.holder.metrics.rejected.labels(*key, REPLICA_BAD_ANSWER).inc()
                message = (
                    f"the replica of Chute {key[0]}/{key[1]} at {endpoint} answered no valid HTTP: {error}"
                )
                return _reject(Rejected(502, REPLICA_BAD_ANSWER, message))
            except (ConnectFailed, ReplicaDisconnected) as error:
                failed = REPLICA_UNREACHABLE if isinstance(error, ConnectFailed) else REPLICA_DISCONNECTED
                log.warning(
                    "replica unreachable"
                    if failed == REPLICA_UNREACHABLE
                    else "replica closed the connection",
                    extra={"chute": "/".join(key), "endpoint": endpoint, "error": str(error)},
                )
                if failed == REPLICA_DISCONNECTED and request.method not in RETRIED_AFTER_DISCONNECT:
                    break  # the replica may have read the request and acted on it: never twice
                continue
            if waited:
                self.holder.mark(key, "answered")
                log.info(
                    "held request forwarded",
                    extra={"chute": "/".join(key), "waited": round(waited, 3), "attempt": attempt},
                )
            return response
        self.holder.count_rejected(key, failed)
        how = (
            "could be reached" if failed == REPLICA_UNREACHABLE else "answered before closing the connection"
        )
        return _reject(
            Rejected(
                503,
                failed,
                f"no replica of Chute {key[0]}/{key[1]} {how}, {tried} tried in "
                f"{time.monotonic() - start:.1f}s",
                self.holder.retry_after(key),
            )
        )


def arrived_on(request: web.BaseRequest) -> int:
    """The activator port the request's connection was made to (kube-proxy keeps it: the slice's)."""
    sockname = request.transport.get_extra_info("sockname") if request.transport else None
    return int(sockname[1]) if sockname else 0


def metrics_app(holder: Holder) -> web.Application:
    """``/metrics`` and the probes: the port the activator's Service publishes (``/_chutes`` is on the
    debug listener, :mod:`chute_activator.debug`)."""

    async def metrics(_: web.Request) -> web.Response:
        return web.Response(
            body=generate_latest(holder.metrics.registry), headers={"Content-Type": CONTENT_TYPE_LATEST}
        )

    async def healthz(_: web.Request) -> web.Response:
        return web.Response(text="ok")

    async def readyz(_: web.Request) -> web.Response:
        if holder.draining:
            return web.Response(status=503, text="draining")
        return web.Response(text="ok") if holder.synced else web.Response(status=503, text="not synced")

    app = web.Application()
    app.router.add_get("/metrics", metrics)
    app.router.add_get("/healthz", healthz)
    app.router.add_get("/readyz", readyz)
    return app
