"""A real activator process sent SIGTERM drains: it stays listening and unready, forwards to Chutes
with ready replicas and keeps holding, then answers what it holds 503 + Retry-After and exits.

kube-proxy keeps sending new connections to an activator pod until the operator has re-read the
activator's endpoints (every 5 s) and rewritten each Chute's slice, and kube-proxy has synced: a
listener closed at SIGTERM would refuse them.
"""

from __future__ import annotations

import asyncio
import signal
import subprocess
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from aiohttp import web

from chute_activator.config import parse_config
from chute_shared.cluster import CHUTE_LABEL
from chute_shared.ports import SERVING_PORT_NAME

from .fake_api import LOOPBACK, FakeApi, chute
from .test_process_shutdown import CHAT, CHUTE_PORTS, metric, running_activator, until_ready, with_port

PORTS = {"awake": CHUTE_PORTS[0], "idle": CHUTE_PORTS[1]}

DRAIN_SECONDS = 3.0


def ready_slice(namespace: str, name: str, port: int) -> dict[str, Any]:
    """The EndpointSlice Kubernetes keeps for a Chute's pods: one ready endpoint on loopback."""
    return {
        "apiVersion": "discovery.k8s.io/v1",
        "kind": "EndpointSlice",
        "metadata": {
            "namespace": namespace,
            "name": f"{name}-abcde",
            "resourceVersion": "1",
            "labels": {
                CHUTE_LABEL: name,
                "endpointslice.kubernetes.io/managed-by": "endpointslice-controller.k8s.io",
            },
        },
        "addressType": "IPv4",
        "ports": [{"name": SERVING_PORT_NAME, "port": port, "protocol": "TCP"}],
        "endpoints": [{"addresses": [LOOPBACK], "conditions": {"ready": True}}],
    }


@pytest.fixture
async def replica() -> AsyncIterator[int]:
    async def answer(request: web.Request) -> web.Response:
        await request.read()
        return web.json_response({"object": "chat.completion"})

    app = web.Application()
    app.router.add_post("/v1/chat/completions", answer)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    await web.TCPSite(runner, LOOPBACK, 0).start()
    yield runner.addresses[0][1]
    await runner.cleanup()


@pytest.fixture
async def api(replica: int) -> AsyncIterator[FakeApi]:
    server = FakeApi(
        [with_port(chute("team", name), port) for name, port in PORTS.items()],
        slices=[ready_slice("team", "awake", replica)],
    )
    await server.start()
    yield server
    await server.stop()


@pytest.fixture
def activator_process(api: FakeApi, tmp_path: Path) -> Iterator[tuple[subprocess.Popen[bytes], str, str]]:
    with running_activator(api, tmp_path, "--drain-seconds", str(DRAIN_SECONDS)) as running:
        yield running


async def test_after_sigterm_it_keeps_listening_unready_forwarding_and_holding_then_exits(
    activator_process: tuple[subprocess.Popen[bytes], str, str],
) -> None:
    process, host, metrics = activator_process

    async def post(chute_name: str) -> tuple[int, str | None, bytes]:
        # a new connection for every request: as kube-proxy sends new connections to the pod
        async with (
            aiohttp.ClientSession(connector=aiohttp.TCPConnector(force_close=True)) as fresh,
            fresh.post(f"http://{host}:{PORTS[chute_name]}/v1/chat/completions", json=CHAT) as response,
        ):
            return response.status, response.headers.get("Retry-After"), await response.read()

    async with aiohttp.ClientSession() as session:
        await until_ready(session, metrics)
        assert (await post("awake"))[0] == 200
        held_before = asyncio.create_task(post("idle"))
        for _ in range(200):  # bounded: 20 s
            if await metric(session, metrics, "chute_activator_queue_length") == 1:
                break
            await asyncio.sleep(0.1)
        process.send_signal(signal.SIGTERM)
        readiness = []
        for _ in range(50):  # bounded: 5 s; the signal is handled
            async with session.get(f"http://{metrics}/readyz") as response:
                readiness.append(response.status)
            if readiness[-1] == 503:
                break
            await asyncio.sleep(0.1)
        assert readiness[-1] == 503  # unready: the operator takes it out of the slices
        answers = [await post("awake") for _ in range(3)]  # new connections, still accepted
        assert [status for status, _, _ in answers] == [200] * 3
        held_during = asyncio.create_task(post("idle"))  # still held, not refused
        await asyncio.sleep(0.3)
        assert not held_before.done()
        assert not held_during.done()
        assert process.poll() is None  # still draining

        held = await asyncio.wait_for(asyncio.gather(held_before, held_during), DRAIN_SECONDS + 10)
    assert [(status, retry_after) for status, retry_after, _ in held] == [(503, "7")] * 2
    assert all(b"ActivatorStopping" in body for _, _, body in held)
    assert process.wait(20) == 0


def test_the_drain_is_a_flag_with_an_environment_fallback_longer_than_the_operators_check() -> None:
    default = parse_config([], environ={})
    assert default.drain_seconds == 15.0 > 5.0  # the operator re-reads the activator's endpoints every 5 s
    assert default.shutdown_timeout_seconds == 30.0
    assert parse_config(["--drain-seconds", "2"], environ={}).drain_seconds == 2.0
    assert parse_config([], environ={"CHUTE_ACTIVATOR_DRAIN_SECONDS": "4"}).drain_seconds == 4.0
