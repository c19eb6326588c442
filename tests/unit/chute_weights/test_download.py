"""The downloader (the real huggingface_hub client) against the test hub on loopback."""

from __future__ import annotations

import io
import json
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from chute_shared import weights
from chute_weights.download import download
from chute_weights.failure import classify
from tests.hub import serving
from tests.hub_models import GATED_TOKEN, REVISION, REVISION_2, model_hub, revision_of

SAFE_ENV = {"HF_HUB_DISABLE_TELEMETRY": "1", "HF_HUB_DISABLE_PROGRESS_BARS": "1"}


@pytest.fixture(scope="module")
def hub_endpoint(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[str, object]]:
    hub = model_hub(tmp_path_factory.mktemp("hub"), mib=4)
    with serving(hub) as endpoint:
        yield endpoint, hub


@pytest.fixture
def endpoint(hub_endpoint: tuple[str, object], monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> str:
    url = hub_endpoint[0]
    monkeypatch.setenv("HF_ENDPOINT", url)
    monkeypatch.setenv("HF_HOME", str(tmp_path / "hf-home"))
    for key, value in SAFE_ENV.items():
        monkeypatch.setenv(key, value)
    monkeypatch.setattr("huggingface_hub.constants.ENDPOINT", url)
    monkeypatch.setattr(
        "huggingface_hub.constants.HUGGINGFACE_CO_URL_TEMPLATE",
        url + "/{repo_id}/resolve/{revision}/{filename}",
    )
    return url


def _run(
    endpoint: str, cache: Path, repo: str, revision: str, token: str | None = None
) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, **SAFE_ENV, "HF_ENDPOINT": endpoint, "HF_HOME": str(cache.parent / "home")}
    env.pop("HF_TOKEN", None)
    if token:
        env["HF_TOKEN"] = token
    log = cache.parent / "termination-log"
    command = [sys.executable, "-m", "chute_weights", "download", "--repo", repo, "--revision", revision]
    command += ["--cache", str(cache), "--termination-log", str(log), "--progress-seconds", "0.2"]
    return subprocess.run(command, env=env, capture_output=True, text=True, timeout=120, check=False)


def _termination(cache: Path) -> dict[str, str]:
    found: dict[str, str] = json.loads((cache.parent / "termination-log").read_text())
    return found


def test_the_revision_lands_in_the_hub_cache_layout_with_progress(endpoint: str, tmp_path: Path) -> None:
    out = io.StringIO()
    snapshot = download("test-org/tiny", REVISION, tmp_path / "hub", None, out, interval=0.05)
    assert snapshot == tmp_path / "hub" / "models--test-org--tiny" / "snapshots" / REVISION
    names = sorted(p.name for p in snapshot.iterdir())
    assert names == ["config.json", "model-00001-of-00002.safetensors", "model-00002-of-00002.safetensors"]
    lines = [json.loads(line) for line in out.getvalue().splitlines()]
    total = lines[-1][weights.PROGRESS_TOTAL]
    assert total > 4 * (1 << 20)
    assert lines[-1][weights.PROGRESS_DONE] == total
    assert lines[0][weights.PROGRESS_DONE] == 0


def test_the_command_downloads_and_exits_zero(hub_endpoint: tuple[str, object], tmp_path: Path) -> None:
    done = _run(hub_endpoint[0], tmp_path / "hub", "test-org/tiny", REVISION_2)
    assert done.returncode == 0, done.stderr
    assert (tmp_path / "hub" / "models--test-org--tiny" / "snapshots" / REVISION_2 / "config.json").is_file()


@pytest.mark.parametrize(
    ("repo", "revision", "token", "reason"),
    [
        ("test-org/absent", REVISION, None, weights.REPOSITORY_NOT_FOUND),
        ("test-org/tiny", revision_of("never published"), None, weights.REVISION_NOT_FOUND),
        ("test-org/tiny-gated", REVISION, None, weights.GATED_REPO),
        ("test-org/tiny-gated", REVISION, "hf_wrong", weights.UNAUTHORIZED),
    ],
)
def test_a_hub_refusal_is_a_permanent_failure_with_its_reason(
    hub_endpoint: tuple[str, object], tmp_path: Path, repo: str, revision: str, token: str | None, reason: str
) -> None:
    done = _run(hub_endpoint[0], tmp_path / "hub", repo, revision, token)
    assert done.returncode == weights.EXIT_PERMANENT, done.stderr
    assert _termination(tmp_path / "hub")["reason"] == reason


def test_the_gated_copy_downloads_with_its_token(hub_endpoint: tuple[str, object], tmp_path: Path) -> None:
    done = _run(hub_endpoint[0], tmp_path / "hub", "test-org/tiny-gated", REVISION, GATED_TOKEN)
    assert done.returncode == 0, done.stderr


def test_an_unreachable_hub_is_transient() -> None:
    """(The client retries a refused connection for about 24 s before it raises: not run here.)"""
    found = classify(ConnectionRefusedError(111, "Connection refused"))
    assert (found.reason, found.permanent) == (weights.DOWNLOAD_FAILED, False)


def test_a_full_disk_is_reported_as_such() -> None:
    error = OSError(28, "No space left on device")
    try:
        raise RuntimeError("writing a blob") from error
    except RuntimeError as wrapped:
        found = classify(wrapped)
    assert (found.reason, found.permanent) == (weights.DISK_FULL, True)
