"""Every route of the serving port, in-process on loopback: answers, SSE framing, usage, load gating."""

from __future__ import annotations

import asyncio
import time

import aiohttp

from .conftest import LOOPBACK, Model, StartModel, eventually, free_port, parse_sse

CHAT = {"messages": [{"role": "user", "content": "Say something, please."}], "max_tokens": 6}


async def test_models(model: Model) -> None:
    async with model.session.get(model.url("/v1/models")) as response:
        assert response.status == 200
        body = await response.json()
    assert body["data"][0]["id"] == "chute-modelsim"


async def test_chat_completion_with_usage(model: Model) -> None:
    status, body = await model.post("/v1/chat/completions", {**CHAT, "model": "chute-modelsim"})
    assert status == 200
    assert body["object"] == "chat.completion"
    assert len(body["choices"][0]["message"]["content"].split()) == 6
    assert body["usage"] == {"prompt_tokens": 5, "completion_tokens": 6, "total_tokens": 11}
    _, again = await model.post("/v1/chat/completions", CHAT)
    assert again["choices"] == body["choices"], "deterministic tokens"


async def test_chat_stream_framing_and_usage(model: Model) -> None:
    body = {**CHAT, "stream": True, "stream_options": {"include_usage": True}}
    async with model.session.post(model.url("/v1/chat/completions"), json=body) as response:
        assert response.status == 200
        assert response.headers["Content-Type"] == "text/event-stream"
        raw = await response.read()
    events = parse_sse(raw)
    assert events[-1] == "[DONE]"
    assert raw.endswith(b"data: [DONE]\n\n")
    *chunks, usage = events[:-1]
    assert usage["choices"] == []
    assert usage["usage"] == {"prompt_tokens": 5, "completion_tokens": 6, "total_tokens": 11}
    assert len({chunk["id"] for chunk in events[:-1]}) == 1
    _, full = await model.post("/v1/chat/completions", CHAT)
    text = "".join(chunk["choices"][0]["delta"].get("content", "") for chunk in chunks)
    assert text == full["choices"][0]["message"]["content"]


async def test_completion_stream_without_usage(model: Model) -> None:
    body = {"prompt": "Once upon a time", "max_tokens": 3, "stream": True}
    async with model.session.post(model.url("/v1/completions"), json=body) as response:
        events = parse_sse(await response.read())
    assert events[-1] == "[DONE]"
    assert [event["choices"][0]["finish_reason"] for event in events[:-1]] == [None, None, "length"]
    assert all("usage" not in event for event in events[:-1])


async def test_completion_and_embeddings(model: Model) -> None:
    status, body = await model.post("/v1/completions", {"prompt": "Once upon a time"})
    assert status == 200
    assert body["usage"]["prompt_tokens"] == 4
    assert body["usage"]["completion_tokens"] == 16
    status, body = await model.post("/v1/embeddings", {"input": ["one", "two"], "dimensions": 8})
    assert status == 200
    assert [len(item["embedding"]) for item in body["data"]] == [8, 8]
    assert body["usage"] == {"prompt_tokens": 2, "total_tokens": 2}


async def test_errors_are_openai_error_objects(model: Model) -> None:
    async with model.session.post(model.url("/v1/chat/completions"), data=b"{not json") as response:
        assert response.status == 400
        assert "not JSON" in (await response.json())["error"]["message"]
    status, body = await model.post("/v1/chat/completions", {**CHAT, "model": "gpt-4"})
    assert status == 404
    assert body["error"]["param"] == "model"
    async with model.session.get(model.url("/v1/nothing")) as response:
        assert response.status == 404


async def test_unavailable_loading_answers_503_until_loaded(start_model: StartModel) -> None:
    model = await start_model(wait_loaded=False, load_seconds=0.5, loading="unavailable")
    async with model.session.get(model.url("/health")) as response:
        assert response.status == 503
    status, body = await model.post("/v1/chat/completions", CHAT)
    assert status == 503
    assert "loading" in body["error"]["message"]
    assert (await model.state())["loaded"] is False

    async def healthy() -> bool:
        async with model.session.get(model.url("/health")) as response:
            return response.status == 200

    await eventually(healthy)
    assert (await model.state())["loaded"] is True


async def test_refuse_loading_does_not_listen_until_loaded(start_model: StartModel) -> None:
    port = free_port()
    model = await start_model(wait_loaded=False, load_seconds=0.5, loading="refuse", port=port)
    assert model.server.port is None
    try:
        async with model.session.get(f"http://{LOOPBACK}:{port}/health"):
            raise AssertionError("the serving port answered while loading")
    except aiohttp.ClientConnectorError:
        pass
    assert (await model.state())["loaded"] is False, "the admin port answers while loading"
    await asyncio.wait_for(model.server.loaded.wait(), 10)
    async with model.session.get(f"http://{LOOPBACK}:{port}/health") as response:
        assert response.status == 200


async def test_time_to_first_token_and_rate_delay_the_answer(start_model: StartModel) -> None:
    """Lower bounds only: the delays are sleeps, so an answer can never come earlier than configured."""
    model = await start_model(time_to_first_token_seconds=0.2, tokens_per_second=20.0)
    body = {**CHAT, "max_tokens": 5, "stream": True}
    started = time.monotonic()
    async with model.session.post(model.url("/v1/chat/completions"), json=body) as response:
        first = await response.content.readuntil(b"\n\n")
        first_at = time.monotonic() - started
        await response.read()
        done_at = time.monotonic() - started
    assert b'"role":"assistant"' in first
    assert first_at >= 0.2
    assert done_at >= 0.2 + 4 / 20


async def test_requests_are_counted_but_health_is_not(model: Model) -> None:
    for _ in range(3):
        await model.post("/v1/completions", {"prompt": "x"})
    async with model.session.get(model.url("/health")) as response:
        assert response.status == 200
    assert (await model.state())["requests"] == 3
