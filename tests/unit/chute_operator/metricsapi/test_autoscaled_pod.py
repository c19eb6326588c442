"""A sleep's confirming read looks its pod up (autoscaled_pod) instead of scanning every pod the
scraper reads (autoscaled_pods): both must name the same pods."""

from __future__ import annotations

from typing import Any

from chute_operator.metricsapi.service import autoscaled_pod, autoscaled_pods
from chute_operator.store import Store
from chute_shared.cluster import CHUTE_LABEL


def _object(name: str, chute: str, version: int) -> dict[str, Any]:
    labels = {CHUTE_LABEL: chute}
    return {"metadata": {"namespace": "ns", "name": name, "labels": labels, "resourceVersion": str(version)}}


def test_the_lookup_finds_exactly_the_pods_the_scan_reads() -> None:
    store = Store()
    store.put("HorizontalPodAutoscaler", _object("scaled", "scaled", 1))
    for version, (pod, chute) in enumerate(
        [("scaled-1", "scaled"), ("scaled-2", "scaled"), ("fixed-1", "fixed"), ("orphan", "")], start=2
    ):
        store.put("Pod", _object(pod, chute, version))
    scanned = {(p["metadata"]["namespace"], p["metadata"]["name"]) for p in autoscaled_pods(store)}
    keys = [*store.keys("Pod"), ("ns", "missing")]
    looked_up = {key for key in keys if autoscaled_pod(store, key) is not None}
    assert scanned == looked_up == {("ns", "scaled-1"), ("ns", "scaled-2")}
