"""The sidecar's own ports besides serving: admin (probes and the drain, for the kubelet; never in the
Service) and metrics (``/metrics``, ``/_conn_stats``; what the Service may publish). Never behind auth."""

from __future__ import annotations

import hmac
import logging
from collections.abc import Awaitable, Callable
from typing import Any

from aiohttp import web

from chute_shared import paths
from chute_shared.headers import DRAIN_TOKEN_HEADER
from chute_sidecar.health import ModelHealth
from chute_sidecar.metrics import CONTENT_TYPE, Metrics
from chute_sidecar.proxy import Draining, json_response
from chute_sidecar.relay import EngineMetrics

log = logging.getLogger("chute_sidecar.admin")


def _status(ok: bool, reason: str) -> web.Response:
    return web.Response(status=200 if ok else 503, text="ok\n" if ok else reason + "\n")


def _token_matches(presented: str | None, token: str) -> bool:
    if presented is None:
        return False
    try:
        raw = presented.encode("utf-8", "surrogateescape")
    except UnicodeError:
        return False
    return hmac.compare_digest(raw, token.encode())


def admin_app(
    health: ModelHealth,
    draining: Draining,
    drain: Callable[[], Awaitable[int]],
    drain_token: str | None,
) -> web.Application:
    """``/livez``, ``/startupz``, ``/readyz``, ``/modelz``, ``/drainz``."""

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

    async def drainz(request: web.Request) -> web.Response:
        """The model container's preStop hook: returns once in-flight requests are done (or time is up)."""
        presented = request.headers.get(DRAIN_TOKEN_HEADER)
        if drain_token is not None and not _token_matches(presented, drain_token):
            log.warning("drain refused: missing or wrong drain token", extra={"remote": request.remote})
            return json_response(403, {"detail": f"missing or wrong {DRAIN_TOKEN_HEADER}"})
        left = await drain()
        return json_response(200, {"in_flight": left})

    app = web.Application()
    app.router.add_get(paths.LIVE_PATH, livez)
    app.router.add_get(paths.STARTUP_PATH, startupz)
    app.router.add_get(paths.READY_PATH, readyz)
    app.router.add_get(paths.MODEL_LIVE_PATH, modelz)
    app.router.add_get(paths.DRAIN_PATH, drainz)
    return app


def metrics_app(
    stats: Callable[[], dict[str, Any]], metrics: Metrics, engine: EngineMetrics | None = None
) -> web.Application:
    """``/metrics`` (the sidecar's series, then the model's when ``engine`` relays them) and
    ``/_conn_stats``: read-only, safe to publish."""

    async def metrics_page(request: web.Request) -> web.Response:
        relayed = await engine.scrape() if engine is not None else b""
        response = web.Response(body=metrics.render() + relayed)
        response.headers["Content-Type"] = CONTENT_TYPE
        return response

    async def conn_stats(request: web.Request) -> web.Response:
        return json_response(200, stats())

    app = web.Application()
    app.router.add_get(paths.METRICS_PATH, metrics_page)
    app.router.add_get(paths.CONN_STATS_PATH, conn_stats)
    return app
