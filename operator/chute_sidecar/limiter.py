"""Non-queueing concurrency limit: a request either gets a slot at once or is refused."""

from __future__ import annotations

import asyncio
import itertools
import time
from typing import Any

from chute_shared import paths


class Limiter:
    """At most ``capacity`` slots; remembers when each was taken, for the oldest in-flight age.

    Only touched from the event loop thread, so no lock is needed.
    """

    __slots__ = ("_idle", "_last_active", "_started", "_tickets", "capacity")

    def __init__(self, capacity: int) -> None:
        if capacity < 1:
            raise ValueError("capacity must be >= 1")
        self.capacity = capacity
        self._tickets = itertools.count()
        # insertion-ordered: the first entry is the oldest slot still held
        self._started: dict[int, float] = {}
        self._idle: asyncio.Event | None = None  # only while someone waits for the last release
        self._last_active = time.monotonic()  # start, or when the last request ended

    @property
    def in_flight(self) -> int:
        return len(self._started)

    def try_acquire(self) -> int | None:
        """A ticket to pass to :meth:`release`, or None when every slot is taken."""
        if len(self._started) >= self.capacity:
            return None
        ticket = next(self._tickets)
        self._started[ticket] = time.monotonic()
        return ticket

    def release(self, ticket: int) -> None:
        if self._started.pop(ticket, None) is not None:
            self._last_active = time.monotonic()
        if self._idle is not None and not self._started:
            self._idle.set()

    async def wait_idle(self) -> None:
        """Return once nothing is in flight (callers bound the wait with asyncio.timeout)."""
        if not self._started:
            return
        self._idle = asyncio.Event()
        try:
            await self._idle.wait()
        finally:
            self._idle = None

    def utilization(self) -> float:
        return len(self._started) / self.capacity

    def oldest_age(self) -> float | None:
        """Seconds the oldest in-flight request has been running, None when idle."""
        if not self._started:
            return None
        return max(0.0, time.monotonic() - next(iter(self._started.values())))

    def idle_seconds(self) -> float | None:
        """Seconds since the last request ended (or since start), None while one is in flight."""
        if self._started:
            return None
        return max(0.0, time.monotonic() - self._last_active)

    def stats(self) -> dict[str, Any]:
        """The ``/_conn_stats`` document (same fields as the Chutes runtime)."""
        in_flight = len(self._started)
        age = self.oldest_age()
        idle = self.idle_seconds()
        return {
            paths.CONCURRENCY: self.capacity,
            paths.IN_FLIGHT: in_flight,
            paths.AVAILABLE: max(0, self.capacity - in_flight),
            paths.UTILIZATION: round(in_flight / self.capacity, 4),
            paths.OLDEST_IN_FLIGHT_AGE: None if age is None else round(age, 3),
            paths.IDLE: None if idle is None else round(idle, 3),
        }
