"""``/metrics``: valid Prometheus text with the contract's names; token usage counted."""

from __future__ import annotations

import asyncio
import os
import shutil

import pytest
from prometheus_client.parser import text_string_to_metric_families

from .conftest import Running, Stub

EXPECTED = {
    "chute_requests": "counter",
    "chute_request_duration_seconds": "histogram",
    "chute_time_to_first_byte_seconds": "histogram",
    "chute_requests_in_flight": "gauge",
    "chute_concurrency_limit": "gauge",
    "chute_utilization_ratio": "gauge",
    "chute_requests_rejected": "counter",
    "chute_upstream_errors": "counter",
    "chute_model_up": "gauge",
    "chute_model_started": "gauge",
    "chute_last_request_timestamp_seconds": "gauge",
    "chute_prompt_tokens": "counter",
    "chute_completion_tokens": "counter",
    "chute_draining": "gauge",
}


def _samples(text: str) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    return {
        (sample.name, tuple(sorted(sample.labels.items()))): sample.value
        for family in text_string_to_metric_families(text)
        for sample in family.samples
    }


async def _traffic(sidecar: Running) -> None:
    async with sidecar.session.post(sidecar.url("/v1/chat/completions"), json={"messages": []}) as response:
        assert response.status == 200
    async with sidecar.session.get(sidecar.url("/echo")) as response:
        assert response.status == 200


async def test_metric_names_types_and_labels(sidecar: Running) -> None:
    await _traffic(sidecar)
    text = await sidecar.metrics_text()
    families = {family.name: family for family in text_string_to_metric_families(text)}
    for name, kind in EXPECTED.items():
        assert name in families, name
        assert families[name].type == kind, name
    assert all(name.startswith("chute_") for name in families)
    samples = _samples(text)
    assert samples[("chute_requests_total", (("code", "200"), ("method", "POST"), ("route", "other")))] == 1
    assert samples[("chute_request_duration_seconds_count", (("route", "other"),))] == 2
    assert samples[("chute_time_to_first_byte_seconds_count", (("route", "other"),))] == 2
    assert samples[("chute_last_request_timestamp_seconds", ())] > 1.7e9
    assert samples[("chute_draining", ())] == 0
    for reason in ("concurrency", "auth", "body_too_large", "route"):
        assert samples[("chute_requests_rejected_total", (("reason", reason),))] == 0
    for kind in ("connect", "timeout", "protocol"):
        assert samples[("chute_upstream_errors_total", (("kind", kind),))] == 0


async def test_promtool_accepts_the_metrics(sidecar: Running) -> None:
    promtool = shutil.which("promtool")
    if promtool is None:
        if os.environ.get("CI") == "true":
            pytest.fail("promtool is required in CI (Debian package 'prometheus')")
        pytest.skip("promtool not installed")
    await _traffic(sidecar)
    text = await sidecar.metrics_text()
    process = await asyncio.create_subprocess_exec(
        promtool,
        "check",
        "metrics",
        stdin=asyncio.subprocess.PIPE,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.STDOUT,
    )
    output, _ = await process.communicate(text.encode())
    assert process.returncode == 0, output.decode()
    assert output.decode().strip() == "", output.decode()  # no lint warnings either


async def test_usage_tokens_from_json_response(sidecar: Running) -> None:
    async with sidecar.session.post(sidecar.url("/v1/chat/completions"), json={}) as response:
        body = await response.json()
    assert body["usage"]["prompt_tokens"] == 11
    samples = _samples(await sidecar.metrics_text())
    assert samples[("chute_prompt_tokens_total", ())] == 11
    assert samples[("chute_completion_tokens_total", ())] == 5


async def test_usage_tokens_from_sse_stream(sidecar: Running, stub: Stub) -> None:
    stub.release.set()
    for _ in range(2):
        async with sidecar.session.get(sidecar.url("/stream")) as response:
            body = await response.read()
        assert body.endswith(b"data: [DONE]\n\n")
    samples = _samples(await sidecar.metrics_text())
    assert samples[("chute_prompt_tokens_total", ())] == 14
    assert samples[("chute_completion_tokens_total", ())] == 6
