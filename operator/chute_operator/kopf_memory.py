"""kopf keeps no per-object memory for this operator's handlers.

For every object it has seen, kopf keeps a ``ResourceMemory`` (about 1 KB: a copy of the operator's
memo, an error throttler, the state of daemons, indices and change handlers) until the object is
deleted. This operator registers only event handlers, which hand each event to its controller and
use none of it: at 5000 Chutes, about seven watched objects each, that was some 35 MB. This module
makes kopf's ``ResourceMemories.recall`` ephemeral: each event gets a fresh memory, none is stored.

If a kopf release moves that method, or its ``recall`` takes no ``ephemeral``, :func:`install` says so
(False) and kopf behaves as before.
"""

from __future__ import annotations

import inspect
from collections.abc import Callable, Coroutine
from typing import Any

_MARK = "_chute_operator_ephemeral"


def ephemeral(original: Callable[..., Coroutine[Any, Any, Any]]) -> Callable[..., Coroutine[Any, Any, Any]]:
    """``ResourceMemories.recall`` that never stores the memory it makes."""

    async def recall(self: Any, *args: Any, **kwargs: Any) -> Any:
        kwargs["ephemeral"] = True
        return await original(self, *args, **kwargs)

    setattr(recall, _MARK, True)
    return recall


def _takes_ephemeral(recall: Any) -> bool:
    """Whether ``recall`` (or the original it wraps) takes the keyword ``ephemeral``."""
    if getattr(recall, _MARK, False):
        return True
    try:
        parameters = inspect.signature(recall).parameters
    except (TypeError, ValueError):
        return False
    found = parameters.get("ephemeral")
    return found is not None and found.kind in (found.KEYWORD_ONLY, found.POSITIONAL_OR_KEYWORD)


def install() -> bool:
    """Make kopf's per-object memories ephemeral (once); False when this kopf has no such method."""
    try:
        from kopf._core.reactor import inventory
    except ImportError:
        return False
    memories = getattr(inventory, "ResourceMemories", None)
    original = getattr(memories, "recall", None)
    if original is None or not _takes_ephemeral(original):
        return False  # forced onto a recall without it, every event would fail in kopf (TypeError)
    if not getattr(original, _MARK, False):
        setattr(memories, "recall", ephemeral(original))  # noqa: B010
    return True
