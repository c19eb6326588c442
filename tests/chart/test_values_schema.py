"""values.schema.json: bad values fail `helm template` (and so install) with a message naming the key."""

from __future__ import annotations

import json

import pytest

from tests.chart.helm import CHART, Helm

BAD_VALUES = [
    # (--set arguments, text the error must contain)
    (("replicaCount=two",), "/replicaCount"),
    (("replicaCount=-1",), "/replicaCount"),
    (("replicas=2",), "'replicas'"),
    (("operator.logLevl=DEBUG",), "'logLevl'"),
    (("operator.logFormat=xml",), "/operator/logFormat"),
    (("operator.logLevel=verbose",), "/operator/logLevel"),
    (("operator.metricsPort=70000",), "/operator/metricsPort"),
    (("operator.workers=0",), "/operator/workers"),
    (("image.tag=v1 beta",), "/image/tag"),
    (("image.digest=sha256:abc",), "/image/digest"),
    (("image.pullPolicy=Sometimes",), "/image/pullPolicy"),
    (("image.registry=registry.example.internal",), "'registry'"),
    (("watchNamespaces={Team_A}",), "/watchNamespaces/0"),
    (("leaderElection.enabled=yes please",), "/leaderElection/enabled"),
    (("crds.install=maybe",), "/crds/install"),
    (("gpuCatalog.gpus[0].name=x", "gpuCatalog.gpus[0].vramGb=8"), "products"),
    (
        ("gpuCatalog.gpus[0].name=x", "gpuCatalog.gpus[0].vramGb=big", "gpuCatalog.gpus[0].products={X}"),
        "vramGb",
    ),
    (("prometheusRule.throttledRatio=5",), "/prometheusRule/throttledRatio"),
    (("prometheusRule.chuteNotReadyFor=fifteen minutes",), "/prometheusRule/chuteNotReadyFor"),
    (("metrics.serviceMonitor.intervall=10s",), "'intervall'"),
    (("podDisruptionBudget.minAvailable=half",), "/podDisruptionBudget/minAvailable"),
    (("chuteNetworkPolicy.dns.podSelektor.app=x",), "'podSelektor'"),
    (("grafanaDashboard.labels.grafana_dashboard=1",), "/grafanaDashboard/labels/grafana_dashboard"),
    (("argocd.healthCheck.enabled=sure",), "/argocd/healthCheck/enabled"),
]


@pytest.mark.parametrize(("sets", "named"), BAD_VALUES, ids=[" ".join(s) for s, _ in BAD_VALUES])
def test_bad_values_are_refused_naming_the_key(helm: Helm, sets: tuple[str, ...], named: str) -> None:
    error = helm.template_error(*sets)
    assert "values don't meet the specifications of the schema" in error
    assert named in error


def test_latest_tag_is_refused_with_a_reason(helm: Helm) -> None:
    error = helm.template_error("image.tag=latest")
    assert "image.tag" in error
    assert "latest" in error


def test_good_overrides_pass(helm: Helm) -> None:
    objects = helm.template(
        sets=(
            "replicaCount=2",
            "image.tag=0.2.0-rc.1",
            "watchNamespaces={team-a}",
            "podDisruptionBudget.minAvailable=50%",
            "operator.extraEnv[0].name=CHUTE_OPERATOR_RESYNC_SECONDS",
            "operator.extraEnv[0].value=60",
        )
    )
    assert objects


def test_schema_is_strict_at_every_level_it_defines() -> None:
    """Every object the schema spells out (with properties) forbids unknown keys."""
    schema = json.loads((CHART / "values.schema.json").read_text())
    loose: list[str] = []

    def walk(node: dict[str, object], path: str) -> None:
        properties = node.get("properties")
        if isinstance(properties, dict):
            if node.get("additionalProperties") is not False and path != "/operator/extraEnv/items":
                loose.append(path or "/")
            for key, child in properties.items():
                if isinstance(child, dict):
                    walk(child, f"{path}/{key}")
        items = node.get("items")
        if isinstance(items, dict):
            walk(items, f"{path}/items")

    walk(schema, "")
    assert loose == []
    assert len(schema["properties"]) >= 20
