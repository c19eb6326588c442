"""Fixtures shared by the integration and e2e tests: a real local control plane and fresh namespaces.

``control_plane`` (session) starts etcd, kube-apiserver, controller-manager, scheduler and kwok with
simulated GPU nodes once, the first time a test asks for it; unit tests start nothing. Missing
binaries are built before the first such test runs (minutes, once). When the control plane cannot
be had, its tests are skipped, or fail with the reason and the logs when ``CI=true``.
"""

from __future__ import annotations

import os
import re
import secrets
import time
from collections.abc import Iterator
from typing import NoReturn

import pytest

from chute_operator.devcluster.binaries import BuildError, ensure_binaries, toolset
from chute_operator.devcluster.controlplane import ControlPlane, ControlPlaneError

CONTROL_PLANE_FIXTURE = "control_plane"
_build_error: str | None = None


def _in_ci() -> bool:
    return os.environ.get("CI", "").lower() == "true"


def _unavailable(reason: str) -> NoReturn:
    """Fail loudly in CI, skip elsewhere."""
    if _in_ci():
        pytest.fail(f"local control plane unavailable (CI=true, so this fails): {reason}", pytrace=False)
    pytest.skip(f"local control plane unavailable: {reason}")


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """Tests that use the control plane but carry no marker count as integration tests."""
    for item in items:
        if CONTROL_PLANE_FIXTURE in getattr(item, "fixturenames", ()) and not (
            item.get_closest_marker("integration") or item.get_closest_marker("e2e")
        ):
            item.add_marker(pytest.mark.integration)


def pytest_collection_finish(session: pytest.Session) -> None:
    """Build missing binaries before any test runs, so no test timeout covers the long first build."""
    global _build_error
    needed = any(CONTROL_PLANE_FIXTURE in getattr(item, "fixturenames", ()) for item in session.items)
    tools = toolset()
    if not needed or all(path.exists() for path in vars(tools).values()):
        return
    capture = session.config.pluginmanager.getplugin("capturemanager")
    try:
        if capture is not None:
            with capture.global_and_fixture_disabled():
                print("\n[control plane] building the pinned binaries once (about 12 minutes)...", flush=True)
                ensure_binaries()
        else:
            ensure_binaries()
    except (BuildError, OSError) as error:
        _build_error = f"building the binaries failed: {error}"


@pytest.fixture(scope="session")
def control_plane(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ControlPlane]:
    """A running control plane: ``.kubeconfig``, ``.server``, ``.tools``, ``.kubectl(*args)``, ``.api``."""
    if _build_error:
        _unavailable(_build_error)
    try:
        tools = ensure_binaries()
    except (BuildError, OSError) as error:
        _unavailable(f"building the binaries failed: {error}")
    work_dir = tmp_path_factory.mktemp("control-plane")
    plane = ControlPlane(work_dir=work_dir, tools=tools)
    try:
        plane.start()
    except (ControlPlaneError, OSError) as error:
        plane.stop()
        _unavailable(f"{error}\n(logs in {work_dir / 'logs'})")
    print(f"\n[control plane] ready in {plane.startup_seconds:.1f}s at {plane.server}; logs: {plane.log_dir}")
    try:
        yield plane
    finally:
        plane.stop()


def _namespace_name(test_name: str) -> str:
    stem = re.sub(r"[^a-z0-9]+", "-", test_name.lower()).strip("-")[:40].strip("-")
    return f"t-{stem}-{secrets.token_hex(3)}"


@pytest.fixture
def namespace(control_plane: ControlPlane, request: pytest.FixtureRequest) -> Iterator[str]:
    """A fresh namespace for one test (its ``default`` ServiceAccount exists); deleted afterwards."""
    name = _namespace_name(request.node.name)
    control_plane.kubectl("create", "namespace", name)
    control_plane.kubectl("label", "namespace", name, "chutes.ai/test=true")
    deadline = time.monotonic() + 60
    while True:
        found = control_plane.kubectl(
            "get", "serviceaccount", "default", "-n", name, "-o", "name", check=False
        )
        if found.returncode == 0:
            break
        if time.monotonic() > deadline:
            pytest.fail(f"namespace {name}: no default ServiceAccount after 60s", pytrace=False)
        time.sleep(0.2)
    try:
        yield name
    finally:
        control_plane.kubectl("delete", "namespace", name, "--wait=false", "--ignore-not-found", check=False)
