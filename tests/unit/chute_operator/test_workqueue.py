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


async def test_a_key_added_now_goes_before_the_background_backlog() -> None:
    """At 5000 Chutes the 600 s resync queued every Chute; an event's key (a wake request) waited
    behind thousands of no-op reconciles. Background keys (resync, relist) now wait for the others."""
    queue = WorkQueue()
    for name in ("r1", "r2", "r3"):
        queue.add(name, background=True)
    queue.add("wake")
    assert len(queue) == 4
    assert [await queue.get() for _ in range(4)] == ["wake", "r1", "r2", "r3"]


async def test_a_background_key_added_now_is_promoted_once() -> None:
    queue = WorkQueue()
    queue.add("a", background=True)
    queue.add("b", background=True)
    queue.add("b")  # an event for a key the resync queued: it goes first, and only once
    queue.add("a", background=True)
    assert len(queue) == 2
    assert await queue.get() == "b"
    assert await queue.get() == "a"
    assert len(queue) == 0
    queue.add("c", background=True)
    assert await asyncio.wait_for(queue.get(), 1) == "c"  # the stale entry of b was skipped


async def test_a_waiting_worker_wakes_for_either_lane() -> None:
    queue = WorkQueue()
    worker = asyncio.create_task(queue.get())
    await asyncio.sleep(0)
    queue.add("a", background=True)
    assert await asyncio.wait_for(worker, 1) == "a"
    queue.done("a")
    queue.add("a", background=True)  # not processing: queued again
    assert await asyncio.wait_for(queue.get(), 1) == "a"
    queue.add("a", background=True)  # while processing: again after done
    queue.done("a")
    assert await asyncio.wait_for(queue.get(), 1) == "a"
