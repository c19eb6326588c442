"""The admin port: probes, Prometheus metrics and connection stats; never behind auth."""

from __future__ import annotations

from collections.abc import Awaitable, Callable

from aiohttp import web

from chute_sidecar.health import ModelHealth
from chute_sidecar.limiter import Limiter
from chute_sidecar.metrics import CONTENT_TYPE, Metrics
from chute_sidecar.proxy import CONN_STATS_PATH, Draining, json_response


def _status(ok: bool, reason: str) -> web.Response:
    return web.Response(status=200 if ok else 503, text="ok\n" if ok else reason + "\n")


def admin_app(
    health: ModelHealth,
    limiter: Limiter,
    metrics: Metrics,
    draining: Draining,
    drain: Callable[[], Awaitable[int]],
) -> web.Application:
    """``/livez``, ``/startupz``, ``/readyz``, ``/modelz``, ``/metrics``, ``/_conn_stats``, ``/drainz``."""

    async def livez(request: web.Request) -> web.Response:
        return _status(True, "")

    async def startupz(request: web.Request) -> web.Response:
        return _status(health.startup_probe(), "model not started")

    async def readyz(request: web.Request) -> web.Response:
        if draining.value:
            return _status(False, "draining")
        return _status(health.up, "model not healthy" if health.started else "model not started")

    async def modelz(request: web.Request) -> web.Response:
        return _status(health.liveness_probe(), "model failed its health polls")

    async def metrics_page(request: web.Request) -> web.Response:
        response = web.Response(body=metrics.render())
        response.headers["Content-Type"] = CONTENT_TYPE
        return response

    async def conn_stats(request: web.Request) -> web.Response:
        return json_response(200, limiter.stats())

    async def drainz(request: web.Request) -> web.Response:
        """The model container's preStop hook: returns once in-flight requests are done (or time is up)."""
        left = await drain()
        return json_response(200, {"in_flight": left})

    app = web.Application()
    app.router.add_get("/livez", livez)
    app.router.add_get("/startupz", startupz)
    app.router.add_get("/readyz", readyz)
    app.router.add_get("/modelz", modelz)
    app.router.add_get("/metrics", metrics_page)
    app.router.add_get(CONN_STATS_PATH, conn_stats)
    app.router.add_get("/drainz", drainz)
    return app
