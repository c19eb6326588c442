"""The activator on loopback: requests held for a Chute at zero, the wake, forwarding, 503s and 404s.

The upstream is the simulated model server (in this process, on 127.0.0.1); the test plays the
operator: it starts the model when the activator asks for a wake, then reports its endpoint.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import replace

import aiohttp
import pytest
from aiohttp import web

from chute_modelsim.config import Config
from chute_modelsim.server import ModelServer
from tests.unit.chute_activator.conftest import LOOPBACK, Running, StartActivator

KEY = ("team", "llm")
HOST = {"Host": "llm.team.svc.cluster.local"}
CHAT = {"model": "chute-modelsim", "messages": [{"role": "user", "content": "hello"}], "max_tokens": 5}

StartModel = Callable[..., Awaitable[ModelServer]]


@pytest.fixture
async def start_model() -> AsyncIterator[StartModel]:
    started: list[ModelServer] = []

    async def start(**overrides: object) -> ModelServer:
        base = Config(
            host=LOOPBACK,
            port=0,
            admin_port=0,
            loading="refuse",
            time_to_first_token_seconds=0.0,
            tokens_per_second=0.0,
        )
        server = ModelServer(replace(base, **overrides), exit_process=lambda code: None)  # type: ignore[arg-type]
        started.append(server)
        await server.start()
        await until(lambda: server.port is not None)  # bound once loaded (``loading=refuse``, like vLLM)
        return server

    yield start
    for server in started:
        await server.stop()


async def until(check: Callable[[], bool], within: float = 10.0) -> None:
    """Poll until ``check`` holds; a bound against hanging, not a timing assertion."""
    async with asyncio.timeout(within):
        while not check():  # noqa: ASYNC110 (polls state another task changes)
            await asyncio.sleep(0.01)


async def wake_when_asked(activator: Running, start_model: StartModel, **model: object) -> ModelServer:
    """Play the operator: once a wake is asked for, start a replica and report it ready."""
    await until(lambda: bool(activator.wakes))
    server = await start_model(**model)
    activator.chute(KEY, endpoints=(f"{LOOPBACK}:{server.port}",))
    return server


async def post(
    session: aiohttp.ClientSession, activator: Running, body: object = CHAT
) -> tuple[int, dict[str, str], bytes]:
    async with session.post(activator.url(), json=body, headers=HOST) as response:
        return response.status, dict(response.headers), await response.read()


async def test_twenty_concurrent_requests_at_zero_are_all_answered_after_the_wake(
    start_activator: StartActivator, start_model: StartModel, session: aiohttp.ClientSession
) -> None:
    activator = await start_activator(queue_limit=20)
    activator.chute(KEY)
    requests = [asyncio.create_task(post(session, activator)) for _ in range(20)]
    await until(lambda: activator.holder._gates[KEY].waiting == 20)
    assert not any(task.done() for task in requests)
    await wake_when_asked(activator, start_model)
    answers = await asyncio.gather(*requests)
    assert [status for status, _, _ in answers] == [200] * 20
    assert activator.wakes == [KEY]  # one wake, not one per request


async def test_with_a_queue_limit_of_ten_ten_are_answered_and_ten_get_503_with_retry_after(
    start_activator: StartActivator, start_model: StartModel, session: aiohttp.ClientSession
) -> None:
    activator = await start_activator(queue_limit=10, default_retry_after=7)
    activator.chute(KEY)
    requests = [asyncio.create_task(post(session, activator)) for _ in range(20)]
    await until(lambda: sum(task.done() for task in requests) == 10)
    await wake_when_asked(activator, start_model)
    answers = await asyncio.gather(*requests)
    statuses = sorted(status for status, _, _ in answers)
    assert statuses == [200] * 10 + [503] * 10
    for status, headers, body in answers:
        if status == 503:
            assert headers["Retry-After"] == "7"
            assert b"QueueFull" in body


async def test_a_streaming_request_held_through_the_wake_streams_its_tokens(
    start_activator: StartActivator, start_model: StartModel, session: aiohttp.ClientSession
) -> None:
    activator = await start_activator()
    activator.chute(KEY)
    body = {**CHAT, "stream": True, "max_tokens": 8}

    async def stream() -> tuple[int, str, bytes, bool, bytes]:
        async with session.post(activator.url(), json=body, headers=HOST) as response:
            first = await response.content.readuntil(b"\n\n")
            open_after_first_event = not response.content.at_eof()
            rest = await response.read()
            return response.status, response.headers["Content-Type"], first, open_after_first_event, rest

    held = asyncio.create_task(stream())
    await wake_when_asked(activator, start_model, tokens_per_second=20.0)
    status, content_type, first, open_after_first_event, rest = await held
    assert status == 200
    assert content_type.startswith("text/event-stream")
    assert first.startswith(b"data: {")
    assert open_after_first_event
    events = (first + rest).split(b"\n\n")
    assert events[-2] == b"data: [DONE]"
    assert sum(b'"content"' in event for event in events) >= 8


async def test_a_chute_deleted_while_requests_are_held_answers_them_404_at_once(
    start_activator: StartActivator, session: aiohttp.ClientSession
) -> None:
    activator = await start_activator()
    activator.chute(KEY)
    requests = [asyncio.create_task(post(session, activator)) for _ in range(3)]
    await until(lambda: activator.holder._gates[KEY].waiting == 3)
    activator.holder.update(KEY, None)
    answers = await asyncio.wait_for(asyncio.gather(*requests), 5)
    assert [status for status, _, _ in answers] == [404] * 3
    assert all(b"NotFound" in body for _, _, body in answers)
    assert KEY not in activator.holder._gates


async def test_a_chute_that_cannot_wake_answers_held_requests_503_with_the_reason(
    start_activator: StartActivator, session: aiohttp.ClientSession
) -> None:
    activator = await start_activator(default_retry_after=30)
    activator.chute(KEY)
    held = asyncio.create_task(post(session, activator))
    await until(lambda: activator.holder._gates[KEY].waiting == 1)
    reason = "Unschedulable: 0/1 nodes are available: 1 Insufficient nvidia.com/gpu."
    activator.chute(KEY, cannot_wake=reason)
    status, headers, body = await asyncio.wait_for(held, 5)
    assert status == 503
    assert headers["Retry-After"] == "30"
    assert reason.encode() in body
    assert b"CannotWake" in body


async def test_a_wait_that_runs_out_answers_503_with_retry_after_from_the_load_time(
    start_activator: StartActivator, session: aiohttp.ClientSession
) -> None:
    activator = await start_activator(max_wait_seconds=0.3)
    activator.chute(KEY, load_seconds=41.2)
    status, headers, body = await post(session, activator)
    assert status == 503
    assert headers["Retry-After"] == "42"
    assert b"WaitTimeout" in body


async def test_the_measured_wake_time_becomes_the_retry_after(
    start_activator: StartActivator, start_model: StartModel, session: aiohttp.ClientSession
) -> None:
    activator = await start_activator(queue_limit=1, default_retry_after=99)
    activator.chute(KEY)
    held = asyncio.create_task(post(session, activator))
    await wake_when_asked(activator, start_model)
    assert (await held)[0] == 200
    activator.chute(KEY, load_seconds=500.0)  # back at zero; the operator's measure
    assert activator.holder.retry_after(KEY) < 99  # measured from the wake to the first ready replica


async def test_a_port_no_chute_has_is_404_and_a_stopping_activator_answers_held_requests_503(
    start_activator: StartActivator, session: aiohttp.ClientSession
) -> None:
    activator = await start_activator(unclaimed_wait_seconds=0.2)
    async with session.get(activator.url("/x"), headers={"Host": "llm.team.svc"}) as response:
        assert response.status == 404  # a Host naming the Chute does not make the port its
        assert (await response.json())["error"]["reason"] == "UnknownChute"
    activator.chute(KEY)
    held = asyncio.create_task(post(session, activator))
    await until(lambda: activator.holder._gates[KEY].waiting == 1)
    activator.holder.stop_holding()
    status, headers, body = await asyncio.wait_for(held, 5)
    assert (status, headers["Retry-After"]) == (503, "10")
    assert b"ActivatorStopping" in body


async def test_ready_replicas_are_forwarded_to_without_holding_or_waking(
    start_activator: StartActivator, start_model: StartModel, session: aiohttp.ClientSession
) -> None:
    activator = await start_activator()
    server = await start_model()
    activator.chute(KEY, endpoints=(f"{LOOPBACK}:{server.port}",))
    async with session.post(activator.url(), json=CHAT) as response:
        assert response.status == 200
        assert (await response.json())["object"] == "chat.completion"
    assert activator.wakes == []


async def test_metrics_show_queue_length_wait_time_and_wakeups(
    start_activator: StartActivator, start_model: StartModel, session: aiohttp.ClientSession
) -> None:
    activator = await start_activator()
    activator.chute(KEY)
    held = asyncio.create_task(post(session, activator))
    await until(lambda: activator.holder._gates[KEY].waiting == 1)

    async def scrape() -> str:
        async with session.get(f"http://{LOOPBACK}:{activator.metrics_port}/metrics") as response:
            return await response.text()

    assert 'chute_activator_queue_length{chute="llm",namespace="team"} 1.0' in await scrape()
    await wake_when_asked(activator, start_model)
    assert (await held)[0] == 200
    text = await scrape()
    assert 'chute_activator_queue_length{chute="llm",namespace="team"} 0.0' in text
    assert 'chute_activator_wakeups_total{chute="llm",namespace="team"} 1.0' in text
    assert 'chute_activator_wait_seconds_count{outcome="forwarded"} 1.0' in text


async def test_the_latest_wake_is_recorded_in_order_in_chutes(
    start_activator: StartActivator, start_model: StartModel, session: aiohttp.ClientSession
) -> None:
    """``/_chutes`` keeps when the request was held, the wake written, a ready endpoint seen (and from
    where), the request forwarded and answered: what benchmarks/scale_to_zero.py breaks down."""
    activator = await start_activator()
    activator.chute(KEY)
    held = asyncio.create_task(post(session, activator))
    await until(lambda: bool(activator.wakes))
    server = await start_model()
    activator.chute(KEY, endpoints=(f"{LOOPBACK}:{server.port}",), source="sidecar")
    assert (await held)[0] == 200
    async with session.get(f"http://{LOOPBACK}:{activator.debug_port}/_chutes") as response:
        view = (await response.json())["team/llm"]
    wake = view["last_wake"]
    assert view["source"] == "sidecar"
    assert wake["ready_source"] == "sidecar"
    moments = [wake[name] for name in ("held", "wake_written", "ready_seen", "forwarded", "answered")]
    assert moments == sorted(moments)


async def test_a_stream_whose_client_leaves_at_done_is_counted_as_forwarded(
    start_activator: StartActivator, session: aiohttp.ClientSession
) -> None:
    """An OpenAI client stops reading at ``data: [DONE]`` and closes the connection. A replica (its
    sidecar, behind it the model) may end the stream a moment after that event: the client is gone
    before the activator writes the stream's end, and the request was forwarded all the same."""

    async def replica(request: web.Request) -> web.StreamResponse:
        response = web.StreamResponse(headers={"Content-Type": "text/event-stream"})
        await response.prepare(request)
        await response.write(b'data: {"choices": [{"delta": {"content": "a"}}]}\n\n')
        await response.write(b"data: [DONE]\n\n")
        await asyncio.sleep(0.3)  # the end of the stream comes after the client has left
        await response.write_eof()
        return response

    app = web.Application()
    app.router.add_post("/v1/chat/completions", replica)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    await web.TCPSite(runner, LOOPBACK, 0).start()
    try:
        activator = await start_activator()
        endpoint = f"{LOOPBACK}:{runner.addresses[0][1]}"
        activator.chute(KEY, endpoints=(endpoint,))
        async with session.post(activator.url(), json={**CHAT, "stream": True}, headers=HOST) as response:
            assert response.status == 200
            for _ in range(10):  # bounded: two events
                if (await response.content.readline()).strip() == b"data: [DONE]":
                    break
            response.close()  # gone before the stream's end: as a client that stops at [DONE]
        forwarded = activator.holder.metrics.forwarded.labels(*KEY)
        await asyncio.sleep(0.6)  # the replica has ended its stream
        assert forwarded._value.get() == 1
    finally:
        await runner.cleanup()


async def test_the_metrics_port_does_not_serve_the_chutes_listing(
    start_activator: StartActivator, session: aiohttp.ClientSession
) -> None:
    """The metrics port is published by the activator's Service: ``/metrics`` and the probes only."""
    activator = await start_activator()
    activator.chute(KEY)
    async with session.get(f"http://{LOOPBACK}:{activator.metrics_port}/_chutes") as response:
        assert response.status == 404
    async with session.get(f"http://{LOOPBACK}:{activator.metrics_port}/metrics") as response:
        assert response.status == 200
