"""``chute-operator run`` refuses to start when its health or metrics port is taken."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
import yaml

KUBECONFIG = {
    "apiVersion": "v1",
    "kind": "Config",
    "clusters": [{"name": "none", "cluster": {"server": "https://127.0.0.1:1"}}],
    "users": [{"name": "none", "user": {"token": "none"}}],
    "contexts": [{"name": "none", "context": {"cluster": "none", "user": "none"}}],
    "current-context": "none",
}


@pytest.fixture
def taken_port() -> Iterator[int]:
    """A port some other process listens on (on every address, as the operator binds)."""
    with socket.socket() as sock:
        sock.bind(("0.0.0.0", 0))
        sock.listen()
        yield int(sock.getsockname()[1])


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@pytest.mark.parametrize("setting", ["CHUTE_OPERATOR_HEALTH_PORT", "CHUTE_OPERATOR_METRICS_PORT"])
def test_a_taken_port_exits_at_once_naming_the_port_and_its_setting(
    taken_port: int, setting: str, tmp_path: Path
) -> None:
    kubeconfig = tmp_path / "kubeconfig"
    kubeconfig.write_text(yaml.safe_dump(KUBECONFIG))
    env = {
        **os.environ,
        "KUBECONFIG": str(kubeconfig),
        "CHUTE_OPERATOR_HEALTH_PORT": str(_free_port()),
        "CHUTE_OPERATOR_METRICS_PORT": str(_free_port()),
        "CHUTE_OPERATOR_LOG_FORMAT": "text",
        setting: str(taken_port),
    }
    try:
        result = subprocess.run(
            [sys.executable, "-m", "chute_operator", "run", "--all-namespaces"],
            env=env,
            capture_output=True,
            text=True,
            timeout=30,
        )
    except subprocess.TimeoutExpired as expired:
        pytest.fail(f"still running after 30s; output:\n{expired.stderr!r}")
    assert result.returncode != 0
    message = result.stderr.strip().splitlines()[-1]
    assert str(taken_port) in message, result.stderr
    assert setting in message, result.stderr


def test_kopf_gets_the_operator_identity_not_the_user_name(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    """In the image the uid (65532) has no passwd entry: kopf's own identity (getpass.getuser())
    would raise KeyError; the operator hands it its leader-election identity instead."""
    import getpass

    import kopf

    from chute_operator import run

    def no_user() -> str:
        raise KeyError("getpwuid(): uid not found: 65532")

    passed: dict[str, object] = {}
    monkeypatch.setattr(getpass, "getuser", no_user)
    monkeypatch.setattr(kopf, "run", lambda **kwargs: passed.update(kwargs))
    monkeypatch.setattr(run, "_serve_metrics", lambda settings: None)
    uvloop = pytest.importorskip("uvloop")
    monkeypatch.setattr(uvloop, "install", lambda: None)  # the test process keeps its event loop policy
    monkeypatch.setenv("CHUTE_OPERATOR_HEALTH_PORT", str(_free_port()))
    monkeypatch.setenv("CHUTE_OPERATOR_IDENTITY", "co-chute-operator-abc")
    assert run.run_operator(all_namespaces=True) == 0
    assert passed["identity"] == "co-chute-operator-abc"
