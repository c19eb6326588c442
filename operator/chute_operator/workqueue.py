"""A work queue of Chute keys: coalescing, one worker per key at a time, delayed retries with backoff,
and two lanes: keys queued in the background (the resync, a relist) wait for the others (events)."""

from __future__ import annotations

import asyncio
import random
from collections import deque
from collections.abc import Hashable


class WorkQueue:
    """controller-runtime style: a key queued many times is processed once; never twice at once."""

    def __init__(self, base_delay: float = 1.0, max_delay: float = 300.0) -> None:
        self._lanes: tuple[deque[Hashable], deque[Hashable]] = (deque(), deque())
        """Keys in order: added now, then added in the background. A key promoted from the second to
        the first keeps a stale entry in the second, skipped when met."""
        self._queued: dict[Hashable, bool] = {}
        """Each waiting key: whether it waits in the background lane."""
        self._ready = asyncio.Event()
        self._processing: set[Hashable] = set()
        self._dirty: dict[Hashable, bool] = {}
        self._failures: dict[Hashable, int] = {}
        self._timers: dict[Hashable, asyncio.TimerHandle] = {}
        self._base, self._max = base_delay, max_delay

    def add(self, key: Hashable, background: bool = False) -> None:
        """Queue ``key`` (a no-op if it is already waiting, but a key waiting in the background is
        moved ahead when added now). ``background``: after every key added now (a resync of thousands
        of Chutes must not stand in front of a wake request)."""
        if key in self._processing:
            self._dirty[key] = self._dirty.get(key, True) and background
            return
        waiting = self._queued.get(key)
        if waiting is None or (waiting and not background):
            self._queued[key] = background
            self._lanes[background].append(key)
            self._ready.set()

    def add_after(self, key: Hashable, delay: float) -> None:
        """Queue ``key`` after ``delay`` seconds (an earlier pending timer wins)."""
        timer = self._timers.get(key)
        loop = asyncio.get_running_loop()
        if timer is not None and timer.when() <= loop.time() + delay:
            return
        if timer is not None:
            timer.cancel()
        self._timers[key] = loop.call_later(delay, self._fire, key)

    def _fire(self, key: Hashable) -> None:
        self._timers.pop(key, None)
        self.add(key)

    def retry(self, key: Hashable, retry_after: float | None = None) -> float:
        """Queue ``key`` again with exponential backoff; returns the delay chosen.

        With ``retry_after`` (an API server throttling with 429 says when to come back) the key comes
        back then, with jitter so that throttled keys do not return at once, and the backoff does not
        grow: throttling says the server is busy, not that this key is failing.
        """
        if retry_after is not None:
            # retry jitter, not a secret (bandit B311)
            delay = min(max(retry_after, self._base) * (1 + random.random()), self._max)  # nosec B311
            self.add_after(key, delay)
            return delay
        failures = self._failures.get(key, 0)
        self._failures[key] = failures + 1
        delay = min(self._base * 2**failures, self._max)
        self.add_after(key, delay)
        return delay

    def forget(self, key: Hashable) -> None:
        """Reset the backoff of ``key`` after a success."""
        self._failures.pop(key, None)

    async def get(self) -> Hashable:
        """The next key to process, those added now first; call :meth:`done` when finished."""
        while True:
            lane = 0 if self._lanes[0] else 1 if self._lanes[1] else None
            if lane is None:
                self._ready.clear()
                await self._ready.wait()
                continue
            key = self._lanes[lane].popleft()
            if self._queued.get(key) is bool(lane):  # else a stale entry: promoted, or taken already
                del self._queued[key]
                self._processing.add(key)
                return key

    def done(self, key: Hashable) -> None:
        self._processing.discard(key)
        background = self._dirty.pop(key, None)
        if background is not None:
            self.add(key, background)

    def __len__(self) -> int:
        return len(self._queued)

    def close(self) -> None:
        for timer in self._timers.values():
            timer.cancel()
        self._timers.clear()
