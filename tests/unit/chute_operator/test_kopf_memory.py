"""kopf stores no per-object memory for the operator's event handlers (kopf_memory.py, issue 30)."""

from __future__ import annotations

from kopf._core.reactor.inventory import ResourceMemories

import chute_operator.handlers
from chute_operator import kopf_memory

BODY = {"metadata": {"uid": "u1", "namespace": "ns", "name": "a"}, "kind": "Deployment"}


async def test_kopf_remembers_nothing_per_object() -> None:
    assert chute_operator.handlers.KOPF_MEMORY_EPHEMERAL
    memories = ResourceMemories()
    first = await memories.recall(BODY, memobase=None, noticed_by_listing=True)
    second = await memories.recall(BODY)
    assert first is not second
    assert first.noticed_by_listing
    assert list(memories.iter_all_memories()) == []
    await memories.forget(BODY)  # a DELETED event: nothing to forget, no error


def test_installing_twice_wraps_once() -> None:
    assert kopf_memory.install()
    wrapped = ResourceMemories.recall
    assert kopf_memory.install()
    assert ResourceMemories.recall is wrapped
