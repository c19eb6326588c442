"""The model's own series (``--engine-metrics-path``) on the metrics port, beside the sidecar's
in-flight count and 429s: what an endpoint picker reads of each replica."""

from __future__ import annotations

import asyncio

import pytest
from prometheus_client.parser import text_string_to_metric_families
from yarl import URL

from chute_sidecar.metrics import Metrics
from chute_sidecar.relay import EngineMetrics, relayable

from .conftest import Running, StartSidecar, Stub, eventually

VLLM = b"""# HELP vllm:num_requests_running Number of requests in model execution batches.
# TYPE vllm:num_requests_running gauge
vllm:num_requests_running{engine="0",model_name="m"} 3.0
# HELP vllm:num_requests_waiting Number of requests waiting to be processed.
# TYPE vllm:num_requests_waiting gauge
vllm:num_requests_waiting{engine="0",model_name="m"} 2.0
# HELP vllm:kv_cache_usage_perc KV-cache usage. 1 means 100 percent usage.
# TYPE vllm:kv_cache_usage_perc gauge
vllm:kv_cache_usage_perc{engine="0",model_name="m"} 0.5
"""
IMPOSTOR = b"""# HELP chute_utilization_ratio Not the sidecar's.
# TYPE chute_utilization_ratio gauge
chute_utilization_ratio 99.0
# TYPE chute_fake_seconds histogram
chute_fake_seconds_bucket{le="+Inf"} 1
"""


def samples(text: str) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    """Every sample by name and labels; fails on text Prometheus cannot read (a family split in two)."""
    found: dict[tuple[str, tuple[tuple[str, str], ...]], float] = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            key = (sample.name, tuple(sorted(sample.labels.items())))
            assert key not in found, f"{key} twice"
            found[key] = sample.value
    return found


def value(text: str, name: str, **labels: str) -> float | None:
    return samples(text).get((name, tuple(sorted(labels.items()))))


def test_relayable_drops_the_sidecars_names_plain_comments_and_eof() -> None:
    document = b"# a comment\n\n" + IMPOSTOR + VLLM + b"# EOF\n"
    assert relayable(document) == VLLM
    assert relayable(b"") == b""
    assert relayable(b"# only a comment\n") == b""


async def test_the_models_series_follow_the_sidecars_on_the_metrics_port(
    start_sidecar: StartSidecar, stub: Stub
) -> None:
    stub.engine_document = IMPOSTOR + VLLM
    sidecar = await start_sidecar(concurrency=4, engine_metrics_path="/metrics")
    text = await sidecar.metrics_text()
    assert value(text, "vllm:num_requests_waiting", engine="0", model_name="m") == 2.0
    assert value(text, "vllm:kv_cache_usage_perc", engine="0", model_name="m") == 0.5
    assert value(text, "chute_engine_metrics_up") == 1.0
    assert value(text, "chute_utilization_ratio") == 0.0, "the model cannot speak for the sidecar"
    assert value(text, "chute_fake_seconds_bucket", le="+Inf") is None
    scrapes = stub.engine_scrapes
    async with sidecar.session.get(sidecar.url("/metrics")) as response:
        assert response.status == 404, "not through the Service, its routes or load balancers"
    assert stub.engine_scrapes == scrapes


@pytest.mark.parametrize("variant", ["/%6detrics", "/metrics/", "//metrics", "/metrics/x", "/metricsx"])
async def test_no_spelling_of_the_engine_metrics_path_reaches_the_model_on_the_serving_port(
    start_sidecar: StartSidecar, stub: Stub, variant: str
) -> None:
    """Found by the breaking pass of the doors: the model's server decodes escapes and serves below
    the path, so a private path is refused however it is spelled (as the model would read it)."""
    sidecar = await start_sidecar(engine_metrics_path="/metrics")
    scrapes = stub.engine_scrapes
    async with sidecar.session.get(URL(sidecar.url(variant), encoded=True)) as response:
        assert response.status == 404, variant
    assert stub.engine_scrapes == scrapes


async def test_a_picker_sees_a_replica_at_its_concurrency_limit(
    start_sidecar: StartSidecar, stub: Stub
) -> None:
    """One request in flight of one allowed, one refused (429): both beside the engine's series."""
    stub.engine_document = VLLM
    sidecar = await start_sidecar(concurrency=1, engine_metrics_path="/metrics")
    held = asyncio.create_task(sidecar.session.get(sidecar.url("/hold")))

    async def entered() -> bool:
        return stub.entered == 1

    await eventually(entered)
    async with sidecar.session.get(sidecar.url("/echo")) as response:
        assert response.status == 429
    text = await sidecar.metrics_text()
    assert value(text, "chute_requests_in_flight") == 1.0
    assert value(text, "chute_concurrency_limit") == 1.0
    assert value(text, "chute_requests_rejected_total", reason="concurrency") == 1.0
    assert value(text, "vllm:num_requests_running", engine="0", model_name="m") == 3.0
    stub.release.set()
    async with await held as response:
        assert response.status == 200


async def test_a_model_that_does_not_answer_its_metrics_leaves_the_sidecars(
    start_sidecar: StartSidecar, stub: Stub
) -> None:
    stub.engine_document, stub.engine_status = VLLM, 503
    sidecar = await start_sidecar(engine_metrics_path="/metrics")
    text = await sidecar.metrics_text()
    assert value(text, "chute_engine_metrics_up") == 0.0
    assert value(text, "chute_engine_metrics_failures_total", kind="status") == 1.0
    assert value(text, "vllm:num_requests_running", engine="0", model_name="m") is None
    assert value(text, "chute_concurrency_limit") == 1.0
    stub.engine_status = 200
    assert value(await sidecar.metrics_text(), "chute_engine_metrics_up") == 1.0


async def test_without_the_flag_nothing_is_relayed(sidecar: Running, stub: Stub) -> None:
    stub.engine_document = VLLM
    text = await sidecar.metrics_text()
    assert "vllm:" not in text
    assert "chute_engine_metrics" not in text
    assert stub.engine_scrapes == 0
    async with sidecar.session.get(sidecar.url("/metrics")) as response:
        assert response.status == 200, "the serving port proxies every path, as before"


async def _relay(stub: Stub, **bounds: float) -> tuple[EngineMetrics, Metrics]:
    metrics = Metrics(1)
    engine = EngineMetrics(stub.url, "/metrics", metrics, **bounds)  # type: ignore[arg-type]
    await engine.start()
    return engine, metrics


async def test_concurrent_scrapes_share_one_request_to_the_model(stub: Stub) -> None:
    stub.engine_document, stub.engine_gate = VLLM, asyncio.Event()
    engine, _ = await _relay(stub)
    try:
        scrapes = [asyncio.create_task(engine.scrape()) for _ in range(5)]

        async def asked() -> bool:
            return stub.engine_scrapes == 1

        await eventually(asked)
        scrapes[0].cancel()  # one scraper leaving does not cut the others' answer
        stub.engine_gate.set()
        answers = await asyncio.gather(*scrapes[1:])
        assert answers == [VLLM] * 4
        assert stub.engine_scrapes == 1
        assert await engine.scrape() == VLLM
        assert stub.engine_scrapes == 2, "a later scrape asks again: nothing is served stale"
    finally:
        await engine.close()


async def test_a_document_too_large_or_too_slow_is_not_relayed(stub: Stub) -> None:
    stub.engine_document = VLLM
    engine, metrics = await _relay(stub, max_bytes=len(VLLM) - 1)
    try:
        assert await engine.scrape() == b""
        assert metrics.relay_failures.labels("too_large")._value.get() == 1
    finally:
        await engine.close()
    stub.engine_gate = asyncio.Event()  # never set: the model never answers
    engine, metrics = await _relay(stub, timeout=0.05)
    try:
        assert await engine.scrape() == b""
        assert metrics.relay_failures.labels("timeout")._value.get() == 1
        assert metrics.relay_up._value.get() == 0
    finally:
        await engine.close()
        stub.engine_gate.set()
