"""Failures on purpose: crash (exit non-zero), hang (stop answering), and memory that grows until OOM.

Switches come from flags/env (:class:`~chute_modelsim.config.Config`, armed once the model has
loaded) or from the admin port at any time. With ``fault_once_file`` the flag/env switches fire
only while that file is absent and create it when they do, so on a volume that outlives container
restarts (an emptyDir) a pod fails once and then serves.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import mmap
import os
from collections.abc import Callable
from pathlib import Path
from typing import Any

from chute_modelsim.config import Config

log = logging.getLogger("chute_modelsim.faults")

MIB = 1024 * 1024
EXIT_DELAY_SECONDS = 0.05
"""A crash waits this long so the answer that triggered it, and the log line, leave first."""
_GROW_TICK_SECONDS = 0.1
_YIELD_EVERY_MIB = 16


def rss_bytes() -> int:
    """Resident set size of this process (Linux)."""
    with open("/proc/self/statm") as statm:
        return int(statm.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")


class Faults:
    """Crash, hang and memory switches of one server."""

    def __init__(self, config: Config, exit_process: Callable[[int], None] = os._exit) -> None:
        self.config = config
        self.exit_process = exit_process
        self.requests = 0
        self.crash_after_requests: int | None = None
        self.hang_after_requests: int | None = None
        self.exit_code = config.crash_exit_code
        self.crashing: int | None = None
        self.ballast: list[mmap.mmap] = []
        """Anonymous mappings of 1 MiB, each written: fresh resident pages, given back to the system
        when freed (a heap allocation may reuse memory the process already holds, and keep it)."""
        self.grow_mb_per_second = 0.0
        self._running = asyncio.Event()
        self._running.set()
        self._tasks: set[asyncio.Task[None]] = set()

    # -- state ------------------------------------------------------------------------------------
    @property
    def hung(self) -> bool:
        return not self._running.is_set()

    @property
    def allocated_mb(self) -> int:
        return len(self.ballast)

    def state(self) -> dict[str, Any]:
        return {
            "pid": os.getpid(),
            "requests": self.requests,
            "hung": self.hung,
            "crash_after_requests": self.crash_after_requests,
            "hang_after_requests": self.hang_after_requests,
            "allocated_mb": self.allocated_mb,
            "grow_mb_per_second": self.grow_mb_per_second,
            "rss_bytes": rss_bytes(),
        }

    # -- crash ------------------------------------------------------------------------------------
    def crash(self, exit_code: int | None = None, reason: str = "asked to") -> None:
        """Exit the process with a non-zero status, shortly (see :data:`EXIT_DELAY_SECONDS`)."""
        if self.crashing is not None:
            return
        code = exit_code or self.exit_code
        self.crashing = code
        log.error("crashing on purpose (%s): exit status %d", reason, code)
        asyncio.get_running_loop().call_later(EXIT_DELAY_SECONDS, self.exit_process, code)

    # -- hang -------------------------------------------------------------------------------------
    def hang(self, reason: str = "asked to") -> None:
        """Stop answering: every request of the serving port (and /health) waits until :meth:`release`."""
        if not self.hung:
            log.error("hanging on purpose (%s): no answers from now on", reason)
        self._running.clear()

    def release(self) -> None:
        if self.hung:
            log.warning("released from the hang")
        self._running.set()

    async def wait_while_hung(self) -> None:
        await self._running.wait()

    # -- requests ---------------------------------------------------------------------------------
    def request_answered(self) -> None:
        """Counts an answered model request and fires the request-count switches."""
        self.requests += 1
        if self.crash_after_requests is not None and self.requests >= self.crash_after_requests:
            self.crash(reason=f"after {self.requests} requests")
        if self.hang_after_requests is not None and self.requests >= self.hang_after_requests:
            self.hang(reason=f"after {self.requests} requests")

    # -- memory -----------------------------------------------------------------------------------
    async def allocate(self, mb: int) -> int:
        """Allocate and write ``mb`` MiB (so the pages are resident), up to the guard; returns MiB held."""
        for index in range(mb):
            if self.allocated_mb >= self.config.allocate_limit_mb:
                log.warning("allocation stopped at the guard of %d MiB", self.config.allocate_limit_mb)
                break
            page = mmap.mmap(-1, MIB)
            page.write(b"\xa5" * MIB)
            self.ballast.append(page)
            if index % _YIELD_EVERY_MIB == _YIELD_EVERY_MIB - 1:
                await asyncio.sleep(0)
        return self.allocated_mb

    def grow(self, mb_per_second: float) -> None:
        """Keep allocating ``mb_per_second`` (0 stops), until the guard or an OOM kill."""
        self.grow_mb_per_second = mb_per_second
        if mb_per_second > 0 and not any(task.get_name() == "grow" for task in self._tasks):
            log.warning("growing memory by %s MiB/s", mb_per_second)
            self._spawn(self._grow(), "grow")

    def free(self) -> None:
        self.grow_mb_per_second = 0.0
        for page in self.ballast:
            page.close()
        self.ballast.clear()

    async def _grow(self) -> None:
        owed = 0.0
        while self.grow_mb_per_second > 0 and self.allocated_mb < self.config.allocate_limit_mb:
            owed += self.grow_mb_per_second * _GROW_TICK_SECONDS
            whole = int(owed)
            owed -= whole
            await self.allocate(whole)
            await asyncio.sleep(_GROW_TICK_SECONDS)

    # -- flag/env switches ------------------------------------------------------------------------
    def _claim_once(self) -> bool:
        """False when the once-file says the switches already fired in this pod."""
        marker = self.config.fault_once_file
        if marker is None:
            return True
        path = Path(marker)
        if path.exists():
            log.info("fault switches off: %s exists (they fired before)", marker)
            return False
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text(f"pid {os.getpid()}\n")
        except OSError as error:
            log.error("fault switches off: cannot create %s (%s)", marker, error)
            return False
        return True

    def arm(self) -> None:
        """Called once the model has loaded: starts the switches given by flags or the environment."""
        config = self.config
        wanted = (
            config.crash_after_requests is not None
            or config.crash_after_seconds is not None
            or config.hang_after_requests is not None
            or config.hang_after_seconds is not None
            or config.allocate_mb > 0
            or config.grow_mb_per_second > 0
        )
        if not wanted or not self._claim_once():
            return
        self.crash_after_requests = config.crash_after_requests
        self.hang_after_requests = config.hang_after_requests
        if config.crash_after_seconds is not None:
            self._spawn(self._later(config.crash_after_seconds, self.crash, "crash_after_seconds"), "crash")
        if config.hang_after_seconds is not None:
            self._spawn(self._later(config.hang_after_seconds, self.hang, "hang_after_seconds"), "hang")
        if config.allocate_mb > 0:
            self._spawn(self._allocate_at_start(config.allocate_mb), "allocate")
        if config.grow_mb_per_second > 0:
            self.grow(config.grow_mb_per_second)

    async def _allocate_at_start(self, mb: int) -> None:
        held = await self.allocate(mb)
        log.warning("allocated %d MiB (rss %d MiB)", held, rss_bytes() // MIB)

    @staticmethod
    async def _later(seconds: float, action: Callable[..., None], reason: str) -> None:
        await asyncio.sleep(seconds)
        action(reason=f"{reason}={seconds:g}")

    def _spawn(self, coroutine: Any, name: str) -> None:
        task = asyncio.get_running_loop().create_task(coroutine, name=name)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def close(self) -> None:
        self.release()
        for task in list(self._tasks):
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
        self.free()
