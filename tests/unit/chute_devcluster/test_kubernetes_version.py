"""Which Kubernetes the local cluster is built from and runs: the default, or the one asked for."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from chute_devcluster.binaries import (
    DEFAULT_KUBERNETES_VERSION,
    KUBERNETES_VERSION_VARIABLE,
    OLDEST_KUBERNETES_VERSION,
    kubernetes_version,
)


def test_the_default_unless_a_release_tag_is_asked_for() -> None:
    assert kubernetes_version({}) == DEFAULT_KUBERNETES_VERSION
    assert kubernetes_version({KUBERNETES_VERSION_VARIABLE: " "}) == DEFAULT_KUBERNETES_VERSION
    asked = {KUBERNETES_VERSION_VARIABLE: OLDEST_KUBERNETES_VERSION}
    assert kubernetes_version(asked) == OLDEST_KUBERNETES_VERSION


@pytest.mark.parametrize("value", ["1.34.4", "v1.34", "v1.34.4; rm -rf /", "latest"])
def test_anything_but_a_release_tag_is_refused_naming_the_variable(value: str) -> None:
    with pytest.raises(ValueError, match=KUBERNETES_VERSION_VARIABLE):
        kubernetes_version({KUBERNETES_VERSION_VARIABLE: value})


def test_the_oldest_tested_version_is_the_charts_kube_version() -> None:
    chart = Path(__file__).resolve().parents[3] / "charts" / "chute-operator" / "Chart.yaml"
    minor = OLDEST_KUBERNETES_VERSION.split(".")[1]
    assert yaml.safe_load(chart.read_text())["kubeVersion"] == f">=1.{minor}.0-0"
