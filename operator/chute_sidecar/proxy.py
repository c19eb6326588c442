"""The serving port: checks (route, auth, body size, concurrency), then a streaming reverse proxy."""

from __future__ import annotations

import asyncio
import json
import logging
import re
import time
from collections.abc import AsyncIterator, Callable
from typing import Any
from urllib.parse import unquote

from aiohttp import StreamReader, web
from multidict import CIMultiDict
from yarl import URL

from chute_shared.headers import EXPECT, EXPECT_CONTINUE, FORWARDED_FOR, HOP_BY_HOP
from chute_shared.paths import CONN_STATS_PATH, READY
from chute_sidecar.auth import ApiKeys
from chute_sidecar.headers import BadHeader, ascii_bytes
from chute_sidecar.limiter import Limiter
from chute_sidecar.metrics import Metrics
from chute_sidecar.routes import OTHER, RouteTable, method_label
from chute_sidecar.upstream import ConnectError, Exchange, Pool, ProtocolError, request_head
from chute_sidecar.usage import Tail, parse_usage, wants_usage

log = logging.getLogger("chute_sidecar.proxy")

# raw (lower-case) names not forwarded: hop-by-hop, Host (set for the model), Expect (answered here),
# X-Forwarded-For (extended and re-added)
_RAW_DROP = frozenset(name.lower().encode() for name in (*HOP_BY_HOP, "Host", EXPECT, FORWARDED_FOR))
_RAW_FORWARDED_FOR = FORWARDED_FOR.encode()
CLIENT_CLOSED = 499  # nginx's code for "client closed the connection first"
_CONTINUE = b"HTTP/1.1 100 Continue\r\n\r\n"
_debug = log.isEnabledFor


class BodyTooLarge(Exception):
    """A request body without Content-Length grew past the limit while streaming."""


class _Upload:
    """Frames a body of unknown length as chunked for the model, counting it against the limit."""

    __slots__ = ("limit",)

    def __init__(self, limit: int) -> None:
        self.limit = limit

    async def chunked(self, content: StreamReader) -> AsyncIterator[bytes]:
        seen = 0
        while chunk := await content.readany():
            seen += len(chunk)
            if seen > self.limit:
                raise BodyTooLarge
            yield b"%x\r\n%b\r\n" % (len(chunk), chunk)
        yield b"0\r\n\r\n"


async def _stream(content: StreamReader) -> AsyncIterator[bytes]:
    while chunk := await content.readany():
        yield chunk


def json_response(status: int, document: object, headers: dict[str, str] | None = None) -> web.Response:
    return web.Response(
        status=status,
        body=json.dumps(document, separators=(",", ":")).encode(),
        content_type="application/json",
        headers=headers,
    )


def _strip(headers: CIMultiDict[str], drop: tuple[str, ...]) -> None:
    """Remove hop-by-hop headers, including those the Connection header names."""
    connection = headers.get("Connection")
    if connection:
        for name in connection.split(","):
            if name := name.strip():
                headers.popall(name, None)
    for name in drop:
        headers.popall(name, None)


class _Coalesced(web.StreamResponse):
    """Holds the head until the first body write (aiohttp's ``web.Response`` does the same)."""

    _send_headers_immediately = False


class Draining:
    """Shared flag, read per request: ``value`` is true while the pod drains, for a SIGTERM (for good)
    or for the model container's preStop hook (until the model is back after a restart)."""

    __slots__ = ("for_model_stop", "for_shutdown", "value")

    def __init__(self) -> None:
        self.for_model_stop = False
        self.for_shutdown = False
        self.value = False

    def set(self, *, model_stop: bool | None = None, shutdown: bool | None = None) -> None:
        if model_stop is not None:
            self.for_model_stop = model_stop
        if shutdown is not None:
            self.for_shutdown = shutdown
        self.value = self.for_model_stop or self.for_shutdown


def _plain(path: str) -> str:
    """A path as a model's server reads it: escapes decoded, repeated slashes merged."""
    return re.sub(r"/{2,}", "/", unquote(path))


class Proxy:
    """Handler of the serving port (a low-level aiohttp server: no router, no middlewares)."""

    def __init__(
        self,
        *,
        upstream: str,
        limiter: Limiter,
        metrics: Metrics,
        routes: RouteTable,
        restrict_to_routes: bool,
        keys: ApiKeys | None,
        max_body_bytes: int,
        request_timeout: float,
        draining: Draining,
        model_ready: Callable[[], bool] = lambda: True,
        private_paths: frozenset[str] = frozenset(),
    ) -> None:
        base = URL(upstream)
        if base.scheme != "http":
            raise ValueError("the upstream must be an http:// URL (the model server on loopback)")
        self._host = base.raw_host or "127.0.0.1"
        self._port = base.port or 80
        self._prefix = base.raw_path.rstrip("/")
        self.limiter = limiter
        self.metrics = metrics
        self.routes = routes
        self.restrict = restrict_to_routes
        self.keys = keys
        self.max_body = max_body_bytes
        self.timeout = request_timeout
        self.draining = draining
        self.model_ready = model_ready
        self.private_paths = frozenset(_plain(p.partition("?")[0]).rstrip("/") or "/" for p in private_paths)
        """The model's paths served elsewhere (its metrics, on the metrics port): 404 here, so no
        Service, route or load balancer publishes them."""
        self.pool: Pool | None = None

    async def start(self) -> None:
        """The connection pool to the model, as many idle connections kept as the concurrency."""
        self.pool = Pool(self._host, self._port, max_idle=self.limiter.capacity)

    async def close(self) -> None:
        if self.pool is not None:
            self.pool.close()
            self.pool = None

    def ready(self) -> bool:
        """What ``/readyz`` answers: the model's last health poll passed and the pod is not draining."""
        return self.model_ready() and not self.draining.value

    def stats(self) -> dict[str, Any]:
        """The ``/_conn_stats`` document, with ``ready`` (as ``/readyz``): the activator reads it on the
        serving port (the only port open to it) to forward a held request the moment the model is up,
        before the kubelet's readiness probe and the EndpointSlice say so."""
        return {**self.limiter.stats(), READY: self.ready()}

    def _private(self, path: str) -> bool:
        """Whether ``path`` reaches a private path of the model however it is spelled: escapes decoded
        and repeated slashes merged as a model's server reads them, and anything below or after it
        (vLLM serves ``/metrics`` for every path that begins so)."""
        if not self.private_paths:
            return False
        plain = _plain(path)
        return any(plain.startswith(private) for private in self.private_paths)

    def conn_stats(self) -> web.Response:
        return json_response(200, self.stats())

    async def handle(self, request: web.BaseRequest) -> web.StreamResponse:
        """Entry point for every request on the serving port."""
        started = time.monotonic()
        method = request.method
        raw_path = request.raw_path
        path = raw_path.partition("?")[0]
        if path == CONN_STATS_PATH and method == "GET":
            return self.conn_stats()
        if self._private(path):
            return self._refuse(OTHER, method, started, 404, "route", "no such route")
        route = self.routes.match(method, path)
        if route is None:
            if self.restrict:
                return self._refuse(OTHER, method, started, 404, "route", "no such route")
            route = OTHER
        try:
            if self.keys is not None and not self.keys.allows(request.headers):
                return self._refuse(route, method, started, 401, "auth", "missing or invalid API key")
            length = request.content_length
            if length is not None and length > self.max_body:
                return self._refuse(route, method, started, 413, "body_too_large", "request body too large")
            if not path.startswith("/"):
                return self._refuse(route, method, started, 400, None, "bad request target")
            chunked = length is None and request.body_exists
            head = self._head(request, raw_path, chunked)
        except BadHeader as error:
            return self._refuse(route, method, started, 400, None, str(error))
        ticket = self.limiter.try_acquire()
        if ticket is None:
            return self._refuse(route, method, started, 429, "concurrency", "at capacity, retry")
        self.metrics.last_request.set(time.time())
        code = CLIENT_CLOSED
        try:
            response, code = await self._forward(request, route, method, head, chunked, started)
            return response
        finally:
            self.limiter.release(ticket)
            self.metrics.observe(route, method_label(method), code, started, time.monotonic())
            if _debug(logging.DEBUG):
                log.debug(
                    "request",
                    extra={"method": method, "path": path, "code": code, "route": route},
                )

    def _refuse(
        self, route: str, method: str, started: float, status: int, reason: str | None, detail: str
    ) -> web.Response:
        if reason is not None:
            self.metrics.reject(reason)
        self.metrics.observe(route, method_label(method), status, started, time.monotonic())
        headers = {"Retry-After": "1"} if status == 429 else None
        if status == 401:
            headers = {"WWW-Authenticate": "Bearer"}
        response = json_response(status, {"detail": detail}, headers)
        if status == 413 or self.draining.value:
            response.force_close()  # do not read (or wait for) an unwanted body
        return response

    def _error(self, status: int, kind: str, detail: str) -> web.Response:
        self.metrics.upstream_error(kind)
        return json_response(status, {"detail": detail})

    def _head(self, request: web.BaseRequest, raw_path: str, chunked: bool) -> bytes:
        """The upstream request head: the client's raw headers minus hop-by-hop ones, plus forwarding."""
        drop = _RAW_DROP
        incoming = request.headers
        connection = incoming.get("Connection")
        if connection:
            names = ascii_bytes("Connection", connection).lower()
            drop = drop | {name.strip() for name in names.split(b",")}
        headers = [(name, value) for name, value in request.raw_headers if name.lower() not in drop]
        remote = request.remote
        forwarded = incoming.get(FORWARDED_FOR)
        if remote:
            forwarded = f"{forwarded}, {remote}" if forwarded else remote
        if forwarded:
            headers.append((_RAW_FORWARDED_FOR, ascii_bytes(FORWARDED_FOR, forwarded)))
        if "X-Forwarded-Proto" not in incoming:
            headers.append((b"X-Forwarded-Proto", request.scheme.encode("ascii")))
        host = incoming.get("Host")
        if host:
            host_bytes = ascii_bytes("Host", host)
            if "X-Forwarded-Host" not in incoming:
                headers.append((b"X-Forwarded-Host", host_bytes))
        if chunked:
            headers.append((b"Transfer-Encoding", b"chunked"))
        assert self.pool is not None  # nosec B101  # narrows the type: the pool is made at startup
        return request_head(request.method, self._prefix + raw_path, self.pool.host_header, headers)

    async def _forward(
        self,
        request: web.BaseRequest,
        route: str,
        method: str,
        head: bytes,
        chunked: bool,
        started: float,
    ) -> tuple[web.StreamResponse, int]:
        assert self.pool is not None  # nosec B101  # narrows the type: the pool is made at startup
        if request.headers.get(EXPECT, "").lower() == EXPECT_CONTINUE:
            await request.writer.write(_CONTINUE)
        body: AsyncIterator[bytes] | None = None
        if chunked:
            body = _Upload(self.max_body).chunked(request.content)
        elif request.body_exists:
            body = _stream(request.content)  # the client's Content-Length is forwarded
        response: web.StreamResponse | None = None
        try:
            async with (
                asyncio.timeout(self.timeout),
                Exchange(self.pool, head, body, head_only=method == "HEAD") as upstream,
            ):
                out_headers = upstream.headers  # ours to change: parsed for this response only
                _strip(out_headers, HOP_BY_HOP)
                # a body already here goes out in the same write as the head; else the head goes at once
                kind = _Coalesced if upstream.ready() else web.StreamResponse
                response = kind(status=upstream.status, reason=upstream.reason, headers=out_headers)
                if self.draining.value:
                    response.force_close()
                tail = (
                    Tail()
                    if 200 <= upstream.status < 300
                    and wants_usage(out_headers.get("Content-Type"), out_headers.get("Content-Encoding"))
                    else None
                )
                await response.prepare(request)
                read = upstream.read
                chunk = await read()
                self.metrics.observe_ttfb(route, time.monotonic() - started)
                while chunk:
                    await response.write(chunk)
                    if tail is not None:
                        tail.feed(chunk)
                    chunk = await read()
                await response.write_eof()
            if tail is not None and (usage := parse_usage(tail.data)) is not None:
                self.metrics.add_usage(*usage)
            return response, upstream.status
        except TimeoutError:
            if response is None:
                self.metrics.upstream_error("timeout")
                return json_response(504, {"detail": "model did not answer in time"}), 504
            return self._truncate(request, response, "timeout")
        except BodyTooLarge:
            return self._refuse_upload()
        except ConnectError as exc:
            log.warning("cannot connect to the model", extra={"error": str(exc)})
            return self._error(502, "connect", "cannot connect to the model"), 502
        except ProtocolError as exc:
            if response is None or not response.prepared:
                log.warning("bad answer from the model", extra={"error": str(exc)})
                return self._error(502, "protocol", "bad response from the model"), 502
            return self._truncate(request, response, "protocol")
        except ConnectionError:
            # writing to our client failed: it went away (handler cancellation usually comes first)
            if response is not None and response.prepared:
                return response, CLIENT_CLOSED
            raise

    def _refuse_upload(self) -> tuple[web.StreamResponse, int]:
        self.metrics.reject("body_too_large")
        response = json_response(413, {"detail": "request body too large"})
        response.force_close()
        return response, 413

    def _truncate(
        self, request: web.BaseRequest, response: web.StreamResponse, kind: str
    ) -> tuple[web.StreamResponse, int]:
        """The status line is gone already: close the connection so the client sees a cut body."""
        self.metrics.upstream_error(kind)
        log.warning("response cut short", extra={"kind": kind, "status": response.status})
        transport = request.transport
        if transport is not None:
            transport.close()
        return response, response.status
