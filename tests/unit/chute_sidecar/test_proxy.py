"""The serving port as a reverse proxy: methods, headers, bodies, streaming, errors."""

from __future__ import annotations

import asyncio
import hashlib
import os
from collections.abc import AsyncIterator

import aiohttp
import pytest
from yarl import URL

from .conftest import Running, StartSidecar, Stub, eventually, free_port


@pytest.mark.parametrize("method", ["GET", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"])
async def test_methods_paths_and_queries_pass_through(sidecar: Running, stub: Stub, method: str) -> None:
    url = URL(sidecar.url("/echo/a%20b/c?x=1&y=%2F"), encoded=True)
    async with sidecar.session.request(method, url) as response:
        assert response.status == 200
        record = await response.json()
    assert record["method"] == method
    assert record["path"] == "/echo/a b/c"
    assert record["query"] == "x=1&y=%2F"
    assert record["raw_path"] == "/echo/a%20b/c?x=1&y=%2F"


async def test_head_has_headers_and_no_body(sidecar: Running) -> None:
    async with sidecar.session.head(sidecar.url("/echo")) as response:
        assert response.status == 200
        assert response.headers["X-Model"] == "stub"
        assert await response.read() == b""


async def test_request_headers_forwarded_and_hop_by_hop_stripped(sidecar: Running) -> None:
    headers = {
        "X-Custom": "kept",
        "Authorization": "Bearer model-token",
        "Connection": "keep-alive, X-Hop",
        "X-Hop": "dropped because Connection names it",
        "Keep-Alive": "timeout=5",
        "TE": "trailers",
        "Proxy-Authorization": "Basic Zm9vOmJhcg==",
        "X-Forwarded-For": "10.1.2.3",
    }
    async with sidecar.session.get(sidecar.url("/echo"), headers=headers) as response:
        assert response.status == 200
        seen = {k.lower(): v for k, v in (await response.json())["headers"].items()}
    assert seen["x-custom"] == "kept"
    assert seen["authorization"] == "Bearer model-token"
    for hop in ("x-hop", "keep-alive", "te", "proxy-authorization"):
        assert hop not in seen, hop
    assert seen["x-forwarded-for"] == "10.1.2.3, 127.0.0.1"
    assert seen["x-forwarded-proto"] == "http"
    assert seen["host"] != f"127.0.0.1:{sidecar.sidecar.port}"  # the upstream's host, not ours


async def test_response_headers_forwarded_and_hop_by_hop_stripped(sidecar: Running) -> None:
    async with sidecar.session.get(sidecar.url("/echo")) as response:
        assert response.headers["X-Model"] == "stub"
        assert response.headers["Set-Cookie"] == "model=1"
        assert "Keep-Alive" not in response.headers
        assert "Proxy-Authenticate" not in response.headers


async def test_ten_megabyte_body_round_trip(sidecar: Running) -> None:
    body = os.urandom(10 * 1024 * 1024)
    async with sidecar.session.post(sidecar.url("/mirror"), data=body) as response:
        assert response.status == 200
        echoed = await response.read()
    assert hashlib.sha256(echoed).digest() == hashlib.sha256(body).digest()


async def test_chunked_upload_is_streamed(sidecar: Running) -> None:
    parts = [os.urandom(256 * 1024) for _ in range(8)]

    async def produce() -> AsyncIterator[bytes]:
        for part in parts:
            yield part

    async with sidecar.session.post(sidecar.url("/echo"), data=produce()) as response:
        record = await response.json()
    assert record["size"] == sum(map(len, parts))
    assert record["sha256"] == hashlib.sha256(b"".join(parts)).hexdigest()
    assert record["chunked"] is True


async def test_large_download_keeps_content_length(sidecar: Running) -> None:
    size = 10 * 1024 * 1024 + 7
    async with sidecar.session.get(sidecar.url(f"/big?size={size}")) as response:
        assert response.content_length == size
        data = await response.read()
    block = bytes(range(256)) * 256
    expected = (block * (size // len(block) + 1))[:size]
    assert hashlib.sha256(data).digest() == hashlib.sha256(expected).digest()


async def test_stream_chunks_arrive_before_the_model_finishes(sidecar: Running, stub: Stub) -> None:
    async with sidecar.session.get(sidecar.url("/stream")) as response:
        assert response.status == 200
        assert response.headers["Content-Type"] == "text/event-stream"
        first = await asyncio.wait_for(response.content.readuntil(b"\n\n"), 10)
        assert b"first" in first
        assert not stub.release.is_set()  # the model is still mid-response
        stub.release.set()
        rest = await response.read()
    assert b"second" in rest
    assert rest.endswith(b"data: [DONE]\n\n")


async def test_client_disconnect_cancels_the_upstream_request(sidecar: Running, stub: Stub) -> None:
    session = aiohttp.ClientSession()
    response = await session.get(sidecar.url("/stream"))
    await response.content.readuntil(b"\n\n")
    response.close()  # drop the connection mid-stream
    await session.close()

    async def stub_cancelled() -> bool:
        return stub.cancelled == 1

    await eventually(stub_cancelled)

    async def slot_free() -> bool:
        return sidecar.sidecar.limiter.in_flight == 0

    await eventually(slot_free)
    assert 'code="499"' in await sidecar.metrics_text()


async def test_client_disconnect_while_waiting_for_headers(sidecar: Running, stub: Stub) -> None:
    session = aiohttp.ClientSession()
    task = asyncio.create_task(session.get(sidecar.url("/hold")))

    async def model_busy() -> bool:
        return stub.entered == 1

    await eventually(model_busy)
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    await session.close()

    async def stub_cancelled() -> bool:
        return stub.cancelled == 1

    await eventually(stub_cancelled)
    assert stub.finished == 0


async def test_request_timeout_gives_504(start_sidecar: StartSidecar, stub: Stub) -> None:
    running = await start_sidecar(request_timeout_seconds=0.2)
    async with running.session.get(running.url("/slow?seconds=30")) as response:
        assert response.status == 504
    text = await running.metrics_text()
    assert 'chute_upstream_errors_total{kind="timeout"} 1.0' in text

    async def stub_cancelled() -> bool:
        return stub.cancelled == 1

    await eventually(stub_cancelled)


async def test_model_unreachable_gives_502(start_sidecar: StartSidecar) -> None:
    from .conftest import sidecar_config  # noqa: F401  (documents where defaults come from)

    dead = Stub()
    dead.port = free_port()  # nothing listens there
    running = await start_sidecar(upstream=dead.url)
    async with running.session.get(running.url("/anything")) as response:
        assert response.status == 502
    assert 'chute_upstream_errors_total{kind="connect"} 1.0' in await running.metrics_text()


async def test_model_dropping_mid_body_cuts_the_client_response(sidecar: Running) -> None:
    async with sidecar.session.get(sidecar.url("/broken")) as response:
        assert response.status == 200
        with pytest.raises(aiohttp.ClientPayloadError):
            await response.read()
    assert 'chute_upstream_errors_total{kind="protocol"} 1.0' in await sidecar.metrics_text()


async def test_body_over_limit_gives_413(start_sidecar: StartSidecar, stub: Stub) -> None:
    running = await start_sidecar(max_body_bytes=1000)
    async with running.session.post(running.url("/echo"), data=b"x" * 1000) as response:
        assert response.status == 200
    async with running.session.post(running.url("/echo"), data=b"x" * 1001) as response:
        assert response.status == 413
    assert len(stub.seen) == 1  # the oversized body never reached the model

    async def produce() -> AsyncIterator[bytes]:
        for _ in range(10):
            yield b"y" * 500

    async with running.session.post(running.url("/echo"), data=produce()) as response:
        assert response.status == 413
    assert 'chute_requests_rejected_total{reason="body_too_large"} 2.0' in await running.metrics_text()


async def test_cords_allow_list(start_sidecar: StartSidecar, stub: Stub) -> None:
    running = await start_sidecar(
        cords=("POST /v1/chat/completions", "GET /v1/models", "* /echo/*"), restrict_to_cords=True
    )
    async with running.session.post(running.url("/v1/chat/completions"), json={}) as response:
        assert response.status == 200
    async with running.session.get(running.url("/v1/models")) as response:
        assert response.status == 200
    async with running.session.put(running.url("/echo/deep/path?q=1")) as response:
        assert response.status == 200
    for method, path in [
        ("GET", "/v1/chat/completions"),  # right path, wrong method
        ("GET", "/echo"),  # prefix needs the slash
        ("GET", "/admin"),
        ("GET", "/echo/../admin"),
        ("GET", "/echo/%2e%2e/admin"),
    ]:
        async with running.session.request(method, URL(running.url(path), encoded=True)) as response:
            assert response.status == 404, (method, path)
    text = await running.metrics_text()
    assert 'chute_requests_rejected_total{reason="route"} 5.0' in text
    assert 'chute_requests_total{code="200",method="POST",route="/v1/chat/completions"} 1.0' in text
    assert 'chute_requests_total{code="200",method="PUT",route="/echo/*"} 1.0' in text
    assert 'chute_requests_total{code="404",method="GET",route="other"} 5.0' in text


async def test_unrestricted_cords_only_label(start_sidecar: StartSidecar) -> None:
    running = await start_sidecar(cords=("GET /v1/models",))
    async with running.session.get(running.url("/v1/models")) as response:
        assert response.status == 200
    async with running.session.get(running.url("/echo/x")) as response:
        assert response.status == 200
    text = await running.metrics_text()
    assert 'chute_requests_total{code="200",method="GET",route="/v1/models"} 1.0' in text
    assert 'chute_requests_total{code="200",method="GET",route="other"} 1.0' in text


async def test_conn_stats_on_serving_and_metrics_ports_not_counted(
    start_sidecar: StartSidecar, stub: Stub
) -> None:
    running = await start_sidecar(concurrency=3)
    task = asyncio.create_task(running.session.get(running.url("/hold")))

    async def model_busy() -> bool:
        return stub.entered == 1

    await eventually(model_busy)
    for url in (running.url("/_conn_stats"), running.metrics("/_conn_stats")):
        async with running.session.get(url) as response:
            assert response.status == 200
            stats = await response.json()
        assert stats["concurrency"] == 3
        assert stats["in_flight"] == 1
        assert stats["available"] == 2
        assert stats["utilization"] == pytest.approx(1 / 3, abs=1e-3)
        assert stats["oldest_in_flight_age_secs"] >= 0
        assert stats["idle_secs"] is None  # busy
    stub.release.set()
    async with await task as response:
        assert response.status == 200
    async with running.session.get(running.url("/_conn_stats")) as response:
        stats = await response.json()
    assert stats["in_flight"] == 0
    assert stats["oldest_in_flight_age_secs"] is None
    assert 0 <= stats["idle_secs"] < 60  # counted from the end of the request just served
    assert "_conn_stats" not in await running.metrics_text()


async def test_conn_stats_say_ready_as_readyz_does_on_both_ports(
    start_sidecar: StartSidecar, stub: Stub
) -> None:
    """The activator reads ``ready`` on the serving port (its only port into the pod) to forward a held
    request as soon as the model is up: false while the model fails its health, true once it passes,
    false while draining, as ``/readyz``."""

    async def ready_on_both() -> set[object]:
        seen = set()
        for url in (running.url("/_conn_stats"), running.metrics("/_conn_stats")):
            async with running.session.get(url) as response:
                seen.add((await response.json())["ready"])
        return seen

    stub.health_status = 503
    running = await start_sidecar(drain_token="t")
    assert await ready_on_both() == {False}
    assert await running.status("/readyz") == 503
    stub.health_status = 200

    async def both_ready() -> bool:
        return await ready_on_both() == {True}

    await eventually(both_ready)
    assert await running.status("/readyz") == 200
    async with running.session.get(
        running.admin("/drainz"), headers={"X-Chute-Drain-Token": "t"}
    ) as response:
        assert response.status == 200
    assert await ready_on_both() == {False}
    assert await running.status("/readyz") == 503
