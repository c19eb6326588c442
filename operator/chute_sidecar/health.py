"""The model's health, polled in the background; probes only read the state kept here."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Callable

import aiohttp

from chute_sidecar.metrics import Metrics

log = logging.getLogger("chute_sidecar.health")

FAILURES_BEFORE_DEAD = 3
STARTUP_POLL_SECONDS = 0.05
"""While the model loads it is polled this often (at most), so the pod is ready within a fraction of a
second of the model: a held request at zero waits for exactly this (docs/scale-to-zero.md)."""


class ModelHealth:
    """State of the model server as seen by the last polls of its health path.

    The kubelet probes a container's startup once per container instance, until it passes, and its
    liveness only after that. So the state is kept per *startup phase*: one begins when the sidecar
    starts and again at the first startup probe after the kubelet has seen the current instance
    started (``/startupz`` answered 200), judged its liveness (``/modelz``) or stopped it (``/drainz``,
    its preStop hook): that probe comes from the model container's next instance.

    ``started``: it answered 2xx in this startup phase (a poll sent before the phase began never counts).
    ``up``: the last poll answered 2xx.
    ``alive``: what ``/modelz`` reports, false once a model started in this phase failed
    :data:`FAILURES_BEFORE_DEAD` polls in a row, or when it has not started within the startup timeout
    of this phase.
    """

    def __init__(
        self,
        url: str,
        *,
        interval: float,
        timeout: float,
        startup_timeout: float,
        metrics: Metrics,
        on_start: Callable[[], None] | None = None,
    ) -> None:
        self.url = url
        self.interval = interval
        self.timeout = timeout
        self.startup_timeout = startup_timeout
        self.metrics = metrics
        self.on_start = on_start
        self.started = False
        self.up = False
        self.failures = 0
        self.startup_expired = False
        self.polls = 0
        self.phase = 0
        self._born = time.monotonic()
        self._instance_seen = False  # the kubelet has seen this phase's instance started, live or stopped
        self._wake = asyncio.Event()
        self._task: asyncio.Task[None] | None = None
        self._session: aiohttp.ClientSession | None = None

    @property
    def alive(self) -> bool:
        if not self.started:
            return not self.startup_expired
        return self.failures < FAILURES_BEFORE_DEAD

    def startup_probe(self) -> bool:
        """Answer the model container's startup probe (``/startupz``)."""
        if self._instance_seen:
            self._new_phase()
        if self.started:
            self._instance_seen = True
        return self.started

    def liveness_probe(self) -> bool:
        """Answer the model container's liveness probe (``/modelz``): the kubelet runs it only once
        the instance passed its startup probe."""
        self._instance_seen = True
        return self.alive

    def instance_stopping(self) -> None:
        """The model container's preStop hook ran: this instance ends, a next one starts anew."""
        self._instance_seen = True

    def _new_phase(self) -> None:
        self.phase += 1
        self._instance_seen = False
        self._born = time.monotonic()
        self.started = False
        self.failures = 0
        self.startup_expired = False
        self.metrics.model_started.set(0)
        log.info("model container restarted: new startup phase", extra={"phase": self.phase})
        self._wake.set()  # poll at the startup pace from now, not after the current interval

    async def poll_once(self) -> bool:
        """One GET of the health path; updates the state and returns whether it answered 2xx."""
        assert self._session is not None  # nosec B101  # narrows the type: the session is opened in start()
        phase = self.phase
        error = ""
        try:
            async with self._session.get(self.url, allow_redirects=False) as response:
                ok = 200 <= response.status < 300
                if not ok:
                    error = f"status {response.status}"
        except (aiohttp.ClientError, TimeoutError, OSError) as exc:
            ok = False
            error = f"{type(exc).__name__}: {exc}"
        self.polls += 1
        if phase == self.phase:  # else the answer may come from the previous instance
            self._record(ok, error)
        return ok

    def _record(self, ok: bool, error: str) -> None:
        if ok:
            if not self.started:
                self.started = True
                self.metrics.model_started.set(1)
                log.info(
                    "model started",
                    extra={"after_seconds": round(time.monotonic() - self._born, 3), "phase": self.phase},
                )
                if self.on_start is not None:
                    self.on_start()
            elif not self.up:
                log.info("model up again", extra={"after_failures": self.failures})
            self.up = True
            self.failures = 0
            self.metrics.model_up.set(1)
            return
        if self.started:
            self.failures += 1
            if self.up:
                log.warning("model health poll failed", extra={"error": error})
            if self.failures == FAILURES_BEFORE_DEAD:
                log.error(
                    "model failed its health polls: /modelz now 503",
                    extra={"failures": self.failures, "error": error},
                )
        elif not self.startup_expired and time.monotonic() - self._born > self.startup_timeout:
            self.startup_expired = True
            log.error(
                "model did not start within the startup timeout: /modelz now 503",
                extra={"startup_timeout_seconds": self.startup_timeout, "error": error},
            )
        self.up = False
        self.metrics.model_up.set(0)

    async def _run(self) -> None:
        while True:
            self._wake.clear()
            await self.poll_once()
            delay = self.interval if self.started else min(self.interval, STARTUP_POLL_SECONDS)
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._wake.wait(), delay)

    async def start(self) -> None:
        """Start polling in the background."""
        self._session = aiohttp.ClientSession(
            connector=aiohttp.TCPConnector(limit=2),
            timeout=aiohttp.ClientTimeout(total=self.timeout),
            cookie_jar=aiohttp.DummyCookieJar(),
        )
        self._task = asyncio.create_task(self._run(), name="model-health")

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None
        if self._session is not None:
            await self._session.close()
            self._session = None
