"""kopf keeps no per-object memory for this operator's handlers.

For every object it has seen, kopf keeps a ``ResourceMemory`` (about 1 KB: a copy of the operator's
memo, an error throttler, the state of daemons, indices and change handlers) until the object is
deleted. This operator registers only event handlers, which hand each event to its controller and
use none of it: at 5000 Chutes, about seven watched objects each, that was some 35 MB. This module
makes kopf's ``ResourceMemories.recall`` ephemeral: each event gets a fresh memory, none is stored.

If a kopf release moves that method, :func:`install` says so (False) and kopf behaves as before.
"""

from __future__ import annotations

from collections.abc import Callable, Coroutine
from typing import Any

_MARK = "_chute_operator_ephemeral"


def ephemeral(original: Callable[..., Coroutine[Any, Any, Any]]) -> Callable[..., Coroutine[Any, Any, Any]]:
    """``ResourceMemories.recall`` that never stores the memory it makes."""

    async def recall(self: Any, raw_body: Any, **kwargs: Any) -> Any:
        kwargs["ephemeral"] = True
        return await original(self, raw_body, **kwargs)

    setattr(recall, _MARK, True)
    return recall


def install() -> bool:
    """Make kopf's per-object memories ephemeral (once); False when this kopf has no such method."""
    try:
        from kopf._core.reactor import inventory
    except ImportError:
        return False
    memories = getattr(inventory, "ResourceMemories", None)
    original = getattr(memories, "recall", None)
    if original is None:
        return False
    if not getattr(original, _MARK, False):
        setattr(memories, "recall", ephemeral(original))  # noqa: B010
    return True
