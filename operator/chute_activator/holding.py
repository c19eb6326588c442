"""Holding requests per Chute until a replica is ready: a bounded queue and a bounded wait per Chute.

The source of truth (the Kubernetes API in production, a test otherwise) calls :meth:`Holder.update`;
a request first finds its Chute by the activator port it arrived on (:meth:`Holder.resolve`), then
calls :meth:`Holder.acquire`, which returns a ready endpoint or raises :class:`Rejected`.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import logging
import math
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field

from chute_activator.metrics import Metrics
from chute_activator.state import ChuteState, Key, port_owner

log = logging.getLogger("chute_activator")

WakeCallback = Callable[[Key], Awaitable[None]]


class Rejected(Exception):
    """The activator answers the request itself: 404 (no such Chute) or 503 (cannot serve it now)."""

    def __init__(self, status: int, reason: str, message: str, retry_after: int | None = None) -> None:
        super().__init__(message)
        self.status, self.reason, self.message, self.retry_after = status, reason, message, retry_after


@dataclass
class _Gate:
    state: ChuteState | None = None
    waiting: int = 0
    changed: asyncio.Event = field(default_factory=asyncio.Event)
    last_wake: float = -math.inf
    wake_started: float | None = None
    measured_load: float | None = None
    turn: itertools.count[int] = field(default_factory=itertools.count)
    timeline: dict[str, float | str] | None = None
    """Wall-clock times (``time.time()``) of the latest wake, as the activator saw it (``/_chutes``)."""
    reasons: set[str] = field(default_factory=set)
    """The reasons of its labelled rejection series (dropped with the gate)."""

    def notify(self) -> None:
        self.changed.set()
        self.changed = asyncio.Event()


def retry_after_seconds(load_seconds: float | None, default: int) -> int:
    """Retry-After for a 503: the Chute's measured load time (a replica should be ready by then)."""
    if load_seconds is None:
        return default
    return max(1, min(600, math.ceil(load_seconds)))


UNKNOWN_CHUTES_FULL = "UnknownChutesFull"
"""The reason of a 503 when ``unknown_limit`` requests already wait on ports no Chute has (yet)."""
PORT_CLAIMED_TWICE = "PortClaimedTwice"
"""The reason of a 503 on a port two Chutes' statuses name (one edited by hand): neither is served."""
UNKNOWN_CHUTE = "UnknownChute"
"""The reason of a 404: no Chute has the port the request arrived on."""
UNCLAIMED_PORT_WAIT_SECONDS = 2.0
"""After the first listing, how long a request on a port no Chute has waits for one to claim it: the
operator writes a Chute's port in its status before the EndpointSlice that sends traffic there, but
this activator's watch may see the status a moment after kube-proxy sends the first connection."""


class Holder:
    """Gates of the Chutes the source reports, and the port each Chute's requests arrive on. Nothing
    a client sends adds a gate or a series: a request on a port no Chute has waits (at most
    ``unknown_limit`` such requests at a time) for the first listing, or briefly for a claim, then is
    answered 404."""

    def __init__(
        self,
        wake: WakeCallback,
        metrics: Metrics,
        *,
        queue_limit: int = 10,
        max_wait_seconds: float = 300.0,
        wake_interval_seconds: float = 5.0,
        default_retry_after: int = 10,
        unknown_limit: int = 100,
        unclaimed_wait_seconds: float = UNCLAIMED_PORT_WAIT_SECONDS,
    ) -> None:
        self.wake, self.metrics = wake, metrics
        self.queue_limit, self.max_wait = queue_limit, max_wait_seconds
        self.wake_interval, self.default_retry_after = wake_interval_seconds, default_retry_after
        self.unknown_limit = unknown_limit
        """Requests that may wait at one time on ports no Chute has (yet)."""
        self.unclaimed_wait = unclaimed_wait_seconds
        self.synced = False
        """Whether the source has listed every Chute once (until then an unknown Chute is waited for)."""
        self.draining = False
        """SIGTERM: unready (the operator takes this activator out of the slices), still serving."""
        self.stopping = False
        """The drain is over: held requests are answered 503."""
        self._gates: dict[Key, _Gate] = {}
        self._claims: dict[int, dict[Key, str]] = {}
        """Port -> the Chutes whose status names it (with their creationTimestamp): one, normally."""
        self._unclaimed_waiting = 0
        self._ports_changed = asyncio.Event()

    # -- the source's side -------------------------------------------------------------------

    def update(self, key: Key, state: ChuteState | None) -> None:
        """The Chute's latest state; None when it was deleted (or does not exist)."""
        gate = self._gates.get(key)
        if gate is None:
            if state is None:
                return
            gate = self._gates[key] = _Gate()
        if gate.state and not gate.state.endpoints and state and state.endpoints and gate.wake_started:
            gate.measured_load = time.monotonic() - gate.wake_started
            gate.wake_started = None
            log.info("chute ready after wake", extra={"chute": "/".join(key), "seconds": gate.measured_load})
        if gate.timeline is not None and state and state.endpoints and "ready_seen" not in gate.timeline:
            gate.timeline["ready_seen"] = time.time()
            gate.timeline["ready_source"] = state.source
        before = gate.state.port if gate.state else None
        gate.state = state if state is not None else ChuteState(exists=False)
        self._claim(key, before, gate.state.port, gate.state.created)
        if state is None and gate.waiting == 0:
            self._drop(key, gate)
        gate.notify()

    def _claim(self, key: Key, before: int | None, after: int | None, created: str) -> None:
        """Move the Chute's claim from port ``before`` to ``after`` (None: no port)."""
        if before is not None and before != after:
            claims = self._claims.get(before, {})
            claims.pop(key, None)
            if not claims:
                self._claims.pop(before, None)
        if after is not None:
            self._claims.setdefault(after, {})[key] = created
        if before != after:
            self._ports_changed.set()
            self._ports_changed = asyncio.Event()

    def chute_at(self, port: int) -> Key | None:
        """The Chute whose requests arrive on ``port`` (None: no Chute, or two, claim it)."""
        return port_owner(self._claims.get(port, {}))

    def ports(self) -> dict[int, Key]:
        """Every claimed port and the Chute that has it."""
        return {port: owner for port in self._claims if (owner := self.chute_at(port)) is not None}

    def _drop(self, key: Key, gate: _Gate) -> None:
        """Forget a Chute that does not exist once nothing waits for it: its gate and its series."""
        if self._gates.get(key) is not gate:
            return
        del self._gates[key]
        self.metrics.forget(key, gate.reasons)

    def mark_synced(self) -> None:
        self.synced = True
        for gate in self._gates.values():
            gate.notify()
        self._ports_changed.set()
        self._ports_changed = asyncio.Event()

    def drain(self) -> None:
        """Shutting down: unready at once, but requests are still forwarded and held."""
        self.draining = True

    def stop_holding(self) -> None:
        """Shutting down: every held request is answered 503 with Retry-After at once."""
        self.stopping = True
        for gate in self._gates.values():
            gate.notify()
        self._ports_changed.set()
        self._ports_changed = asyncio.Event()

    # -- the request's side ------------------------------------------------------------------

    def known(self) -> dict[Key, ChuteState]:
        return {k: g.state for k, g in self._gates.items() if g.state is not None and g.state.exists}

    async def resolve(self, port: int) -> Key:
        """The Chute of a request that arrived on activator port ``port``. A port no Chute has: the
        request waits for the first listing (or, after it, :data:`UNCLAIMED_PORT_WAIT_SECONDS` for a
        claim), at most ``unknown_limit`` such requests at a time (503 beyond), then 404."""
        key = self.chute_at(port)
        if key is not None:
            return key
        if len(self._claims.get(port, {})) > 1:
            self.metrics.unknown_rejected.inc()
            message = f"activator port {port} is named by the status of {len(self._claims[port])} Chutes"
            raise Rejected(503, PORT_CLAIMED_TWICE, message, self.default_retry_after)
        if self._unclaimed_waiting >= self.unknown_limit:
            self.metrics.unknown_rejected.inc()
            message = f"{self.unknown_limit} requests already wait on ports no Chute has"
            raise Rejected(503, UNKNOWN_CHUTES_FULL, message, self.default_retry_after)
        self._unclaimed_waiting += 1
        start = time.monotonic()
        try:
            while True:
                key = self.chute_at(port)
                if key is not None:
                    return key
                if self.stopping:
                    self.metrics.unknown_rejected.inc()
                    raise Rejected(
                        503, "ActivatorStopping", "the activator is restarting", self.default_retry_after
                    )
                waited = time.monotonic() - start
                limit = self.unclaimed_wait if self.synced else self.max_wait
                if waited >= limit:
                    self.metrics.unknown_rejected.inc()
                    raise Rejected(404, UNKNOWN_CHUTE, f"no Chute has activator port {port}")
                changed = self._ports_changed
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(changed.wait(), limit - waited)
        finally:
            self._unclaimed_waiting -= 1

    def waiting(self) -> list[Key]:
        """Chutes with held requests and no ready endpoint: the source looks harder for one."""
        return [
            k
            for k, g in self._gates.items()
            if g.waiting and g.state is not None and g.state.exists and not g.state.endpoints
        ]

    def _exists(self, key: Key) -> bool:
        gate = self._gates.get(key)
        return gate is not None and gate.state is not None and gate.state.exists

    def count_rejected(self, key: Key, reason: str) -> None:
        """A request answered by the activator: in the Chute's series, or (a Chute that does not
        exist) in the one unlabelled series of unknown Chutes."""
        gate = self._gates.get(key)
        if gate is None or not self._exists(key):
            self.metrics.unknown_rejected.inc()
            return
        gate.reasons.add(reason)
        self.metrics.rejected.labels(*key, reason).inc()

    def count_forwarded(self, key: Key) -> None:
        """A replica answered a request of the Chute."""
        if self._exists(key):
            self.metrics.forwarded.labels(*key).inc()

    def limits(self, key: Key) -> tuple[int | None, float | None]:
        """The Chute's body limit and request timeout (None: the activator's defaults)."""
        gate = self._gates.get(key)
        state = gate.state if gate is not None else None
        if state is None:
            return None, None
        return state.max_body_bytes, state.request_timeout_seconds

    def timeline(self, key: Key) -> dict[str, float | str] | None:
        gate = self._gates.get(key)
        return dict(gate.timeline) if gate and gate.timeline is not None else None

    def mark(self, key: Key, event: str) -> None:
        """Record the first time ``event`` (``forwarded``, ``answered``) happens in the latest wake."""
        gate = self._gates.get(key)
        if gate is not None and gate.timeline is not None:
            gate.timeline.setdefault(event, time.time())

    def retry_after(self, key: Key) -> int:
        """The wake this activator saw (wake to ready, what a client waits), else the model load time
        the operator measured (the Chute's ``status.loadSeconds``: it survives a restart of this
        process), else ``default_retry_after``."""
        gate = self._gates.get(key)
        if gate is None:
            return self.default_retry_after
        load = gate.state.load_seconds if gate.state else None
        seconds = gate.measured_load if gate.measured_load is not None else load
        return retry_after_seconds(seconds, self.default_retry_after)

    def _verdict(self, key: Key, gate: _Gate) -> str | None:
        """An endpoint to forward to, None to keep waiting; raises when the request must be answered now."""
        state = gate.state
        if state is None or not state.exists:
            raise Rejected(404, "NotFound", f"Chute {key[0]}/{key[1]} does not exist (deleted?)")
        if state.endpoints:
            return state.endpoints[next(gate.turn) % len(state.endpoints)]
        if self.stopping:
            raise Rejected(503, "ActivatorStopping", "the activator is restarting", self.retry_after(key))
        if state.cannot_wake:
            raise Rejected(
                503,
                "CannotWake",
                f"Chute {key[0]}/{key[1]} cannot wake: {state.cannot_wake}",
                self.retry_after(key),
            )
        return None

    async def acquire(self, key: Key) -> tuple[str, float]:
        """A ready endpoint of the Chute and how long the request was held; waits while it wakes."""
        start = time.monotonic()
        gate = self._gate_for(key)
        try:
            endpoint = self._verdict(key, gate)
        except Rejected as rejected:
            self._rejected(key, rejected, 0.0)
            raise
        if endpoint is not None:
            return endpoint, 0.0
        if gate.waiting >= self.queue_limit:
            full = Rejected(
                503,
                "QueueFull",
                f"{gate.waiting} requests already wait for Chute {key[0]}/{key[1]}",
                self.retry_after(key),
            )
            self._rejected(key, full, 0.0)
            raise full
        gate.waiting += 1
        self._count_waiting(key, gate)
        if gate.timeline is None or "ready_seen" in gate.timeline:
            gate.timeline = {"held": time.time()}
        deadline = start + self.max_wait
        try:
            while True:
                await self._maybe_wake(key, gate)
                changed = gate.changed
                left = deadline - time.monotonic()
                if left <= 0:
                    raise Rejected(
                        503,
                        "WaitTimeout",
                        f"no replica of Chute {key[0]}/{key[1]} became ready within {self.max_wait:g}s",
                        self.retry_after(key),
                    )
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(changed.wait(), min(left, self.wake_interval))
                endpoint = self._verdict(key, gate)
                if endpoint is not None:
                    waited = time.monotonic() - start
                    self.metrics.wait_seconds.labels("forwarded").observe(waited)
                    return endpoint, waited
        except Rejected as rejected:
            self._rejected(key, rejected, time.monotonic() - start)
            raise
        finally:
            gate.waiting -= 1
            self._count_waiting(key, gate)
            if gate.waiting == 0 and (gate.state is None or not gate.state.exists):
                self._drop(key, gate)

    def _gate_for(self, key: Key) -> _Gate:
        """The Chute's gate (the source reported it: :meth:`resolve` found it); 404 when it is gone."""
        gate = self._gates.get(key)
        if gate is not None and gate.state is not None:
            return gate
        rejected = Rejected(404, "NotFound", f"no Chute {key[0]}/{key[1]}")
        self._rejected(key, rejected, 0.0)
        raise rejected

    def _count_waiting(self, key: Key, gate: _Gate) -> None:
        if self._exists(key):
            self.metrics.queue_length.labels(*key).set(gate.waiting)

    async def _maybe_wake(self, key: Key, gate: _Gate) -> None:
        if gate.state is None or not gate.state.exists:
            return
        now = time.monotonic()
        if now - gate.last_wake < self.wake_interval:
            return
        gate.last_wake = now
        if gate.wake_started is None:
            gate.wake_started = now
        self.metrics.wakeups.labels(*key).inc()
        try:
            await self.wake(key)
        except Exception as error:  # the next interval asks again; the wait stays bounded
            log.warning("wake request failed", extra={"chute": "/".join(key), "error": str(error)})
            return
        if gate.timeline is not None:
            gate.timeline.setdefault("wake_written", time.time())

    def _rejected(self, key: Key, rejected: Rejected, waited: float) -> None:
        self.count_rejected(key, rejected.reason)
        self.metrics.wait_seconds.labels("rejected").observe(waited)
