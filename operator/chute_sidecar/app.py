"""Assembles the sidecar: model health poller, proxy on the serving port, metrics and admin ports."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time

from aiohttp import web

from chute_sidecar.admin import admin_app, metrics_app
from chute_sidecar.auth import ApiKeys
from chute_sidecar.config import Config
from chute_sidecar.health import ModelHealth
from chute_sidecar.limiter import Limiter
from chute_sidecar.metrics import Metrics
from chute_sidecar.proxy import Draining, Proxy
from chute_sidecar.relay import EngineMetrics
from chute_sidecar.routes import RouteTable

log = logging.getLogger("chute_sidecar")

_GRACE_AFTER_DEADLINE = 1.0  # cleanup's own wait once the shutdown deadline has passed
_POLL = 0.05


class Sidecar:
    """One sidecar instance; :meth:`start`, then :meth:`shutdown` (graceful) or :meth:`stop`."""

    def __init__(self, config: Config) -> None:
        self.config = config
        self.limiter = Limiter(config.concurrency)
        self.metrics = Metrics(config.concurrency)
        self.metrics.bind_limiter(lambda: self.limiter.in_flight, self.limiter.utilization)
        self.draining = Draining()
        self.health = ModelHealth(
            config.upstream + config.health_path,
            interval=config.health_interval_seconds,
            timeout=config.health_timeout_seconds,
            startup_timeout=config.startup_timeout_seconds,
            metrics=self.metrics,
            on_start=self._model_started,
        )
        self.proxy = Proxy(
            upstream=config.upstream,
            limiter=self.limiter,
            metrics=self.metrics,
            routes=RouteTable.from_strings(config.cords),
            restrict_to_routes=config.restrict_to_cords,
            keys=ApiKeys(config.api_key_file) if config.api_key_file else None,
            max_body_bytes=config.max_body_bytes,
            request_timeout=config.request_timeout_seconds,
            draining=self.draining,
            model_ready=lambda: self.health.up,
            private_paths=frozenset(filter(None, [config.engine_metrics_path])),
        )
        self.engine = (
            EngineMetrics(config.upstream, config.engine_metrics_path, self.metrics)
            if config.engine_metrics_path
            else None
        )
        self._server: web.Server | None = None
        self._serving: web.ServerRunner | None = None
        self._serving_site: web.TCPSite | None = None
        self._admin: web.AppRunner | None = None
        self._metrics: web.AppRunner | None = None
        self.port = 0
        self.metrics_port = 0
        self.admin_port = 0

    async def start(self) -> None:
        """Bind the three ports and start polling the model."""
        config = self.config
        await self.proxy.start()
        if self.engine is not None:
            await self.engine.start()
        await self.health.start()
        self._server = web.Server(
            self.proxy.handle,
            handler_cancellation=True,  # a client that goes away cancels its upstream request
            access_log=None,
            auto_decompress=False,  # bodies pass through as sent
        )
        self._serving = web.ServerRunner(self._server, shutdown_timeout=_GRACE_AFTER_DEADLINE)
        await self._serving.setup()
        self._serving_site = web.TCPSite(self._serving, config.host, config.port, backlog=1024)
        await self._serving_site.start()
        self._metrics = web.AppRunner(
            metrics_app(self.proxy.stats, self.metrics, self.engine),
            access_log=None,
            shutdown_timeout=_GRACE_AFTER_DEADLINE,
        )
        await self._metrics.setup()
        await web.TCPSite(self._metrics, config.host, config.metrics_port).start()
        self._admin = web.AppRunner(
            admin_app(self.health, self.draining, self.drain_for_model_stop, config.drain_token),
            access_log=None,
            shutdown_timeout=_GRACE_AFTER_DEADLINE,
        )
        await self._admin.setup()
        await web.TCPSite(self._admin, config.host, config.admin_port).start()
        self.port = self._serving.addresses[0][1]
        self.metrics_port = self._metrics.addresses[0][1]
        self.admin_port = self._admin.addresses[0][1]
        log.info(
            "sidecar started",
            extra={
                "port": self.port,
                "metrics_port": self.metrics_port,
                "admin_port": self.admin_port,
                "upstream": config.upstream,
                "concurrency": config.concurrency,
                "cords": list(config.cords),
                "restrict_to_cords": config.restrict_to_cords,
                "auth": config.api_key_file is not None,
                "drain_token": config.drain_token is not None,
                "engine_metrics_path": config.engine_metrics_path,
            },
        )

    async def drain_for_model_stop(self) -> int:
        """The model is about to be stopped (its preStop hook calls ``/drainz``): turn unready at once,
        keep serving ``drain_seconds`` while endpoints update, then wait until nothing is in flight,
        for at most ``shutdown_timeout_seconds``. Returns what is still in flight."""
        config = self.config
        self.draining.set(model_stop=True)
        self.metrics.draining.set(1)
        self.health.instance_stopping()
        log.info("draining before the model stops", extra={"in_flight": self.limiter.in_flight})
        await asyncio.sleep(config.drain_seconds)
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(config.shutdown_timeout_seconds):
                await self.limiter.wait_idle()
        return self.limiter.in_flight

    def _model_started(self) -> None:
        """The model answered in a new startup phase: a drain for the previous instance's stop is over
        (the kubelet runs the preStop hook before a probe-triggered restart too)."""
        if self.draining.for_model_stop:
            self.draining.set(model_stop=False)
            self.metrics.draining.set(1 if self.draining.value else 0)
            log.info("model container back after a restart: drain over")

    async def shutdown(self, hurry: asyncio.Event | None = None) -> None:
        """Graceful stop: unready at once, serve ``drain_seconds`` more, close the listener, then let
        in-flight requests finish for at most ``shutdown_timeout_seconds``."""
        config = self.config
        hurry = hurry or asyncio.Event()
        self.draining.set(shutdown=True)
        self.metrics.draining.set(1)
        log.info(
            "draining",
            extra={"drain_seconds": config.drain_seconds, "in_flight": self.limiter.in_flight},
        )
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(hurry.wait(), config.drain_seconds)
        deadline = time.monotonic() + config.shutdown_timeout_seconds
        if self._serving_site is not None:
            await self._serving_site.stop()  # no new connections
        if self._server is not None:
            self._server.pre_shutdown()  # idle keep-alive connections close, busy ones after their response
            while self._server.connections and time.monotonic() < deadline and not hurry.is_set():
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(hurry.wait(), _POLL)
            left = len(self._server.connections)
            if left:
                log.warning(
                    "shutdown timeout: cancelling requests still in flight", extra={"connections": left}
                )
        await self.stop()
        log.info("sidecar stopped")

    async def stop(self) -> None:
        """Close everything now (requests still running get :data:`_GRACE_AFTER_DEADLINE`)."""
        if self._serving is not None:
            await self._serving.cleanup()
            self._serving = None
        if self._admin is not None:
            await self._admin.cleanup()
            self._admin = None
        if self._metrics is not None:
            await self._metrics.cleanup()
            self._metrics = None
        await self.health.stop()
        if self.engine is not None:
            await self.engine.close()
        await self.proxy.close()
