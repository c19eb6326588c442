"""Tell the controller when kopf lists a kind again, so that its store forgets what was deleted.

kopf lists a kind, then watches it from the listing's resourceVersion; a watch that breaks resumes
from the last version it saw, and the API server replays what happened meanwhile, deletions too. When
that version is too old to resume from (410 Gone: the gap outlived the API server's watch cache, or the
API server restarted), kopf lists the kind again and hands the handlers every object that exists, as
an event of type None: an object deleted in the gap gets no event at all, and a store fed by events
keeps it. kopf offers no hook for this. Its listing ends with ``Bookmark.LISTED`` in the stream that
``kopf._cogs.clients.watching.continuous_watch`` yields (one call per listing, then watching); this
module wraps that function and, from the second listing of a ``(resource, namespace)`` on, calls the
listeners, which list the kind themselves and forget what their listing lacks.

If a kopf release moves that function, :func:`install` says so (False; logged by the caller) and the
store is corrected by the periodic resync only, as before.
"""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator, Callable
from typing import Any

log = logging.getLogger(__name__)

Listener = Callable[[str, str, str | None], None]
"""Called with the API group (empty for the core group), the plural and the namespace (None:
cluster-wide) of a kind kopf has just listed again."""

_listeners: list[Listener] = []
_MARK = "_chute_operator_relisting"


def listen(listener: Listener) -> None:
    _listeners.append(listener)


def unlisten(listener: Listener) -> None:
    if listener in _listeners:
        _listeners.remove(listener)


def install() -> bool:
    """Wrap kopf's ``continuous_watch`` (once); False when this kopf has no such function."""
    try:
        from kopf._cogs.clients import watching
    except ImportError:
        return False
    original = getattr(watching, "continuous_watch", None)
    listed_mark = getattr(getattr(watching, "Bookmark", None), "LISTED", None)
    if original is None or listed_mark is None:
        return False
    if getattr(original, _MARK, False):
        return True
    listed_before: set[tuple[str, str, str | None]] = set()

    async def continuous_watch(**kwargs: Any) -> AsyncIterator[Any]:
        resource, namespace = kwargs.get("resource"), kwargs.get("namespace")
        where = (getattr(resource, "group", ""), getattr(resource, "plural", ""), namespace)
        async for item in original(**kwargs):
            if item is listed_mark:
                if where in listed_before:
                    _tell(*where)
                listed_before.add(where)
            yield item

    setattr(continuous_watch, _MARK, True)
    watching.continuous_watch = continuous_watch
    return True


def _tell(group: str, plural: str, namespace: str | None) -> None:
    log.info("kopf listed %s again (its watch could not resume)", plural or group)
    for listener in list(_listeners):
        try:
            listener(group, plural, namespace)
        except Exception:  # a listener's failure must not break kopf's watch
            log.exception("relisting %s failed to start", plural)
