"""Names a client sends grow nothing: unknown Chutes leave no gate and no labelled series behind."""

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
    activator = await start_activator()
    activator.holder.update(KEY, ChuteState(endpoints=()))  # one real Chute, at zero
    async with session.get(activator.url("/v1/models"), headers={"X-Chute": "no/such"}) as response:
        assert response.status == 404  # the fixed series of a rejection exist from now on
    before, gates = await _scrape(session, activator.metrics_port), len(activator.holder._gates)
    rng = random.Random(25)
    statuses = set()
    for i in range(NAMES):  # bounded: one request per name
        header = (
            {"Host": f"{_name(rng)}.{_name(rng)}"} if i % 2 else {"X-Chute": f"{_name(rng)}/{_name(rng)}"}
        )
        async with session.get(activator.url("/v1/models"), headers=header) as response:
            statuses.add(response.status)
    after = await _scrape(session, activator.metrics_port)
    assert statuses == {404}
    assert len(activator.holder._gates) == gates
    assert _samples(after) == _samples(before)
    assert len(after) - len(before) < 100  # counters' values grow by a few digits, nothing else
    assert f"chute_activator_unknown_rejected_total {float(NAMES + 1)}" in after


def _holder(unknown_limit: int) -> Holder:
    async def wake(key: Key) -> None:
        return None

    return Holder(wake, Metrics(), unknown_limit=unknown_limit, default_retry_after=7)


async def test_before_the_first_sync_a_bounded_number_of_unknown_names_wait_then_get_404() -> None:
    holder = _holder(unknown_limit=3)
    waiting = [asyncio.create_task(holder.acquire(("ns", f"c{i}"))) for i in range(3)]
    for _ in range(100):  # bounded: until the three wait
        if sum(g.waiting for g in holder._gates.values()) == 3:
            break
        await asyncio.sleep(0.01)
    with pytest.raises(Rejected) as full:
        await holder.acquire(("ns", "one-too-many"))
    assert (full.value.status, full.value.retry_after) == (503, 7)
    assert len(holder._gates) == 3
    holder.mark_synced()
    for task in waiting:
        with pytest.raises(Rejected) as gone:
            await asyncio.wait_for(task, 5)
        assert gone.value.status == 404
    assert holder._gates == {}
    text = holder.metrics.registry.get_sample_value
    assert text("chute_activator_queue_length", {"namespace": "ns", "chute": "c0"}) is None


async def test_an_unknown_name_the_source_says_does_not_exist_is_answered_and_dropped() -> None:
    holder = _holder(unknown_limit=3)
    task = asyncio.create_task(holder.acquire(("ns", "ghost")))
    for _ in range(100):  # bounded
        if holder._gates.get(("ns", "ghost")) and holder._gates["ns", "ghost"].waiting:
            break
        await asyncio.sleep(0.01)
    holder.update(("ns", "ghost"), None)
    with pytest.raises(Rejected) as gone:
        await asyncio.wait_for(task, 5)
    assert gone.value.status == 404
    assert holder._gates == {}


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


async def test_a_name_waiting_for_the_first_sync_is_answered_503_when_the_activator_stops() -> None:
    """A drain ends with every held request answered 503 + Retry-After: also one held before the
    first listing (it waited on, unanswered, until its client gave up)."""
    holder = _holder(unknown_limit=3)
    task = asyncio.create_task(holder.acquire(("ns", "not-listed-yet")))
    for _ in range(100):  # bounded
        if holder._gates.get(("ns", "not-listed-yet")) and holder._gates["ns", "not-listed-yet"].waiting:
            break
        await asyncio.sleep(0.01)
    holder.stop_holding()
    with pytest.raises(Rejected) as stopping:
        await asyncio.wait_for(task, 5)
    assert (stopping.value.status, stopping.value.reason, stopping.value.retry_after) == (
        503,
        "ActivatorStopping",
        7,
    )
    assert holder._gates == {}
