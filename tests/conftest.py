"""Fixtures shared by the integration and e2e tests: a real local control plane and fresh namespaces.

``control_plane`` (session) starts etcd, kube-apiserver, controller-manager, scheduler and kwok with
simulated GPU nodes once, the first time a test asks for it; unit tests start nothing. Missing
binaries are built before the first such test runs (minutes, once). When the control plane cannot
be had, its tests are skipped, or fail with the reason and the logs when ``CI=true``.

When a collected test is marked ``realnode``, the session control plane also runs the real node
(kubelet, containerd, kube-proxy; :mod:`chute_devcluster.realnode`), its containerd pulling the
project's images from the cluster's registry (:mod:`chute_devcluster.registry`). If the real node
cannot start (not root, a missing package, another cluster holds it for longer than
``CHUTE_OPERATOR_REAL_NODE_LOCK_TIMEOUT`` seconds), the control plane starts without it and the
``realnode`` tests are skipped, or fail when ``CI=true``.
"""

from __future__ import annotations

import contextlib
import os
import re
import secrets
import signal
import time
from collections.abc import Iterator
from pathlib import Path
from typing import NoReturn

import pytest

from chute_devcluster.binaries import BuildError, Toolset, ensure_binaries, toolset
from chute_devcluster.controlplane import ControlPlane, ControlPlaneError
from chute_devcluster.images import ImageBuildError
from chute_devcluster.realnode import RealNode, build_node_images, unavailable_reason
from chute_devcluster.realnode_config import RealNodeSettings
from tests import operator_fixtures

CONTROL_PLANE_FIXTURE = "control_plane"
REAL_NODE_MARKER = "realnode"
_build_error: str | None = None
_real_node_wanted = False
real_node_error: str | None = None
"""Why the session's control plane runs without the real node, if it does."""


def _in_ci() -> bool:
    return os.environ.get("CI", "").lower() == "true"


def _unavailable(reason: str) -> NoReturn:
    """Fail loudly in CI, skip elsewhere."""
    if _in_ci():
        pytest.fail(f"local control plane unavailable (CI=true, so this fails): {reason}", pytrace=False)
    pytest.skip(f"local control plane unavailable: {reason}")


def pytest_configure(config: pytest.Config) -> None:
    """SIGTERM stops the session like Ctrl-C, so its clusters are torn down (scripts/test sends it)."""

    def interrupt(signum: int, frame: object) -> NoReturn:
        raise KeyboardInterrupt(f"signal {signum}")

    signal.signal(signal.SIGTERM, interrupt)


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """Tests that use the control plane but carry no marker count as integration tests."""
    for item in items:
        if CONTROL_PLANE_FIXTURE in getattr(item, "fixturenames", ()) and not (
            item.get_closest_marker("integration") or item.get_closest_marker("e2e")
        ):
            item.add_marker(pytest.mark.integration)


def pytest_collection_finish(session: pytest.Session) -> None:
    """Build missing binaries before any test runs, so no test timeout covers the long first build."""
    global _build_error, _real_node_wanted
    needed = any(CONTROL_PLANE_FIXTURE in getattr(item, "fixturenames", ()) for item in session.items)
    _real_node_wanted = any(item.get_closest_marker(REAL_NODE_MARKER) for item in session.items)
    tools = toolset()
    wanted = tools.control_plane_paths() + (tools.node_paths() if _real_node_wanted else [])
    if not needed or all(path.exists() for path in wanted):
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
    plane = _start_with_real_node(work_dir, tools) if _real_node_wanted else None
    if plane is None:
        plane = ControlPlane(work_dir=work_dir, tools=tools)
        try:
            plane.start()
        except (ControlPlaneError, OSError) as error:
            plane.stop()
            _unavailable(f"{error}\n(logs in {work_dir / 'logs'})")
    if plane.real_node is not None and plane.real_node.images:
        operator_fixtures.sidecar_image = plane.real_node.images[0].ref
    real = f", real node {plane.real_node.name}" if plane.real_node else ""
    where = f"at {plane.server}{real}; logs: {plane.log_dir}"
    print(f"\n[control plane] ready in {plane.startup_seconds:.1f}s {where}")
    try:
        yield plane
    finally:
        plane.stop()


def _start_with_real_node(work_dir: Path, tools: Toolset) -> ControlPlane | None:
    """The control plane with the real node, or None (and :data:`real_node_error` says why)."""
    global real_node_error
    reason = unavailable_reason()
    if reason is None:
        try:
            images = build_node_images()
        except (ImageBuildError, OSError) as error:
            reason = f"the node's images could not be built: {error}"
    if reason is not None:
        real_node_error = reason
        return None
    plane = ControlPlane(
        work_dir=work_dir,
        tools=tools,
        real_node=RealNodeSettings.from_env(),
        real_node_images=images,
        real_node_lock_timeout=float(os.environ.get("CHUTE_OPERATOR_REAL_NODE_LOCK_TIMEOUT", "600")),
    )
    try:
        plane.start()
    except (ControlPlaneError, OSError) as error:
        plane.stop()
        real_node_error = f"{error}\n(logs in {work_dir / 'logs'})"
        return None
    return plane


@pytest.fixture(scope="session")
def real_node(control_plane: ControlPlane) -> RealNode:
    """The session control plane's real node; its tests are skipped (failed with CI=true) without one."""
    if control_plane.real_node is None:
        reason = real_node_error or "no test asked for it (mark the test realnode)"
        if _in_ci():
            pytest.fail(f"real node unavailable (CI=true, so this fails): {reason}", pytrace=False)
        pytest.skip(f"real node unavailable: {reason}")
    return control_plane.real_node


def _namespace_name(test_name: str) -> str:
    stem = re.sub(r"[^a-z0-9]+", "-", test_name.lower()).strip("-")[:40].strip("-")
    return f"t-{stem}-{secrets.token_hex(3)}"


@contextlib.contextmanager
def fresh_namespace(control_plane: ControlPlane, name: str) -> Iterator[str]:
    """Namespace ``name``, created (once its ``default`` ServiceAccount exists) and deleted afterwards."""
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


@pytest.fixture
def namespace(control_plane: ControlPlane, request: pytest.FixtureRequest) -> Iterator[str]:
    """A fresh namespace for one test (its ``default`` ServiceAccount exists); deleted afterwards."""
    with fresh_namespace(control_plane, _namespace_name(request.node.name)) as name:
        yield name
