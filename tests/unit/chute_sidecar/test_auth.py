"""API keys: both headers accepted, anything else 401, keys re-read when the file changes."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

import chute_sidecar.auth
from chute_sidecar.auth import ApiKeys

from .conftest import Running, StartSidecar, Stub, eventually


@pytest.fixture
def fast_recheck(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(chute_sidecar.auth, "RECHECK_SECONDS", 0.05)


async def _code(running: Running, headers: dict[str, str]) -> int:
    async with running.session.get(running.url("/echo"), headers=headers) as response:
        return response.status


async def test_keys_accepted_in_both_headers(start_sidecar: StartSidecar, tmp_path: Path) -> None:
    keys = tmp_path / "api-key"
    keys.write_text("# comment\nfirst-key\n\n  second-key  \n")
    running = await start_sidecar(api_key_file=str(keys))
    assert await _code(running, {"Authorization": "Bearer first-key"}) == 200
    assert await _code(running, {"Authorization": "bearer second-key"}) == 200
    assert await _code(running, {"X-API-Key": "second-key"}) == 200


async def test_wrong_or_missing_keys_refused(start_sidecar: StartSidecar, stub: Stub, tmp_path: Path) -> None:
    keys = tmp_path / "api-key"
    keys.write_text("the-key\n")
    running = await start_sidecar(api_key_file=str(keys))
    for headers in (
        {},
        {"Authorization": "Bearer wrong"},
        {"Authorization": "Basic the-key"},
        {"Authorization": "Bearer the-ke"},
        {"X-API-Key": "the-key-and-more"},
        {"Authorization": "Bearer # comment"},
    ):
        async with running.session.get(running.url("/echo"), headers=headers) as response:
            assert response.status == 401, headers
            assert response.headers["WWW-Authenticate"] == "Bearer"
    assert stub.seen == []
    text = await running.metrics_text()
    assert 'chute_requests_rejected_total{reason="auth"} 6.0' in text
    # probes and stats are never behind auth
    assert await running.status("/livez") == 200
    async with running.session.get(running.url("/_conn_stats")) as response:
        assert response.status == 200


async def test_rotation_by_rewriting_the_file(
    start_sidecar: StartSidecar, tmp_path: Path, fast_recheck: None
) -> None:
    keys = tmp_path / "api-key"
    keys.write_text("old\n")
    running = await start_sidecar(api_key_file=str(keys))
    assert await _code(running, {"X-API-Key": "old"}) == 200
    assert await _code(running, {"X-API-Key": "new"}) == 401

    keys.write_text("old\nnew\n")  # overlap while clients move to the new key

    async def new_accepted() -> bool:
        return await _code(running, {"X-API-Key": "new"}) == 200

    await eventually(new_accepted)
    assert await _code(running, {"X-API-Key": "old"}) == 200

    keys.write_text("new\n")

    async def old_refused() -> bool:
        return await _code(running, {"X-API-Key": "old"}) == 401

    await eventually(old_refused)
    assert await _code(running, {"X-API-Key": "new"}) == 200


async def test_rotation_like_a_kubernetes_secret_volume(
    start_sidecar: StartSidecar, tmp_path: Path, fast_recheck: None
) -> None:
    """The kubelet writes a new timestamped dir and swaps the ``..data`` symlink atomically."""
    first = tmp_path / "..2026_01_01_00_00_00.000000001"
    first.mkdir()
    (first / "api-key").write_text("v1\n")
    (tmp_path / "..data").symlink_to(first.name)
    (tmp_path / "api-key").symlink_to("..data/api-key")
    running = await start_sidecar(api_key_file=str(tmp_path / "api-key"))
    assert await _code(running, {"Authorization": "Bearer v1"}) == 200

    second = tmp_path / "..2026_01_01_00_00_10.000000002"
    second.mkdir()
    (second / "api-key").write_text("v2\n")
    (tmp_path / "..data_tmp").symlink_to(second.name)
    os.replace(tmp_path / "..data_tmp", tmp_path / "..data")

    async def swapped() -> bool:
        return await _code(running, {"Authorization": "Bearer v2"}) == 200

    await eventually(swapped)
    assert await _code(running, {"Authorization": "Bearer v1"}) == 401


def test_missing_file_refuses_everything_then_recovers(tmp_path: Path) -> None:
    path = tmp_path / "api-key"
    keys = ApiKeys(str(path))
    assert keys.count == 0
    assert not keys.allows({"X-API-Key": "k"})
    path.write_text("k\n")
    keys.refresh()
    assert keys.allows({"X-API-Key": "k"})
    path.unlink()
    keys.refresh()  # a vanished file keeps the keys last read
    assert keys.allows({"X-API-Key": "k"})
