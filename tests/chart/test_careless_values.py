"""Chart values a careless user (or a crafted values file) gives, rendered with the real helm (found
by the breaking pass of issue 26)."""

from __future__ import annotations

import collections
from pathlib import Path

import pytest
import yaml

from tests.chart.helm import CHART, Helm, find

LONG_RELEASE = "gpu-pool-production-eu-west-inference-platform-a"
"""48 characters: Helm takes release names up to 53."""


def test_a_long_release_name_renders_unique_valid_names(helm: Helm) -> None:
    assert len(LONG_RELEASE) <= 53
    objects = helm.template(release=LONG_RELEASE, namespace="ops", sets=("metricsApi.enabled=true",))
    names = collections.Counter(
        (o["kind"], o["metadata"].get("namespace"), o["metadata"]["name"]) for o in objects
    )
    assert [key for key, count in names.items() if count > 1] == []
    assert [s["metadata"]["name"] for s in find(objects, "Service") if len(s["metadata"]["name"]) > 63] == []


def test_cabundle_cannot_add_fields_to_the_apiservice(helm: Helm, tmp_path: Path) -> None:
    values = tmp_path / "values.yaml"
    values.write_text(
        yaml.safe_dump(
            {
                "metricsApi": {
                    "tls": {"existingSecret": "mine", "caBundle": '""\n  insecureSkipTLSVerify: true'}
                }
            }
        )
    )
    result = helm.run("template", "co", str(CHART), "-n", "ops", "-f", str(values), check=False)
    if result.returncode != 0:
        return  # refused: fine
    objects = [o for o in yaml.safe_load_all(result.stdout) if o]
    (api_service,) = find(objects, "APIService")
    assert "insecureSkipTLSVerify" not in api_service["spec"]


@pytest.mark.parametrize("ports", ["30000-20000", "60000-99999"])
def test_an_impossible_activator_port_range_is_refused_by_helm(helm: Helm, ports: str) -> None:
    helm.template_error(f"activator.chutePorts={ports}")
