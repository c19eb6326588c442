"""What each stage of ``chute-operator demo`` cost: a clock the demo marks, and its report as JSON."""

from __future__ import annotations

import json
import os
import time
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

WAITED = "waiting for another local cluster's real node"


class StageClock:
    """Seconds per stage, each from the end of the one before (the first from the clock's start)."""

    def __init__(self, clock: Callable[[], float] = time.monotonic) -> None:
        self._clock = clock
        self.started = self._last = clock()
        self.stages: list[tuple[str, float]] = []

    def done(self, stage: str, waited: float = 0.0) -> float:
        """Close ``stage``; its seconds. ``waited``: seconds of it spent waiting for another local
        cluster's real node (one per machine), recorded as a stage of its own before it."""
        now = self._clock()
        if waited > 0:
            self.stages.append((WAITED, round(waited, 1)))
        seconds = round(now - self._last - max(waited, 0.0), 1)
        self.stages.append((stage, seconds))
        self._last = now
        return seconds

    def total(self) -> float:
        return round(self._last - self.started, 1)

    def table(self) -> str:
        """One line per stage and the total, aligned."""
        width = max((len(stage) for stage, _ in self.stages), default=0)
        lines = [f"  {stage.ljust(width)}  {seconds:7.1f} s" for stage, seconds in self.stages]
        return "\n".join([*lines, f"  {'total'.ljust(width)}  {self.total():7.1f} s"])

    def report(self, **about: Any) -> dict[str, Any]:
        """The stages, the total and what the run was (``about``: mode, command...), with the machine's
        cores and load."""
        return {
            "date": datetime.now(UTC).isoformat(timespec="seconds"),
            **about,
            "cpus": os.cpu_count(),
            "loadavg_1m_after": round(os.getloadavg()[0], 2),
            "stages_seconds": dict(self.stages),
            "total_seconds": self.total(),
        }


def write_report(report: dict[str, Any], *paths: Path) -> None:
    """The report as JSON into each path (its directory made if missing)."""
    text = json.dumps(report, indent=2) + "\n"
    for path in paths:
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)
