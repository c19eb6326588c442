"""A work queue of Chute keys: coalescing, one worker per key at a time, delayed retries with backoff,
and two lanes: keys queued in the background (the resync, a relist) wait for the others (events)."""

from __future__ import annotations

import asyncio
import random
from collections import deque
from collections.abc import Hashable

FAIR_EVERY = 8
"""While keys wait in the background, one of them is handed out after this many keys added now in a
row: a steady stream of events the workers cannot keep up with must not starve the resync or an idle
Chute's sleep decision (whose only trigger is the background idle check)."""


class WorkQueue:
    """controller-runtime style: a key queued many times is processed once; never twice at once."""

    def __init__(self, base_delay: float = 1.0, max_delay: float = 300.0) -> None:
        self._lanes: tuple[deque[Hashable], deque[Hashable]] = (deque(), deque())
        """Keys in order: added now, then added in the background. A key promoted from the second to
        the first keeps a stale entry in the second, skipped when met."""
        self._queued: dict[Hashable, bool] = {}
        """Each waiting key: whether it waits in the background lane."""
        self._ready = asyncio.Event()
        self._processing: dict[Hashable, bool] = {}
        """Each key being processed: whether it was taken from the background lane (its retry goes
        back there: a resync's reconciles throttled by a loaded API server must not come back in front
        of the wake requests)."""
        self._dirty: dict[Hashable, bool] = {}
        self._failures: dict[Hashable, int] = {}
        self._timers: dict[Hashable, asyncio.TimerHandle] = {}
        self._timed_background: set[Hashable] = set()
        """The keys whose pending timer queues them in the background."""
        self._base, self._max = base_delay, max_delay
        self._streak = 0
        """Keys added now handed out in a row while the background lane waited (see FAIR_EVERY)."""

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

    def add_after(self, key: Hashable, delay: float, background: bool = False) -> None:
        """Queue ``key`` after ``delay`` seconds (an earlier pending timer wins; it queues the key in
        the background only if every timer it stands for would have)."""
        timer = self._timers.get(key)
        loop = asyncio.get_running_loop()
        if timer is not None:
            background = background and key in self._timed_background
        if background:
            self._timed_background.add(key)
        else:
            self._timed_background.discard(key)
        if timer is not None and timer.when() <= loop.time() + delay:
            return
        if timer is not None:
            timer.cancel()
        self._timers[key] = loop.call_later(delay, self._fire, key)

    def _fire(self, key: Hashable) -> None:
        self._timers.pop(key, None)
        background = key in self._timed_background
        self._timed_background.discard(key)
        self.add(key, background)

    def retry(self, key: Hashable, retry_after: float | None = None) -> float:
        """Queue ``key`` again with exponential backoff, in the lane it was taken from; returns the
        delay chosen.

        With ``retry_after`` (an API server throttling with 429 says when to come back) the key comes
        back then, with jitter so that throttled keys do not return at once, and the backoff does not
        grow: throttling says the server is busy, not that this key is failing.
        """
        if retry_after is not None:
            # retry jitter, not a secret (bandit B311)
            delay = min(max(retry_after, self._base) * (1 + random.random()), self._max)  # nosec B311
        else:
            failures = self._failures.get(key, 0)
            self._failures[key] = failures + 1
            delay = min(self._base * 2**failures, self._max)
        self.add_after(key, delay, self._processing.get(key, False))
        return delay

    def forget(self, key: Hashable) -> None:
        """Reset the backoff of ``key`` after a success."""
        self._failures.pop(key, None)

    async def get(self) -> Hashable:
        """The next key to process, those added now first (but one in the background after every
        ``FAIR_EVERY`` of them); call :meth:`done` when finished."""
        while True:
            now, later = self._lanes
            if not now and not later:
                self._ready.clear()
                await self._ready.wait()
                continue
            lane = 1 if later and (not now or self._streak >= FAIR_EVERY) else 0
            key = self._lanes[lane].popleft()
            if self._queued.get(key) is bool(lane):  # else a stale entry: promoted, or taken already
                del self._queued[key]
                self._processing[key] = bool(lane)
                self._streak = self._streak + 1 if not lane and later else 0
                return key

    def done(self, key: Hashable) -> None:
        self._processing.pop(key, None)
        background = self._dirty.pop(key, None)
        if background is not None:
            self.add(key, background)

    def __len__(self) -> int:
        return len(self._queued)

    def close(self) -> None:
        for timer in self._timers.values():
            timer.cancel()
        self._timers.clear()
        self._timed_background.clear()
