"""The sidecar counts the simulator's tokens: the real sidecar in front of the real simulator."""

from __future__ import annotations

import asyncio
import json

import aiohttp
from prometheus_client.parser import text_string_to_metric_families

from chute_sidecar.app import Sidecar
from chute_sidecar.config import Config as SidecarConfig

from .conftest import LOOPBACK, Model, StartModel, eventually, parse_sse


async def _tokens(session: aiohttp.ClientSession, sidecar: Sidecar) -> tuple[float, float]:
    async with session.get(f"http://{LOOPBACK}:{sidecar.metrics_port}/metrics") as response:
        text = await response.text()
    values = {
        sample.name: sample.value
        for family in text_string_to_metric_families(text)
        for sample in family.samples
    }
    return values["chute_prompt_tokens_total"], values["chute_completion_tokens_total"]


async def test_sidecar_counts_usage_of_answers_and_streams(model: Model, sidecar: Sidecar) -> None:
    session = model.session
    base = f"http://{LOOPBACK}:{sidecar.port}"

    async def ready() -> bool:
        async with session.get(f"http://{LOOPBACK}:{sidecar.admin_port}/readyz") as response:
            return response.status == 200

    await eventually(ready)
    prompt = completion = 0
    chat = {"messages": [{"role": "user", "content": "count these five tokens"}], "max_tokens": 7}
    for path, body in (
        ("/v1/chat/completions", chat),
        ("/v1/chat/completions", {**chat, "stream": True, "stream_options": {"include_usage": True}}),
        (
            "/v1/completions",
            {"prompt": "a b c", "max_tokens": 300, "stream": True, "stream_options": {"include_usage": True}},
        ),
        ("/v1/embeddings", {"input": ["one two", "three"]}),
    ):
        async with session.post(base + path, json=body) as response:
            assert response.status == 200
            raw = await response.read()
        usage = parse_sse(raw)[-2]["usage"] if body.get("stream") else json.loads(raw)["usage"]
        prompt += usage["prompt_tokens"]
        completion += usage.get("completion_tokens", 0)
    assert (prompt, completion) == (4 + 4 + 3 + 3, 7 + 7 + 300 + 0)

    async def counted() -> bool:
        return await _tokens(session, sidecar) == (prompt, completion)

    await eventually(counted)


async def test_a_stream_without_include_usage_is_not_counted(model: Model, sidecar: Sidecar) -> None:
    """Like OpenAI, no usage in a stream unless asked: nothing for the sidecar to count."""
    base = f"http://{LOOPBACK}:{sidecar.port}"
    body = {"messages": [{"role": "user", "content": "hi"}], "stream": True}
    async with model.session.post(base + "/v1/chat/completions", json=body) as response:
        assert response.status == 200
        assert b'"usage"' not in await response.read()
    assert await _tokens(model.session, sidecar) == (0, 0)


async def test_the_sidecar_relays_the_simulators_engine_metrics(start_model: StartModel) -> None:
    """Three requests through the sidecar, one generated (max_num_seqs 1), two queued in the engine:
    the metrics port shows the engine's running and waiting beside the sidecar's three in flight."""
    model = await start_model(max_num_seqs=1, tokens_per_second=0.01)
    sidecar = Sidecar(
        SidecarConfig(
            upstream=f"http://{LOOPBACK}:{model.server.port}",
            host=LOOPBACK,
            port=0,
            metrics_port=0,
            admin_port=0,
            concurrency=4,
            engine_metrics_path="/metrics",
            drain_seconds=0.0,
        )
    )
    await sidecar.start()
    try:
        body = {"messages": [{"role": "user", "content": "hi"}], "max_tokens": 4, "stream": True}
        url = f"http://{LOOPBACK}:{sidecar.port}/v1/chat/completions"
        posts = [asyncio.create_task(model.session.post(url, json=body)) for _ in range(3)]

        async def queued() -> bool:
            return model.server.batch.waiting == 2

        await eventually(queued)
        async with model.session.get(f"http://{LOOPBACK}:{sidecar.metrics_port}/metrics") as response:
            values = {
                (sample.name, sample.labels.get("model_name")): sample.value
                for family in text_string_to_metric_families(await response.text())
                for sample in family.samples
            }
        assert values["vllm:num_requests_running", "chute-modelsim"] == 1.0
        assert values["vllm:num_requests_waiting", "chute-modelsim"] == 2.0
        assert 0 < values["vllm:kv_cache_usage_perc", "chute-modelsim"] < 1
        assert values["chute_requests_in_flight", None] == 3.0
        for post in posts:
            post.cancel()
        await asyncio.gather(*posts, return_exceptions=True)
    finally:
        await sidecar.stop()
