"""The operator's custom metrics API, aggregated by the real kube-apiserver and read by the real HPA
controller, on the local control plane (a simulation for the pod's address: see
tests/metrics_api_harness.py and docs/autoscaling.md).
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from tests.kube_helpers import apply, condition, eventually, get, items
from tests.metrics_api_harness import (
    APISERVICE,
    CONCURRENCY,
    LoopbackSidecar,
    autoscaled_chute,
    metrics_api_on_loopback,
    raw,
)
from tests.operator_fixtures import OperatorProcess

pytestmark = pytest.mark.integration


@pytest.fixture
def metrics_operator(
    control_plane: Any, chute_crd: Path, namespace: str, tmp_path: Path
) -> Iterator[tuple[OperatorProcess, Path]]:
    with metrics_api_on_loopback(control_plane, namespace, tmp_path) as running:
        yield running


def test_the_hpa_reads_sidecar_utilization_through_the_aggregated_api_and_scales(
    control_plane: Any,
    namespace: str,
    metrics_operator: tuple[OperatorProcess, Path],
    sidecar: LoopbackSidecar,
) -> None:
    cp, (_operator, overrides) = control_plane, metrics_operator
    eventually(
        lambda: condition(get(cp, "apiservice", APISERVICE, ""), "Available").get("status") == "True",
        what="the APIService Available",
        timeout=60,
    )
    apply(cp, autoscaled_chute("scaler"), namespace)
    pods = eventually(
        lambda: [
            p for p in items(cp, "pods", namespace, "chutes.ai/chute=scaler") if p["status"].get("podIP")
        ],
        what="the Chute's pod",
    )
    first = pods[0]["metadata"]["name"]
    overrides.write_text(json.dumps({f"{namespace}/{first}": f"127.0.0.1:{sidecar.metrics_port}"}))

    # The aggregated API: the MetricValueList for the Chute's pods, through the real kube-apiserver.
    path = (
        f"/apis/custom.metrics.k8s.io/v1beta2/namespaces/{namespace}/pods/*/chute_utilization_ratio"
        "?labelSelector=chutes.ai%2Fchute%3Dscaler"
    )
    listed = eventually(lambda: (lambda r: r[1] if r[0] == 0 else None)(raw(cp, path)), what="the metric")
    assert listed["kind"] == "MetricValueList"
    assert [(i["describedObject"]["name"], i["value"]) for i in listed["items"]] == [(first, "0")]
    status, single = raw(cp, path.replace("/*/", f"/{first}/").split("?")[0])
    assert status == 0
    assert single["items"][0]["describedObject"]["name"] == first

    # The real HPA controller reads it.
    def hpa_active() -> dict[str, Any] | None:
        hpa = get(cp, "hpa", "scaler", namespace)
        return hpa if condition(hpa, "ScalingActive").get("status") == "True" else None

    eventually(hpa_active, what="HPA ScalingActive=True", timeout=120)
    eventually(
        lambda: (
            condition(get(cp, "chute", "scaler", namespace), "Autoscaling").get("reason") == "ScalingActive"
        ),
        what="the Chute's Autoscaling condition",
    )

    # Load: 4 streams on one replica of concurrency 4 is utilization 1.0, twice the 0.5 threshold.
    sidecar.open_streams(CONCURRENCY)
    assert sidecar.in_flight() == CONCURRENCY
    most = [1]

    def scaled_up() -> bool:
        deployment = get(cp, "deployment", "scaler", namespace) or {}
        most[0] = max(most[0], deployment.get("spec", {}).get("replicas") or 0)
        return (deployment.get("status") or {}).get("readyReplicas") == 2

    eventually(scaled_up, what="2 ready replicas", timeout=120)
    hpa = get(cp, "hpa", "scaler", namespace) or {}
    current = hpa["status"]["currentMetrics"][0]["pods"]["current"]["averageValue"]
    assert current in ("1", "500m"), current  # shown by kubectl describe hpa
    described = cp.kubectl("describe", "hpa", "scaler", "-n", namespace).stdout
    assert "chute_utilization_ratio" in described

    # Idle again: back to 1 after the scale-down window (shutdownAfterSeconds: 60).
    sidecar.close_streams()
    eventually(
        lambda: ((get(cp, "deployment", "scaler", namespace) or {}).get("spec") or {}).get("replicas") == 1,
        what="scale down to 1",
        timeout=180,
    )
    assert most[0] <= 3  # never past maxInstances
