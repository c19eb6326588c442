"""Fixtures for tests that need the Chute CRD or a running operator on the local control plane."""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any, Self

import pytest
from prometheus_client.parser import text_string_to_metric_families

from chute_devcluster.processes import free_port

ROOT = Path(__file__).resolve().parents[1]
sidecar_image = "chute-operator:test"
"""The sidecar image every operator of the session renders: the project image when the session's
control plane runs the real node (pods there really run it), a placeholder on simulated nodes."""


def _free_port() -> int:
    """A port for a server of the tests: free on every address, outside the ephemeral range."""
    return free_port()


@pytest.fixture(scope="session")
def chute_crd(control_plane: Any) -> Path:
    """The checked-in Chute CRD, installed and established."""
    crd = ROOT / "crds" / "chute.yaml"
    control_plane.kubectl("apply", "--server-side", "-f", str(crd))
    control_plane.kubectl("wait", "--for=condition=Established", "--timeout=60s", "crd/chutes.chutes.ai")
    return crd


class OperatorProcess:
    """``chute-operator run`` as a real subprocess against the local control plane."""

    def __init__(
        self, kubeconfig: Path, log_dir: Path, identity: str, namespaces: tuple[str, ...] = (), **env: str
    ) -> None:
        self.kubeconfig, self.identity, self.namespaces = kubeconfig, identity, namespaces
        self.log_path = log_dir / f"operator-{identity}.log"
        self.extra_env = env
        self.process: subprocess.Popen[bytes] | None = None
        self.metrics_port = self.health_port = 0

    def command(self) -> list[str]:
        """How the operator is started."""
        scope = [f"--namespace={ns}" for ns in self.namespaces] or ["--all-namespaces"]
        return [sys.executable, "-m", "chute_operator", "run", *scope]

    def environment(self) -> dict[str, str]:
        """The operator's environment (the ports are added by :meth:`start`)."""
        return {
            **os.environ,
            "KUBECONFIG": str(self.kubeconfig),
            "CHUTE_OPERATOR_IDENTITY": self.identity,
            "CHUTE_OPERATOR_LEASE_NAMESPACE": "default",
            "CHUTE_OPERATOR_LEASE_DURATION_SECONDS": "6",
            "CHUTE_OPERATOR_LEASE_RENEW_SECONDS": "1",
            "CHUTE_OPERATOR_MONITORING_RECHECK_SECONDS": "2",
            "CHUTE_OPERATOR_SIDECAR_IMAGE": sidecar_image,
            "CHUTE_OPERATOR_LOG_FORMAT": "text",
            **self.extra_env,
        }

    def start(self) -> Self:
        """Start it and wait until its liveness endpoint answers."""
        self.metrics_port, self.health_port = _free_port(), _free_port()
        env = {
            **self.environment(),
            "CHUTE_OPERATOR_METRICS_PORT": str(self.metrics_port),
            "CHUTE_OPERATOR_HEALTH_PORT": str(self.health_port),
        }
        log = self.log_path.open("ab")
        self.process = subprocess.Popen(self.command(), env=env, stdout=log, stderr=subprocess.STDOUT)
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"operator exited {self.process.returncode}:\n{self.log_tail()}")
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{self.health_port}/healthz", timeout=2):
                    return self
            except OSError:
                time.sleep(0.3)
        self.process.kill()
        raise RuntimeError(f"operator not healthy within 60s:\n{self.log_tail()}")

    def stop(self) -> None:
        if self.process and self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(30)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()

    def metric(self, name: str, **labels: str) -> float:
        """Sum of the samples of ``name`` whose labels include ``labels``."""
        try:
            url = f"http://127.0.0.1:{self.metrics_port}/metrics"
            with urllib.request.urlopen(url, timeout=5) as response:
                text = response.read().decode()
        except OSError as error:  # the operator is gone: say why, from its log
            code = self.process.poll() if self.process else None
            why = f"operator metrics unreachable ({error}; exit {code})"
            raise AssertionError(f"{why}:\n{self.log_tail()}") from error
        total = 0.0
        for family in text_string_to_metric_families(text):
            for sample in family.samples:
                if sample.name == name and all(sample.labels.get(k) == v for k, v in labels.items()):
                    total += sample.value
        return total

    def log_tail(self, lines: int = 40) -> str:
        return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])


@pytest.fixture(scope="session")
def operator(
    control_plane: Any, chute_crd: Path, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[OperatorProcess]:
    """One operator for the session (the leader)."""
    process = OperatorProcess(
        control_plane.kubeconfig, tmp_path_factory.mktemp("operator"), "op-main"
    ).start()
    session_operators.append(process)
    yield process
    session_operators.remove(process)
    process.stop()


session_operators: list[OperatorProcess] = []
"""The session's operators that tests started (one per test directory whose conftest has the fixture)."""


@contextlib.contextmanager
def session_operators_stopped() -> Iterator[None]:
    """The running session operators stopped, and started again after; none is started."""
    paused = [p for p in session_operators if p.process is not None and p.process.poll() is None]
    for process in paused:
        process.stop()
    try:
        yield
    finally:
        for process in paused:
            process.start()


@pytest.fixture
def session_operator_paused() -> Iterator[None]:
    """For a test that runs an operator of its own with an activator: a session operator watches every
    namespace but knows no activator, so it would delete the activator's EndpointSlice that the
    test's operator keeps, and each would undo the other. Those running are stopped for the test and
    started again after; none is started."""
    with session_operators_stopped():
        yield


@pytest.fixture(scope="module")
def session_operator_paused_for_module() -> Iterator[None]:
    """:func:`session_operator_paused` for every test of a module (an operator of theirs that they
    share, such as the chart's in pods)."""
    with session_operators_stopped():
        yield
