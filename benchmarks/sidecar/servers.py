"""Helper servers for the sidecar benchmark, each run as its own process.

``sse PORT``: a model stub streaming ``CHUNKS`` SSE events ``GAP`` seconds apart on any path, 200 on /health.
``proto PORT UPSTREAM CLIENT LOOP``: a minimal streaming reverse proxy (aiohttp low-level server) whose
upstream client is ``aiohttp`` (ClientSession), ``httpx`` (AsyncClient) or ``lean`` (the sidecar's own
chute_sidecar.upstream), on the ``uvloop`` or ``asyncio`` event loop; it isolates the cost of the
client library and of the loop from everything else the sidecar does.
"""

from __future__ import annotations

import asyncio
import sys
from collections.abc import Callable, Coroutine
from typing import Any

from aiohttp import web

LOOPBACK = "127.0.0.1"
CHUNKS = 20
GAP = 0.05


def run(main: Callable[[], Coroutine[Any, Any, None]], loop: str) -> None:
    if loop == "uvloop":
        import uvloop

        uvloop.run(main())
    else:
        asyncio.run(main())


async def serve_forever(handler: Any, port: int) -> None:
    server = web.Server(handler, access_log=None, handler_cancellation=True)
    runner = web.ServerRunner(server)
    await runner.setup()
    await web.TCPSite(runner, "127.0.0.1", port, backlog=4096).start()
    print("ready", flush=True)
    await asyncio.Event().wait()


def sse_stub(port: int) -> None:
    async def handler(request: web.BaseRequest) -> web.StreamResponse:
        if request.path == "/health":
            return web.Response(text="ok")
        response = web.StreamResponse(
            headers={"Content-Type": "text/event-stream", "Cache-Control": "no-cache"}
        )
        await response.prepare(request)
        for index in range(CHUNKS):
            await response.write(b'data: {"i": %d, "choices": [{"delta": {"content": "tok"}}]}\n\n' % index)
            if index < CHUNKS - 1:
                await asyncio.sleep(GAP)
        await response.write(b"data: [DONE]\n\n")
        await response.write_eof()
        return response

    async def main() -> None:
        await serve_forever(handler, port)

    run(main, "uvloop")


HOP = ("Connection", "Keep-Alive", "Transfer-Encoding", "Upgrade", "TE", "Trailer", "Host")


def proto(port: int, upstream: str, client: str, loop: str) -> None:
    async def main() -> None:
        if client == "aiohttp":
            import aiohttp

            session = aiohttp.ClientSession(
                connector=aiohttp.TCPConnector(limit=256),
                auto_decompress=False,
                skip_auto_headers=("User-Agent", "Accept", "Accept-Encoding", "Content-Type"),
            )

            async def handler(request: web.BaseRequest) -> web.StreamResponse:
                headers = {k: v for k, v in request.headers.items() if k not in HOP}
                async with session.request(
                    request.method, upstream + request.raw_path, headers=headers, allow_redirects=False
                ) as up:
                    out = web.StreamResponse(
                        status=up.status, headers={k: v for k, v in up.headers.items() if k not in HOP}
                    )
                    await out.prepare(request)
                    while chunk := await up.content.readany():
                        await out.write(chunk)
                    await out.write_eof()
                    return out

        elif client == "lean":
            from yarl import URL

            from chute_sidecar.upstream import Exchange, Pool, request_head

            base = URL(upstream)
            pool = Pool(base.host or LOOPBACK, base.port or 80, max_idle=256)
            drop = {name.lower().encode() for name in HOP}

            async def handler(request: web.BaseRequest) -> web.StreamResponse:
                headers = [(k, v) for k, v in request.raw_headers if k.lower() not in drop]
                head = request_head(request.method, request.raw_path, pool.host_header, headers)
                async with Exchange(pool, head, None) as up:
                    out = web.StreamResponse(
                        status=up.status, headers={k: v for k, v in up.headers.items() if k not in HOP}
                    )
                    await out.prepare(request)
                    while chunk := await up.read():
                        await out.write(chunk)
                    await out.write_eof()
                    return out

        else:
            import httpx

            http = httpx.AsyncClient(
                limits=httpx.Limits(max_connections=256, max_keepalive_connections=256), timeout=None
            )

            async def handler(request: web.BaseRequest) -> web.StreamResponse:
                headers = {k: v for k, v in request.headers.items() if k not in HOP}
                up_request = http.build_request(request.method, upstream + request.raw_path, headers=headers)
                up = await http.send(up_request, stream=True)
                try:
                    out = web.StreamResponse(
                        status=up.status_code, headers={k: v for k, v in up.headers.items() if k not in HOP}
                    )
                    await out.prepare(request)
                    async for chunk in up.aiter_raw():
                        await out.write(chunk)
                    await out.write_eof()
                    return out
                finally:
                    await up.aclose()

        await serve_forever(handler, port)

    run(main, loop)


if __name__ == "__main__":
    kind, *args = sys.argv[1:]
    if kind == "sse":
        sse_stub(int(args[0]))
    elif kind == "proto":
        proto(int(args[0]), args[1], args[2], args[3])
    else:
        raise SystemExit(f"unknown server {kind!r}")
