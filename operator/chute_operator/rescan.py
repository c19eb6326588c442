"""Keep kopf running when a CustomResourceDefinition comes or goes and discovery fails for a moment.

kopf watches CRDs in a root task and, on each event, reads discovery again for the CRD's group. It
passes over a 404, but any other error of that read (a 503 while the API server drops the group, a
timeout under load) ends the root task, and kopf stops the whole operator when a root task ends:
deleting the ServiceMonitor CRD could stop the operator (CI run 16 of the chart tests). This module
wraps ``kopf._core.reactor.observation.process_discovered_resource_event``: a failed read is retried
with a growing pause (then every 8 s) until it succeeds or the operator stops.

If a kopf release moves that function, :func:`install` says so (False) and kopf behaves as before.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable, Coroutine
from typing import Any

log = logging.getLogger(__name__)

PAUSES = (0.5, 1.0, 2.0, 4.0, 8.0)
"""Seconds before each retry of a failed read of discovery, then the last one for ever: dropping the
event would leave a CRD made meanwhile unwatched by kopf until it changes again (kopf runs one worker
per CRD, so the retries hold back only that CRD's events)."""
_MARK = "_chute_operator_rescan"


def guarded(
    original: Callable[..., Coroutine[Any, Any, None]], pauses: tuple[float, ...] | None = None
) -> Callable[..., Coroutine[Any, Any, None]]:
    """``original`` retried after each pause (default PAUSES, the last one repeated) while it raises;
    never raising but to cancel."""

    async def process_discovered_resource_event(**kwargs: Any) -> None:
        steps = PAUSES if pauses is None else pauses
        attempt = 0
        while True:
            try:
                await original(**kwargs)
                return
            except asyncio.CancelledError:
                raise
            except Exception as error:
                group = ((kwargs.get("raw_event") or {}).get("object") or {}).get("spec", {}).get("group")
                pause = steps[min(attempt, len(steps) - 1)] if steps else 0.0
                attempt += 1
                report = log.warning if attempt <= len(steps) else log.error
                report(
                    "reading discovery for %s failed %d time(s) (%s); again in %.1fs",
                    group,
                    attempt,
                    error,
                    pause,
                )
                await asyncio.sleep(pause)

    setattr(process_discovered_resource_event, _MARK, True)
    return process_discovered_resource_event


def install() -> bool:
    """Wrap kopf's handler of CRD events (once); False when this kopf has no such function."""
    try:
        from kopf._core.reactor import observation
    except ImportError:
        return False
    original = getattr(observation, "process_discovered_resource_event", None)
    if original is None:
        return False
    if not getattr(original, _MARK, False):
        setattr(observation, "process_discovered_resource_event", guarded(original))  # noqa: B010
    return True
