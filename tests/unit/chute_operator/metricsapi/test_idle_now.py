"""A sleep is confirmed by reading the sidecar now: a real sidecar (and modelsim) on loopback, a
request that begins after the scraper's last round (issue 25)."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from chute_operator.metricsapi.samples import Samples
from chute_operator.metricsapi.scraper import NodeKinds, Scraper
from chute_operator.metricsapi.targets import is_simulated_node
from tests.metrics_api_harness import LoopbackSidecar
from tests.unit.chute_operator.metricsapi.test_scraper import pod


@pytest.fixture
def sidecar(tmp_path: Path) -> Iterator[LoopbackSidecar]:
    running = LoopbackSidecar(tmp_path)
    try:
        yield running
    finally:
        running.stop()


async def test_a_request_after_the_last_round_is_seen_only_by_a_read_now(sidecar: LoopbackSidecar) -> None:
    async def lookup(name: str) -> dict[str, Any] | None:
        return {"metadata": {"name": name}}  # a real node

    samples = Samples(max_age=10)
    scraper = Scraper(
        lambda: [pod("a-1", "real", sidecar.metrics_port)], NodeKinds(lookup, is_simulated_node), samples
    )
    try:
        await scraper.scrape_once()
        cached = samples.fresh(("ns", "a-1"), time.monotonic())
        assert cached is not None
        assert cached.idle_seconds is not None
        began = time.monotonic()
        await asyncio.to_thread(sidecar.open_streams, 1)  # a request begins after it
        assert samples.fresh(("ns", "a-1"), time.monotonic()) == cached  # the round knows nothing of it
        assert await scraper.idle_now("ns", "a-1") is None  # in flight
        await asyncio.to_thread(sidecar.close_streams)
        for _ in range(50):  # the sidecar sees the client leave
            if await asyncio.to_thread(sidecar.in_flight) == 0:
                break
            await asyncio.sleep(0.1)
        idle = await scraper.idle_now("ns", "a-1")
        assert idle is not None
        assert idle <= time.monotonic() - began
        assert idle < cached.idle_seconds + (time.monotonic() - cached.read_at)  # not as extrapolated
        assert await scraper.idle_now("ns", "other") is None  # a pod it would not read
    finally:
        await scraper.close()
