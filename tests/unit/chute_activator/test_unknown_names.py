"""What a client sends grows nothing: headers never name a Chute, and a port no Chute has leaves no
gate and no labelled series behind."""

from __future__ import annotations

import asyncio
import random
import string

import aiohttp
import pytest

from chute_activator.holding import Holder, Rejected
from chute_activator.metrics import Metrics
from chute_activator.state import ChuteState, Key
from tests.unit.chute_activator.conftest import LOOPBACK, StartActivator

KEY = ("team", "llm")
NAMES = 2000


def _name(rng: random.Random) -> str:
    return "".join(rng.choices(string.ascii_lowercase, k=12))


async def _scrape(session: aiohttp.ClientSession, port: int) -> str:
    async with session.get(f"http://{LOOPBACK}:{port}/metrics") as response:
        return await response.text()


def _samples(text: str) -> int:
    return sum(1 for line in text.splitlines() if line and not line.startswith("#"))


async def test_random_hosts_and_x_chute_values_leave_gates_and_metrics_as_they_were(
    start_activator: StartActivator, session: aiohttp.ClientSession
) -> None:
    activator = await start_activator(unclaimed_wait_seconds=0.01)
    activator.chute(KEY, cannot_wake="ImagePullBackOff: bad tag")  # one real Chute: answered at once
    unclaimed = activator.url("/v1/models", key=("no", "such"))  # a port no Chute has
    async with session.get(unclaimed) as response:
        assert response.status == 404  # the fixed series of a rejection exist from now on
    async with session.get(activator.url("/v1/models")) as response:
        assert response.status == 503
    before, gates = await _scrape(session, activator.metrics_port), len(activator.holder._gates)
    rng = random.Random(25)
    statuses: dict[str, set[int]] = {"claimed": set(), "unclaimed": set()}
    for i in range(NAMES):  # bounded: one request per name
        header = (
            {"Host": f"{_name(rng)}.{_name(rng)}"} if i % 2 else {"X-Chute": f"{_name(rng)}/{_name(rng)}"}
        )
        which = "claimed" if i % 4 < 2 else "unclaimed"
        url = activator.url("/v1/models") if which == "claimed" else unclaimed
        async with session.get(url, headers=header) as response:
            statuses[which].add(response.status)
    after = await _scrape(session, activator.metrics_port)
    assert statuses == {"claimed": {503}, "unclaimed": {404}}  # the port decides, never a header
    assert len(activator.holder._gates) == gates
    assert _samples(after) == _samples(before)
    assert len(after) - len(before) < 100  # counters' values grow by a few digits, nothing else
    assert f"chute_activator_unknown_rejected_total {float(NAMES // 2 + 1)}" in after


def _holder(unknown_limit: int) -> Holder:
    async def wake(key: Key) -> None:
        return None

    return Holder(wake, Metrics(), unknown_limit=unknown_limit, default_retry_after=7)


async def _until_unclaimed_waiting(holder: Holder, count: int) -> None:
    for _ in range(100):  # bounded
        if holder._unclaimed_waiting == count:
            return
        await asyncio.sleep(0.01)
    raise AssertionError(f"{holder._unclaimed_waiting} requests wait on unclaimed ports, not {count}")


async def test_before_the_first_sync_a_bounded_number_of_unclaimed_ports_wait_then_get_404() -> None:
    holder = _holder(unknown_limit=3)
    holder.unclaimed_wait = 0.05
    waiting = [asyncio.create_task(holder.resolve(20000 + i)) for i in range(3)]
    await _until_unclaimed_waiting(holder, 3)
    with pytest.raises(Rejected) as full:
        await holder.resolve(20009)
    assert (full.value.status, full.value.retry_after) == (503, 7)
    holder.update(KEY, ChuteState(port=20000))  # the listing names one of them
    holder.mark_synced()
    assert await asyncio.wait_for(waiting[0], 5) == KEY
    for task in waiting[1:]:
        with pytest.raises(Rejected) as gone:
            await asyncio.wait_for(task, 5)
        assert (gone.value.status, gone.value.reason) == (404, "UnknownChute")
    assert set(holder._gates) == {KEY}
    assert holder._unclaimed_waiting == 0


async def test_a_port_claimed_while_a_request_waits_on_it_is_that_chutes() -> None:
    """The operator writes a Chute's port in its status before the slice that sends traffic there; a
    connection that still beats the status to this activator waits for it, briefly."""
    holder = _holder(unknown_limit=3)
    holder.mark_synced()
    task = asyncio.create_task(holder.resolve(20005))
    await _until_unclaimed_waiting(holder, 1)
    holder.update(KEY, ChuteState(port=20005))
    assert await asyncio.wait_for(task, 5) == KEY


async def test_a_deleted_chutes_series_go_when_its_last_request_leaves() -> None:
    holder = _holder(unknown_limit=3)
    holder.mark_synced()
    holder.update(KEY, ChuteState())
    task = asyncio.create_task(holder.acquire(KEY))
    for _ in range(100):  # bounded
        if holder._gates[KEY].waiting:
            break
        await asyncio.sleep(0.01)
    labels = {"namespace": KEY[0], "chute": KEY[1]}
    assert holder.metrics.registry.get_sample_value("chute_activator_queue_length", labels) == 1
    holder.update(KEY, None)
    with pytest.raises(Rejected):
        await asyncio.wait_for(task, 5)
    assert KEY not in holder._gates
    text = holder.metrics.registry.collect()
    labelled = [s for m in text for s in m.samples if s.labels.get("chute") == KEY[1]]
    assert labelled == []


async def test_a_request_waiting_for_the_first_sync_is_answered_503_when_the_activator_stops() -> None:
    """A drain ends with every held request answered 503 + Retry-After: also one held before the
    first listing (it waited on, unanswered, until its client gave up)."""
    holder = _holder(unknown_limit=3)
    task = asyncio.create_task(holder.resolve(20001))
    await _until_unclaimed_waiting(holder, 1)
    holder.stop_holding()
    with pytest.raises(Rejected) as stopping:
        await asyncio.wait_for(task, 5)
    assert (stopping.value.status, stopping.value.reason, stopping.value.retry_after) == (
        503,
        "ActivatorStopping",
        7,
    )
    assert holder._gates == {}
