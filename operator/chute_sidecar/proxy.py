"""The serving port: checks (route, auth, body size, concurrency), then a streaming reverse proxy."""

from __future__ import annotations

import asyncio
import json
import logging
import time
from collections.abc import AsyncIterator

import aiohttp
from aiohttp import web
from multidict import CIMultiDict
from yarl import URL

from chute_sidecar.auth import ApiKeys
from chute_sidecar.limiter import Limiter
from chute_sidecar.metrics import Metrics
from chute_sidecar.routes import OTHER, RouteTable, method_label
from chute_sidecar.usage import Tail, parse_usage, wants_usage

log = logging.getLogger("chute_sidecar.proxy")

CONN_STATS_PATH = "/_conn_stats"
# RFC 9110 7.6.1 plus the usual non-standard ones; Host is set by the client for the upstream.
HOP_BY_HOP = (
    "Connection",
    "Keep-Alive",
    "Proxy-Connection",
    "Proxy-Authenticate",
    "Proxy-Authorization",
    "TE",
    "Trailer",
    "Transfer-Encoding",
    "Upgrade",
)
_REQUEST_DROP = (*HOP_BY_HOP, "Host", "Expect")
CLIENT_CLOSED = 499  # nginx's code for "client closed the connection first"
_CONTINUE = b"HTTP/1.1 100 Continue\r\n\r\n"
_debug = log.isEnabledFor


class BodyTooLarge(Exception):
    """A request body without Content-Length grew past the limit while streaming."""


class _Upload:
    """Counts a body of unknown length as it streams to the model."""

    __slots__ = ("exceeded", "limit")

    def __init__(self, limit: int) -> None:
        self.limit = limit
        self.exceeded = False

    async def stream(self, content: aiohttp.StreamReader) -> AsyncIterator[bytes]:
        seen = 0
        while chunk := await content.readany():
            seen += len(chunk)
            if seen > self.limit:
                self.exceeded = True
                raise BodyTooLarge
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


class Draining:
    """Shared flag: set once SIGTERM has been received."""

    __slots__ = ("value",)

    def __init__(self) -> None:
        self.value = False


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
    ) -> None:
        base = URL(upstream)
        self._scheme = base.scheme
        self._host = base.raw_host or "127.0.0.1"
        self._port = base.explicit_port
        self._prefix = base.raw_path.rstrip("/")
        self.limiter = limiter
        self.metrics = metrics
        self.routes = routes
        self.restrict = restrict_to_routes
        self.keys = keys
        self.max_body = max_body_bytes
        self.timeout = request_timeout
        self.draining = draining
        self.session: aiohttp.ClientSession | None = None

    async def start(self) -> None:
        """One client session for the life of the sidecar, its pool sized to the concurrency."""
        self.session = aiohttp.ClientSession(
            connector=aiohttp.TCPConnector(
                limit=self.limiter.capacity,
                keepalive_timeout=4.0,  # below uvicorn's 5 s default, so the model never closes first
                enable_cleanup_closed=False,
            ),
            auto_decompress=False,
            skip_auto_headers=("User-Agent", "Accept", "Accept-Encoding", "Content-Type"),
            cookie_jar=aiohttp.DummyCookieJar(),
            timeout=aiohttp.ClientTimeout(total=None, connect=None),
            trust_env=False,
        )

    async def close(self) -> None:
        if self.session is not None:
            await self.session.close()
            self.session = None

    def conn_stats(self) -> web.Response:
        return json_response(200, self.limiter.stats())

    async def handle(self, request: web.BaseRequest) -> web.StreamResponse:
        """Entry point for every request on the serving port."""
        started = time.monotonic()
        method = request.method
        raw_path = request.raw_path
        path, _, query = raw_path.partition("?")
        if path == CONN_STATS_PATH and method == "GET":
            return self.conn_stats()
        route = self.routes.match(method, path)
        if route is None:
            if self.restrict:
                return self._refuse(OTHER, method, started, 404, "route", "no such route")
            route = OTHER
        if self.keys is not None and not self.keys.allows(request.headers):
            return self._refuse(route, method, started, 401, "auth", "missing or invalid API key")
        length = request.content_length
        if length is not None and length > self.max_body:
            return self._refuse(route, method, started, 413, "body_too_large", "request body too large")
        if not path.startswith("/"):
            return self._refuse(route, method, started, 400, None, "bad request target")
        ticket = self.limiter.try_acquire()
        if ticket is None:
            return self._refuse(route, method, started, 429, "concurrency", "at capacity, retry")
        self.metrics.last_request.set(time.time())
        code = CLIENT_CLOSED
        try:
            response, code = await self._forward(request, route, method, path, query, length, started)
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

    async def _forward(
        self,
        request: web.BaseRequest,
        route: str,
        method: str,
        path: str,
        query: str,
        length: int | None,
        started: float,
    ) -> tuple[web.StreamResponse, int]:
        assert self.session is not None
        headers = CIMultiDict(request.headers)
        if headers.get("Expect", "").lower() == "100-continue":
            await request.writer.write(_CONTINUE)
        _strip(headers, _REQUEST_DROP)
        remote = request.remote
        if remote:
            forwarded = headers.get("X-Forwarded-For")
            headers["X-Forwarded-For"] = f"{forwarded}, {remote}" if forwarded else remote
        host = request.headers.get("Host")
        if host:
            headers.setdefault("X-Forwarded-Host", host)
        headers.setdefault("X-Forwarded-Proto", request.scheme)

        upload: _Upload | None = None
        data: object = None
        if request.body_exists:
            if length is not None:
                data = request.content  # streamed with the client's Content-Length
            else:
                upload = _Upload(self.max_body)
                data = upload.stream(request.content)  # streamed chunked, counted
        url = URL.build(
            scheme=self._scheme,
            host=self._host,
            port=self._port,
            path=self._prefix + path,
            query_string=query,
            encoded=True,
        )
        response: web.StreamResponse | None = None
        try:
            async with (
                asyncio.timeout(self.timeout),
                self.session.request(
                    method, url, headers=headers, data=data, allow_redirects=False
                ) as upstream,
            ):
                out_headers = CIMultiDict(upstream.headers)
                _strip(out_headers, HOP_BY_HOP)
                response = web.StreamResponse(
                    status=upstream.status, reason=upstream.reason, headers=out_headers
                )
                if self.draining.value:
                    response.force_close()
                tail = (
                    Tail()
                    if 200 <= upstream.status < 300
                    and wants_usage(upstream.content_type, upstream.headers.get("Content-Encoding"))
                    else None
                )
                await response.prepare(request)
                read = upstream.content.readany
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
            return self._refuse_upload(route, method, started)
        except aiohttp.ClientConnectorError as exc:
            log.warning("cannot connect to the model", extra={"error": str(exc)})
            return self._error(502, "connect", "cannot connect to the model"), 502
        except ConnectionError as exc:
            # a failed write to our client (ClientConnectionResetError) lands here too, once prepared
            if response is not None and response.prepared and request.transport is None:
                return response, CLIENT_CLOSED
            if upload is not None and upload.exceeded:
                return self._refuse_upload(route, method, started)
            return self._protocol_error(request, response, exc)
        except aiohttp.ClientError as exc:
            if upload is not None and upload.exceeded:
                return self._refuse_upload(route, method, started)
            return self._protocol_error(request, response, exc)

    def _refuse_upload(self, route: str, method: str, started: float) -> tuple[web.StreamResponse, int]:
        self.metrics.reject("body_too_large")
        response = json_response(413, {"detail": "request body too large"})
        response.force_close()
        return response, 413

    def _protocol_error(
        self, request: web.BaseRequest, response: web.StreamResponse | None, exc: BaseException
    ) -> tuple[web.StreamResponse, int]:
        if response is None or not response.prepared:
            log.warning("model connection failed", extra={"error": f"{type(exc).__name__}: {exc}"})
            return self._error(502, "protocol", "bad response from the model"), 502
        return self._truncate(request, response, "protocol")

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
