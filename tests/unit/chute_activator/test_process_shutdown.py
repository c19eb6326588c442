"""A real activator process sent SIGTERM while it holds requests: each client gets 503 + Retry-After
(at the end of its drain, test_process_drain.py)."""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import subprocess
import sys
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import aiohttp
import pytest

from chute_devcluster.processes import free_loopback, free_port

from .fake_api import FakeApi, chute

HELD = 5
CHAT = {"model": "m", "messages": [{"role": "user", "content": "hi"}]}
CHUTE_PORTS = (20000, 20003)
"""The activator processes' ports per Chute, on a loopback address of their own (``free_loopback``)."""


def with_port(obj: dict[str, object], port: int) -> dict[str, object]:
    """The Chute with the activator port the operator gave it (``status.activatorPort``)."""
    return {**obj, "status": {"activatorPort": port}}


@pytest.fixture
async def api() -> AsyncIterator[FakeApi]:
    server = FakeApi([with_port(chute("team", "llm"), CHUTE_PORTS[0])])
    await server.start()
    yield server
    await server.stop()


@contextlib.contextmanager
def running_activator(
    api: FakeApi, tmp_path: Path, *flags: str
) -> Iterator[tuple[subprocess.Popen[bytes], str, str]]:
    """The real activator process against ``api`` (namespace ``team``, Retry-After 7) on a loopback
    address of its own (serving :data:`CHUTE_PORTS` and metrics there), with ``flags`` added;
    killed at the end if it is still running. Yields the process, its address and its metrics
    ``host:port``."""
    kubeconfig = tmp_path / "kubeconfig"
    kubeconfig.write_text(api.kubeconfig())
    host, metrics_port = free_loopback(CHUTE_PORTS), free_port()
    process = subprocess.Popen(
        [
            *(sys.executable, "-m", "chute_activator", "--host", host),
            *("--chute-ports", "{}-{}".format(*CHUTE_PORTS)),
            *("--metrics-port", str(metrics_port), "--kubeconfig", str(kubeconfig), "-n", "team"),
            *("--default-retry-after", "7", *flags),
        ],
        env={**os.environ, "PYTHONUNBUFFERED": "1"},
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        yield process, host, f"{host}:{metrics_port}"
    finally:
        if process.poll() is None:
            process.kill()
        process.wait(10)


@pytest.fixture
def activator_process(api: FakeApi, tmp_path: Path) -> Iterator[tuple[subprocess.Popen[bytes], str, str]]:
    with running_activator(api, tmp_path, "--drain-seconds", "1") as running:  # held through a short drain
        yield running


async def metric(session: aiohttp.ClientSession, metrics: str, name: str) -> float:
    async with session.get(f"http://{metrics}/metrics") as response:
        for line in (await response.text()).splitlines():
            if line.startswith(name + "{") or line.startswith(name + " "):
                return float(line.rsplit(" ", 1)[1])
    return 0.0


async def until_ready(session: aiohttp.ClientSession, metrics: str) -> None:
    for _ in range(600):  # bounded: 60 s (a process's start on a machine at load 26 took over 20 s)
        try:
            async with session.get(f"http://{metrics}/readyz") as response:
                if response.status == 200:
                    return
        except aiohttp.ClientConnectionError:
            pass
        await asyncio.sleep(0.1)
    raise AssertionError("the activator process never became ready")


async def test_sigterm_answers_every_held_request_503_with_retry_after_and_drops_no_connection(
    activator_process: tuple[subprocess.Popen[bytes], str, str], api: FakeApi
) -> None:
    process, host, metrics = activator_process
    async with aiohttp.ClientSession() as session:
        await until_ready(session, metrics)

        async def post() -> tuple[int, str | None, bytes]:
            url = f"http://{host}:{CHUTE_PORTS[0]}/v1/chat/completions"
            async with session.post(url, json=CHAT) as response:
                return response.status, response.headers.get("Retry-After"), await response.read()

        held = [asyncio.create_task(post()) for _ in range(HELD)]
        for _ in range(600):  # bounded: 60 s (a process's start on a machine at load 26 took over 20 s)
            if await metric(session, metrics, "chute_activator_queue_length") == HELD:
                break
            await asyncio.sleep(0.1)
        assert await metric(session, metrics, "chute_activator_queue_length") == HELD
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
    api = FakeApi([with_port(chute("team", "llm"), CHUTE_PORTS[0])], failures_before_lists=10**6)
    await api.start()
    try:
        with running_activator(api, tmp_path, "--drain-seconds", "1") as (process, host, metrics):
            async with aiohttp.ClientSession() as session:
                for _ in range(100):  # bounded: 10 s, until it serves /healthz (its listing still failing)
                    with contextlib.suppress(aiohttp.ClientError):
                        async with session.get(f"http://{metrics}/healthz") as health:
                            if health.status == 200:
                                break
                    await asyncio.sleep(0.1)
                url = f"http://{host}:{CHUTE_PORTS[0]}/v1/chat/completions"
                held = asyncio.create_task(session.post(url, json=CHAT))
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
