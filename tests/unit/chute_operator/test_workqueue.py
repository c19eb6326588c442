"""The work queue coalesces, never hands out a key twice at once, and backs off."""

from __future__ import annotations

import asyncio

from chute_operator.workqueue import WorkQueue


async def test_repeated_adds_coalesce() -> None:
    queue = WorkQueue()
    for _ in range(5):
        queue.add("a")
    queue.add("b")
    assert len(queue) == 2
    assert {await queue.get(), await queue.get()} == {"a", "b"}


async def test_key_added_while_processing_is_requeued_after_done() -> None:
    queue = WorkQueue()
    queue.add("a")
    key = await queue.get()
    queue.add("a")
    assert len(queue) == 0  # not handed to a second worker
    queue.done(key)
    assert await asyncio.wait_for(queue.get(), 1) == "a"


async def test_retry_backs_off_exponentially_and_forget_resets() -> None:
    queue = WorkQueue(base_delay=0.01, max_delay=0.04)
    assert [queue.retry("a") for _ in range(4)] == [0.01, 0.02, 0.04, 0.04]
    queue.forget("a")
    assert queue.retry("a") == 0.01
    assert await asyncio.wait_for(queue.get(), 1) == "a"
    queue.close()
