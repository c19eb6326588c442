"""Crash, hang and memory switches, in-process (a crash is recorded instead of exiting the tests)."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest

from chute_modelsim.faults import MIB, rss_bytes

from .conftest import Model, StartModel, eventually

CHAT = {"messages": [{"role": "user", "content": "hi"}], "max_tokens": 2}


async def test_crash_after_requests_answers_the_last_one_first(start_model: StartModel) -> None:
    model = await start_model(crash_after_requests=2, crash_exit_code=3)
    assert (await model.post("/v1/chat/completions", CHAT))[0] == 200
    assert model.exits == []
    status, body = await model.post("/v1/chat/completions", CHAT)
    assert status == 200
    assert body["usage"]["completion_tokens"] == 2

    async def exited() -> bool:
        return model.exits == [3]

    await eventually(exited)


async def test_crash_after_seconds_zero_crashes_once_loaded(start_model: StartModel) -> None:
    model = await start_model(crash_after_seconds=0.0)

    async def exited() -> bool:
        return model.exits == [1]

    await eventually(exited)


async def test_admin_crash_now_and_after_requests(start_model: StartModel) -> None:
    model = await start_model()
    await model.admin_post("/admin/crash?after_requests=1&exit_code=9")
    await model.post("/v1/completions", {"prompt": "x"})

    async def exited() -> bool:
        return model.exits == [9]

    await eventually(exited)
    other = await start_model()
    state = await other.admin_post("/admin/crash")

    async def other_exited() -> bool:
        return other.exits == [1]

    await eventually(other_exited)
    assert state["loaded"] is True


async def test_hang_stops_answers_and_health_until_released(model: Model) -> None:
    await model.admin_post("/admin/hang")
    chat = asyncio.ensure_future(model.post("/v1/chat/completions", CHAT))

    async def health_status() -> int:
        async with model.session.get(model.url("/health")) as response:
            return response.status

    health = asyncio.ensure_future(health_status())
    done, _ = await asyncio.wait({chat, health}, timeout=0.3)
    assert not done, "a hung model answers nothing"
    assert (await model.state())["hung"] is True, "the admin port still answers"
    async with model.session.delete(model.admin("/admin/hang")) as response:
        assert response.status == 200
    assert (await chat)[0] == 200
    assert await health == 200


async def test_hang_in_the_middle_of_a_stream(start_model: StartModel) -> None:
    model = await start_model(tokens_per_second=50.0)
    body = {**CHAT, "max_tokens": 50, "stream": True}
    async with model.session.post(model.url("/v1/chat/completions"), json=body) as response:
        await response.content.readuntil(b"\n\n")
        await model.admin_post("/admin/hang")
        rest = asyncio.ensure_future(response.read())
        done, _ = await asyncio.wait({rest}, timeout=1.5)  # 50 tokens at 50/s would be done in 1 s
        assert not done
        async with model.session.delete(model.admin("/admin/hang")):
            pass
        assert (await rest).endswith(b"data: [DONE]\n\n")


async def test_hang_after_requests_flag(start_model: StartModel) -> None:
    model = await start_model(hang_after_requests=1)
    assert (await model.post("/v1/completions", {"prompt": "x"}))[0] == 200
    assert (await model.state())["hung"] is True


async def test_allocate_grows_rss_and_free_releases(model: Model) -> None:
    before = rss_bytes()
    state = await model.admin_post("/admin/allocate?mb=50")
    assert state["allocated_mb"] == 50
    assert state["rss_bytes"] - before >= 45 * MIB, "the pages were written, so they are resident"
    async with model.session.delete(model.admin("/admin/allocate")) as response:
        assert (await response.json())["allocated_mb"] == 0


async def test_grow_until_the_guard(start_model: StartModel) -> None:
    model = await start_model(grow_mb_per_second=200.0, allocate_limit_mb=30)

    async def at_guard() -> bool:
        return (await model.state())["allocated_mb"] == 30

    await eventually(at_guard)
    await asyncio.sleep(0.3)
    assert (await model.state())["allocated_mb"] == 30


async def test_allocate_mb_flag(start_model: StartModel) -> None:
    model = await start_model(allocate_mb=20)

    async def allocated() -> bool:
        return (await model.state())["allocated_mb"] == 20

    await eventually(allocated)


async def test_fault_once_file_fires_once_per_volume(start_model: StartModel, tmp_path: Path) -> None:
    marker = tmp_path / "volume" / "modelsim-faults-fired"
    first = await start_model(crash_after_requests=1, fault_once_file=str(marker))
    await first.post("/v1/completions", {"prompt": "x"})

    async def exited() -> bool:
        return first.exits == [1]

    await eventually(exited)
    assert marker.exists()
    restarted = await start_model(crash_after_requests=1, fault_once_file=str(marker))
    for _ in range(3):
        assert (await restarted.post("/v1/completions", {"prompt": "x"}))[0] == 200
    await asyncio.sleep(0.1)
    assert restarted.exits == []
    assert (await restarted.state())["crash_after_requests"] is None


async def test_unwritable_fault_once_file_disarms_with_an_error(
    start_model: StartModel, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """Firing without the marker would crash at every restart: the switches stay off, and it is logged."""
    blocker = tmp_path / "not-a-directory"
    blocker.write_text("")
    model = await start_model(crash_after_requests=1, fault_once_file=str(blocker / "marker"))

    async def logged() -> bool:
        return "fault switches off: cannot create" in caplog.text

    await eventually(logged)
    for _ in range(2):
        assert (await model.post("/v1/completions", {"prompt": "x"}))[0] == 200
    await asyncio.sleep(0.1)
    assert model.exits == []
