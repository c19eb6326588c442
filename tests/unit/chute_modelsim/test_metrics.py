"""``GET /metrics``: vLLM's engine series (what an endpoint picker reads) from the batch's real state."""

from __future__ import annotations

import asyncio

import pytest
from prometheus_client.parser import text_string_to_metric_families

from chute_modelsim import exposition
from chute_modelsim.batch import Batch, Sequence

from .conftest import Model, StartModel, eventually

RUNNING, WAITING, KV = "vllm:num_requests_running", "vllm:num_requests_waiting", "vllm:kv_cache_usage_perc"


def parse(text: str) -> dict[str, tuple[str, dict[str, str], float]]:
    """Each family: its type, the labels and value of its one sample."""
    found = {}
    for family in text_string_to_metric_families(text):
        (sample,) = family.samples
        found[family.name] = (family.type, sample.labels, sample.value)
    return found


def test_the_exposition_has_vllms_names_types_and_labels() -> None:
    text = exposition.render('org/model "q"', running=2, waiting=1, kv_usage=0.25).decode()
    labels = {"engine": "0", "model_name": 'org/model "q"'}
    assert parse(text) == {
        RUNNING: ("gauge", labels, 2.0),
        WAITING: ("gauge", labels, 1.0),
        KV: ("gauge", labels, 0.25),
    }


async def test_requests_beyond_max_seqs_wait_in_arrival_order() -> None:
    batch = Batch(max_seqs=2, kv_tokens=1000)
    order: list[int] = []
    release = asyncio.Event()

    async def request(number: int) -> None:
        async with batch.seat(Sequence(1)):
            order.append(number)
            await release.wait()

    tasks = [asyncio.create_task(request(n)) for n in range(4)]
    await asyncio.sleep(0)
    assert (len(batch.running), batch.waiting) == (2, 2)
    assert order == [0, 1]
    release.set()
    await asyncio.gather(*tasks)
    assert order == [0, 1, 2, 3]
    assert (len(batch.running), batch.waiting) == (0, 0)


async def test_a_request_waits_for_room_in_the_kv_cache_but_one_alone_always_runs() -> None:
    batch = Batch(max_seqs=8, kv_tokens=100)
    first, second = Sequence(60, 30), Sequence(20, 20)
    async with batch.seat(first):
        waiter = asyncio.create_task(batch.seat(second).__aenter__())
        await asyncio.sleep(0)
        assert batch.waiting == 1, "60+30 reserved, 40 more do not fit in 100"
    await waiter
    assert batch.running == {second}
    lone = Batch(max_seqs=1, kv_tokens=10)
    async with lone.seat(Sequence(500, 500)):
        assert len(lone.running) == 1


async def test_a_request_cancelled_while_waiting_leaves_the_queue() -> None:
    batch = Batch(max_seqs=1, kv_tokens=100)
    async with batch.seat(Sequence(1)):
        waiter = asyncio.create_task(batch.seat(Sequence(1)).__aenter__())
        await asyncio.sleep(0)
        assert batch.waiting == 1
        waiter.cancel()
        with pytest.raises(asyncio.CancelledError):
            await waiter
        assert batch.waiting == 0
    assert not batch.running


def test_kv_usage_counts_the_prompt_then_each_token_as_it_is_generated() -> None:
    batch = Batch(max_seqs=4, kv_tokens=100)
    sequence = Sequence(prompt_tokens=10, completion_tokens=20, choices=2)
    batch.running.add(sequence)
    assert batch.kv_usage(now=0.0) == 0.10, "admitted, not started: the prompt"
    sequence.start(first_token_at=1.0, tokens_per_second=2.0)
    assert batch.kv_usage(now=0.5) == 0.10
    assert batch.kv_usage(now=1.0) == 0.12, "the first token of each of two choices"
    assert batch.kv_usage(now=2.0) == 0.16
    assert batch.kv_usage(now=100.0) == 0.30, "at most the whole completion"
    batch.running.add(Sequence(prompt_tokens=500))
    assert batch.kv_usage(now=100.0) == 1.0


async def metrics(model: Model) -> dict[str, tuple[str, dict[str, str], float]]:
    async with model.session.get(model.url("/metrics")) as response:
        assert response.status == 200
        assert response.headers["Content-Type"] == exposition.CONTENT_TYPE
        return parse(await response.text())


async def test_metrics_follow_the_requests_in_flight(start_model: StartModel) -> None:
    """Slow tokens keep three requests in flight: one generated (max_num_seqs 1), two waiting; the KV
    cache holds the running one's prompt and what it generated; once their clients leave, nothing."""
    model = await start_model(max_num_seqs=1, kv_cache_tokens=1000, tokens_per_second=0.01)
    body = {"messages": [{"role": "user", "content": "one two three four"}], "max_tokens": 8, "stream": True}
    posts = [asyncio.create_task(model.post("/v1/chat/completions", body)) for _ in range(3)]

    async def all_arrived() -> bool:
        return model.server.batch.waiting == 2

    await eventually(all_arrived)
    found = await metrics(model)
    assert (found[RUNNING][2], found[WAITING][2]) == (1.0, 2.0)
    assert 4 / 1000 <= found[KV][2] <= 12 / 1000, "prompt (4) plus at most the 8 completion tokens"
    assert found[RUNNING][1] == {"engine": "0", "model_name": "chute-modelsim"}
    for post in posts:
        post.cancel()
    await asyncio.gather(*posts, return_exceptions=True)

    async def idle() -> bool:
        found = await metrics(model)
        return (found[RUNNING][2], found[WAITING][2], found[KV][2]) == (0.0, 0.0, 0.0)

    await eventually(idle)


async def test_scrapes_are_not_answered_requests(start_model: StartModel) -> None:
    model = await start_model()
    for _ in range(3):
        await metrics(model)
    assert (await model.state())["requests"] == 0, "a crash-after-requests switch never counts a scrape"
