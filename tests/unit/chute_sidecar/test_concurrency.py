"""The concurrency limit: exactly N in flight, the next one refused at once with 429."""

from __future__ import annotations

import asyncio

import aiohttp
import pytest

from .conftest import StartSidecar, Stub, eventually


@pytest.mark.parametrize("concurrency", [1, 3])
async def test_429_exactly_past_the_limit(start_sidecar: StartSidecar, stub: Stub, concurrency: int) -> None:
    running = await start_sidecar(concurrency=concurrency)
    session = running.session
    held = [asyncio.create_task(session.get(running.url("/hold"))) for _ in range(concurrency)]

    async def all_in_model() -> bool:
        return stub.entered == concurrency

    await eventually(all_in_model)
    async with session.get(running.url("/hold"), timeout=aiohttp.ClientTimeout(total=10)) as response:
        assert response.status == 429
        assert response.headers["Retry-After"] == "1"
    assert stub.entered == concurrency  # the refused request never reached the model

    stub.release.set()
    for task in held:
        async with await task as response:
            assert response.status == 200
            assert await response.text() == "held"

    async with session.get(running.url("/hold")) as response:
        assert response.status == 200  # a slot is free again
    text = await running.metrics_text()
    assert 'chute_requests_rejected_total{reason="concurrency"} 1.0' in text
    assert 'chute_requests_total{code="429",method="GET",route="other"} 1.0' in text
    assert f'chute_requests_total{{code="200",method="GET",route="other"}} {concurrency + 1}.0' in text
    assert f"chute_concurrency_limit {concurrency}.0" in text


async def test_refused_requests_do_not_take_slots(start_sidecar: StartSidecar, stub: Stub) -> None:
    running = await start_sidecar(concurrency=1, cords=("GET /hold",), restrict_to_cords=True)
    for _ in range(5):
        async with running.session.get(running.url("/nope")) as response:
            assert response.status == 404
    task = asyncio.create_task(running.session.get(running.url("/hold")))

    async def in_model() -> bool:
        return stub.entered == 1

    await eventually(in_model)  # accepted: the 404s left the single slot free
    stub.release.set()
    async with await task as response:
        assert response.status == 200


async def test_in_flight_gauges(start_sidecar: StartSidecar, stub: Stub) -> None:
    running = await start_sidecar(concurrency=4)
    tasks = [asyncio.create_task(running.session.get(running.url("/hold"))) for _ in range(2)]

    async def both_in_model() -> bool:
        return stub.entered == 2

    await eventually(both_in_model)
    text = await running.metrics_text()
    assert "chute_requests_in_flight 2.0" in text
    assert "chute_utilization_ratio 0.5" in text
    stub.release.set()
    for task in tasks:
        (await task).close()
