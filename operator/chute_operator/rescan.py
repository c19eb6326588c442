"""Keep kopf running when a CustomResourceDefinition comes or goes and discovery fails for a moment.

kopf watches CRDs in a root task and, on each event, reads discovery again for the CRD's group. It
passes over a 404, but any other error of that read (a 503 while the API server drops the group, a
timeout under load) ends the root task, and kopf stops the whole operator when a root task ends:
deleting the ServiceMonitor CRD could stop the operator (CI run 16 of the chart tests). This module
wraps ``kopf._core.reactor.observation.process_discovered_resource_event``: a failed read is retried
with a growing pause, and after the last try it is logged and dropped. Our own discovery
(``Capabilities``, the optional APIs' recheck) does not depend on kopf's, and the next CRD event
reads again.

If a kopf release moves that function, :func:`install` says so (False) and kopf behaves as before.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable, Coroutine
from typing import Any

log = logging.getLogger(__name__)

PAUSES = (0.5, 1.0, 2.0, 4.0, 8.0)
"""Seconds before each retry of a failed read of discovery: about 15 s in all, then it is dropped."""
_MARK = "_chute_operator_rescan"


def guarded(
    original: Callable[..., Coroutine[Any, Any, None]], pauses: tuple[float, ...] | None = None
) -> Callable[..., Coroutine[Any, Any, None]]:
    """``original`` retried after each pause (default PAUSES) while it raises; never raising but to
    cancel."""

    async def process_discovered_resource_event(**kwargs: Any) -> None:
        for attempt, pause in enumerate((*(PAUSES if pauses is None else pauses), None)):
            try:
                await original(**kwargs)
                return
            except asyncio.CancelledError:
                raise
            except Exception as error:
                group = ((kwargs.get("raw_event") or {}).get("object") or {}).get("spec", {}).get("group")
                if pause is None:
                    log.error(
                        "reading discovery for %s failed %d times, left to its next event: %s",
                        group,
                        attempt + 1,
                        error,
                    )
                    return
                log.warning("reading discovery for %s failed (%s); retrying in %.1fs", group, error, pause)
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
