"""The activator's start against an API server that answers errors first."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator

import pytest
from lightkube import AsyncClient, KubeConfig

from chute_activator import kube
from chute_activator.holding import Holder
from chute_activator.kube import KubeSource
from chute_activator.metrics import Metrics
from chute_activator.state import Key

from .fake_api import FakeApi, chute


@pytest.fixture
async def api() -> AsyncIterator[FakeApi]:
    server = FakeApi([chute("team", "llm")], failures_before_lists=2)
    await server.start()
    yield server
    await server.stop()


async def test_start_retries_listing_while_the_api_answers_errors_and_syncs_after(
    api: FakeApi, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(kube, "RELIST_SECONDS", 0.05)

    async def wake(key: Key) -> None:
        pass

    holder = Holder(wake, Metrics())
    client = AsyncClient(config=KubeConfig.from_dict(json.loads(api.kubeconfig())))
    source = KubeSource(client, holder, ("team",))
    try:
        await asyncio.wait_for(source.start(), 10)
        assert holder.synced
        assert ("team", "llm") in holder.known()
        assert api.list_calls >= 4  # two failures, then Chutes and slices
    finally:
        await source.stop()
        await client.close()
