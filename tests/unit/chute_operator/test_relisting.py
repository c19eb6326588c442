"""kopf lists a kind again when its watch cannot resume; the controller hears of it."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from typing import Any

import kopf
import pytest
from kopf._cogs.clients import watching
from kopf._cogs.structs.references import Resource

from chute_operator import relisting

DEPLOYMENTS = Resource(group="apps", version="v1", plural="deployments")


@pytest.fixture
def heard(monkeypatch: pytest.MonkeyPatch) -> list[tuple[str, str, str | None]]:
    """kopf's listing-then-watching replaced by one that lists one object, then watches one event."""

    async def continuous_watch(**kwargs: Any) -> AsyncIterator[Any]:
        yield {"type": None, "object": {"metadata": {"name": "a"}}}
        yield watching.Bookmark.LISTED
        yield {"type": "ADDED", "object": {"metadata": {"name": "b"}}}

    monkeypatch.setattr(watching, "continuous_watch", continuous_watch)
    found: list[tuple[str, str, str | None]] = []

    def listener(group: str, plural: str, namespace: str | None) -> None:
        found.append((group, plural, namespace))

    relisting.listen(listener)
    yield found
    relisting.unlisten(listener)


async def _one_stream(namespace: str | None) -> list[Any]:
    stream = watching.continuous_watch(
        settings=None, resource=DEPLOYMENTS, namespace=namespace, operator_pause_waiter=None
    )
    return [item async for item in stream]


async def test_every_listing_after_the_first_of_a_kind_and_namespace_is_told(
    heard: list[tuple[str, str, str | None]],
) -> None:
    assert relisting.install()
    assert relisting.install()  # once: not wrapped twice
    first = await _one_stream("ns")
    assert first == [
        {"type": None, "object": {"metadata": {"name": "a"}}},
        watching.Bookmark.LISTED,
        {"type": "ADDED", "object": {"metadata": {"name": "b"}}},
    ]  # passed through untouched
    assert heard == []  # kopf's first listing: the controller lists at start itself
    await _one_stream("other")
    assert heard == []
    await _one_stream("ns")
    assert heard == [("apps", "deployments", "ns")]


async def test_kopfs_watch_loop_calls_the_wrapped_function(heard: list[tuple[str, str, str | None]]) -> None:
    """The hook depends on kopf's infinite_watch calling continuous_watch by its module's name: a kopf
    that stops doing so fails here, not silently in production."""
    assert relisting.install()
    settings = kopf.OperatorSettings()
    settings.watching.reconnect_backoff = 0
    stream = watching.infinite_watch(settings=settings, resource=DEPLOYMENTS, namespace=None, _iterations=3)
    items = await asyncio.wait_for(_collect(stream), 5)
    assert items.count(watching.Bookmark.LISTED) == 3
    assert heard == [("apps", "deployments", None)] * 2


async def _collect(stream: AsyncIterator[Any]) -> list[Any]:
    return [item async for item in stream]
