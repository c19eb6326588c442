"""A real activator process sent SIGTERM while it holds requests: each client gets 503 + Retry-After
(at the end of its drain, test_process_drain.py)."""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import socket
import subprocess
import sys
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import aiohttp
import pytest

from .fake_api import LOOPBACK, FakeApi, chute

HELD = 5
CHAT = {"model": "m", "messages": [{"role": "user", "content": "hi"}]}


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind((LOOPBACK, 0))
        return int(probe.getsockname()[1])


@pytest.fixture
async def api() -> AsyncIterator[FakeApi]:
    server = FakeApi([chute("team", "llm")])
    await server.start()
    yield server
    await server.stop()


@contextlib.contextmanager
def running_activator(
    api: FakeApi, tmp_path: Path, *flags: str
) -> Iterator[tuple[subprocess.Popen[bytes], int, int]]:
    """The real activator process against ``api`` on loopback (namespace ``team``, Retry-After 7),
    with ``flags`` added; killed at the end if it is still running."""
    kubeconfig = tmp_path / "kubeconfig"
    kubeconfig.write_text(api.kubeconfig())
    port, metrics_port = free_port(), free_port()
    process = subprocess.Popen(
        [
            *(sys.executable, "-m", "chute_activator", "--host", LOOPBACK, "--port", str(port)),
            *("--metrics-port", str(metrics_port), "--kubeconfig", str(kubeconfig), "-n", "team"),
            *("--default-retry-after", "7", *flags),
        ],
        env={**os.environ, "PYTHONUNBUFFERED": "1"},
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        yield process, port, metrics_port
    finally:
        if process.poll() is None:
            process.kill()
        process.wait(10)


@pytest.fixture
def activator_process(api: FakeApi, tmp_path: Path) -> Iterator[tuple[subprocess.Popen[bytes], int, int]]:
    with running_activator(api, tmp_path, "--drain-seconds", "1") as running:  # held through a short drain
        yield running


async def metric(session: aiohttp.ClientSession, metrics_port: int, name: str) -> float:
    async with session.get(f"http://{LOOPBACK}:{metrics_port}/metrics") as response:
        for line in (await response.text()).splitlines():
            if line.startswith(name + "{") or line.startswith(name + " "):
                return float(line.rsplit(" ", 1)[1])
    return 0.0


async def until_ready(session: aiohttp.ClientSession, metrics_port: int) -> None:
    for _ in range(200):  # bounded: 20 s
        try:
            async with session.get(f"http://{LOOPBACK}:{metrics_port}/readyz") as response:
                if response.status == 200:
                    return
        except aiohttp.ClientConnectionError:
            pass
        await asyncio.sleep(0.1)
    raise AssertionError("the activator process never became ready")


async def test_sigterm_answers_every_held_request_503_with_retry_after_and_drops_no_connection(
    activator_process: tuple[subprocess.Popen[bytes], int, int], api: FakeApi
) -> None:
    process, port, metrics_port = activator_process
    async with aiohttp.ClientSession() as session:
        await until_ready(session, metrics_port)

        async def post() -> tuple[int, str | None, bytes]:
            url = f"http://{LOOPBACK}:{port}/v1/chat/completions"
            async with session.post(url, json=CHAT, headers={"X-Chute": "team/llm"}) as response:
                return response.status, response.headers.get("Retry-After"), await response.read()

        held = [asyncio.create_task(post()) for _ in range(HELD)]
        for _ in range(200):  # bounded: 20 s
            if await metric(session, metrics_port, "chute_activator_queue_length") == HELD:
                break
            await asyncio.sleep(0.1)
        assert await metric(session, metrics_port, "chute_activator_queue_length") == HELD
        assert api.patches  # it asked for a wake
        process.send_signal(signal.SIGTERM)
        answers = await asyncio.wait_for(asyncio.gather(*held, return_exceptions=True), 20)
    assert [a if isinstance(a, BaseException) else a[:2] for a in answers] == [(503, "7")] * HELD
    assert all(b"ActivatorStopping" in a[2] for a in answers if not isinstance(a, BaseException))
    assert process.wait(20) == 0


async def test_sigterm_before_the_first_listing_drains_and_answers_what_it_held(tmp_path: Path) -> None:
    """An API server that refuses every list keeps the activator in its first listing; a SIGTERM then
    (a rollout while the API is down) still drains: the request held meanwhile is answered 503 with
    Retry-After and the process exits 0. Before, no signal handler was installed until the listing
    had finished: the process died at once and its held request got a reset."""
    api = FakeApi([chute("team", "llm")], failures_before_lists=10**6)
    await api.start()
    try:
        with running_activator(api, tmp_path, "--drain-seconds", "1") as (process, port, metrics_port):
            async with aiohttp.ClientSession() as session:
                for _ in range(100):  # bounded: 10 s, until it serves /healthz (its listing still failing)
                    with contextlib.suppress(aiohttp.ClientError):
                        async with session.get(f"http://{LOOPBACK}:{metrics_port}/healthz") as health:
                            if health.status == 200:
                                break
                    await asyncio.sleep(0.1)
                url = f"http://{LOOPBACK}:{port}/v1/chat/completions"
                held = asyncio.create_task(session.post(url, json=CHAT, headers={"X-Chute": "team/llm"}))
                for _ in range(50):  # bounded: until the API has refused a few lists
                    if api.list_calls >= 2:
                        break
                    await asyncio.sleep(0.1)
                await asyncio.sleep(0.5)  # the request is held (nothing to answer it with yet)
                assert not held.done()
                process.send_signal(signal.SIGTERM)
                response = await asyncio.wait_for(held, 20)
                body = await response.read()
                assert (response.status, response.headers.get("Retry-After")) == (503, "7"), body
                assert b"ActivatorStopping" in body
            assert process.wait(20) == 0
    finally:
        await api.stop()
