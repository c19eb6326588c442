"""Fixtures for the chart's tests: the helm binary, and (on the local control plane) the CRDs."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from chute_devcluster.binaries import ensure_binaries, toolset
from tests.chart.helm import Helm
from tests.operator_fixtures import chute_crd

__all__ = ["chute_crd", "helm", "monitoring_crds"]

ROOT = Path(__file__).resolve().parents[2]
MONITORING_CRDS = {
    "servicemonitors.monitoring.coreos.com": ROOT / "tests" / "fixtures" / "servicemonitor-crd.yaml",
    "prometheusrules.monitoring.coreos.com": ROOT / "tests" / "fixtures" / "prometheusrule-crd.yaml",
}


@pytest.fixture(scope="session")
def helm(tmp_path_factory: pytest.TempPathFactory) -> Helm:
    """The pinned helm (built with the control plane's binaries; cached), with its own home."""
    binary = toolset().helm
    if not binary.exists():
        binary = ensure_binaries().helm
    return Helm(binary, tmp_path_factory.mktemp("helm-home"))


@pytest.fixture(scope="module")
def monitoring_crds(control_plane: Any) -> Iterator[None]:
    """Reduced ServiceMonitor and PrometheusRule CRDs, removed again afterwards if we added them.

    Other tests (tests/e2e) check how the operator behaves while the ServiceMonitor API is
    missing, so whatever this fixture installs it also takes away.
    """
    added = []
    for name, path in MONITORING_CRDS.items():
        present = control_plane.kubectl("get", "crd", name, "--ignore-not-found", "-o", "name").stdout.strip()
        if not present:
            control_plane.kubectl("apply", "--server-side", "-f", str(path))
            added.append(name)
    for name in MONITORING_CRDS:
        control_plane.kubectl("wait", "--for=condition=Established", "--timeout=60s", f"crd/{name}")
    yield
    for name in added:
        control_plane.kubectl("delete", "crd", name, "--wait=true", "--timeout=120s", check=False)
