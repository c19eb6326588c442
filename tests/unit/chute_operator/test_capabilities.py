"""The version rules: what the API server accepts, from its answers, and what that renders and reports."""

from __future__ import annotations

import asyncio
from dataclasses import replace
from datetime import UTC, datetime
from typing import Any

import kubernetes_validate
import pytest

from chute_operator.api import reasons as r
from chute_operator.capabilities import (
    ASSUMED,
    ServerCapabilities,
    capabilities_from,
    hpa_reads_metrics,
    minor_of,
    served_versions,
    tolerance_kept,
    tolerance_probe,
    warnings,
)
from chute_operator.discover import learn
from chute_operator.kube import Forbidden, NotFound
from chute_operator.render import render
from chute_operator.report import status_events
from chute_operator.status import Observation, compute_status
from chute_operator.workload import resolve
from tests.unit.chute_operator.test_render import OPTIONS, _by_kind, _chute

V1_34 = {"major": "1", "minor": "34", "gitVersion": "v1.34.4"}
V1_36 = {"major": "1", "minor": "36", "gitVersion": "v1.36.3"}
KEPT = {"spec": {"behavior": {"scaleUp": {"tolerance": "0"}}}}
DROPPED: dict[str, Any] = {"spec": {"behavior": {"scaleUp": {}}}}
METRICS_GROUP = {
    "name": "custom.metrics.k8s.io",
    "versions": [{"version": "v1beta1"}, {"version": "v1beta2"}],
    "preferredVersion": {"version": "v1beta2"},
}
OLD = capabilities_from(V1_34, DROPPED, METRICS_GROUP)
AUTOSCALED = {"minInstances": 1, "maxInstances": 3, "scalingThreshold": 0.5}


@pytest.mark.parametrize(
    ("answer", "minor"),
    [
        ({"major": "1", "minor": "34"}, 34),
        ({"major": "1", "minor": "34+", "gitVersion": "v1.34.2-eks-113cf36"}, 34),
        ({"major": "1", "minor": "", "gitVersion": "v1.35.4"}, 35),
        ({"gitVersion": "v1.36.3"}, 36),
        ({"major": "2", "minor": "0"}, None),
        ({}, None),
    ],
)
def test_the_minor_is_read_from_the_version_answer(answer: dict[str, str], minor: int | None) -> None:
    assert minor_of(answer) == minor


@pytest.mark.parametrize(
    ("dry_run", "minor", "kept"),
    [
        (KEPT, 34, True),  # 1.34 with the alpha gate turned on: the dry run shows it kept
        (DROPPED, 34, False),  # 1.34 by default: the server drops it silently
        (DROPPED, 36, False),  # 1.36 with the gate turned off
        (KEPT, 36, True),
        (None, 34, False),  # no dry run: the version's default (alpha, off)
        (None, 35, True),  # beta, on
        (None, None, True),  # nothing known: a current server
        (KEPT, 32, False),  # older than the field: never
    ],
)
def test_tolerance_is_what_the_dry_run_kept_else_the_versions_default(
    dry_run: dict[str, Any] | None, minor: int | None, kept: bool
) -> None:
    assert tolerance_kept(dry_run, minor) is kept


def test_custom_metrics_versions_preferred_first_and_none_without_the_group() -> None:
    assert served_versions(METRICS_GROUP) == ("v1beta2", "v1beta1")
    assert served_versions(None) == ()
    assert hpa_reads_metrics(OLD)
    assert not hpa_reads_metrics(replace(OLD, custom_metrics_versions=("v2",)))


def test_capabilities_of_the_oldest_tested_and_the_default_version() -> None:
    assert (OLD.version, OLD.minor, OLD.hpa_tolerance, OLD.native_sidecars) == ("v1.34.4", 34, False, True)
    assert OLD.custom_metrics_versions == ("v1beta2", "v1beta1")
    assert capabilities_from(V1_36, KEPT).hpa_tolerance
    assert not capabilities_from({"major": "1", "minor": "28"}).native_sidecars
    assert "HPA tolerance no" in OLD.describe()


def test_the_probe_hpa_sets_tolerance_and_is_valid_on_the_oldest_version() -> None:
    probe = tolerance_probe()
    assert probe["spec"]["behavior"]["scaleUp"]["tolerance"] == "0"
    kubernetes_validate.validate(
        {**probe, "metadata": {"name": "p"}}, "1.34.0", strict=True
    )  # generateName alone is valid for the server, not for the schema's required name


def test_a_server_without_tolerance_gets_an_hpa_without_it_and_valid_for_1_34() -> None:
    manifests = render(_chute(**AUTOSCALED), replace(OPTIONS, server=OLD))
    assert _by_kind(manifests)["HorizontalPodAutoscaler"]["spec"]["behavior"]["scaleUp"] == {
        "stabilizationWindowSeconds": 0
    }
    for manifest in manifests:
        if not manifest["apiVersion"].startswith("monitoring.coreos.com"):
            kubernetes_validate.validate(manifest, "1.34.0", strict=True)


def test_what_the_server_cannot_honour_is_named_with_its_version() -> None:
    workload = resolve(_chute(**AUTOSCALED), replace(OPTIONS, server=OLD))
    (sentence,) = workload.unsupported
    assert "spec.scalingThreshold" in sentence
    assert "v1.34.4" in sentence
    assert "10%" in sentence
    assert resolve(_chute(**AUTOSCALED), OPTIONS).unsupported == ()  # a current server
    fixed = resolve(_chute(minInstances=2, maxInstances=2), replace(OPTIONS, server=OLD))
    assert fixed.unsupported == ()  # no HPA: nothing to honour
    unasked = replace(OPTIONS, server=OLD, hpa_exact_scale_up=False)
    assert resolve(_chute(**AUTOSCALED), unasked).unsupported == ()  # the operator was told not to


def _status(server: ServerCapabilities) -> dict[str, Any]:
    workload = resolve(_chute(**AUTOSCALED), replace(OPTIONS, server=server))
    ready = {"type": "Ready", "status": "True"}
    pod = {
        "metadata": {"name": "a"},
        "status": {
            "phase": "Running",
            "conditions": [ready],
            "containerStatuses": [
                {"name": "model", "ready": True, "started": True, "state": {"running": {}}}
            ],
        },
    }
    deployment = {
        "metadata": {"generation": 1},
        "spec": {"replicas": 1},
        "status": {"observedGeneration": 1, "replicas": 1, "readyReplicas": 1, "availableReplicas": 1,
                   "updatedReplicas": 1},
    }  # fmt: skip
    observation = Observation(1, "chutes.ai/chute=m", workload, deployment=deployment, pods=[pod])
    return compute_status(observation, datetime(2026, 12, 7, tzinfo=UTC))


def test_the_chute_reports_the_field_and_stays_ready() -> None:
    status = _status(OLD)
    conditions = {c["type"]: c for c in status["conditions"]}
    assert (conditions["Supported"]["status"], conditions["Supported"]["reason"]) == (
        "False",
        r.FIELD_UNSUPPORTED,
    )
    assert "v1.34.4" in conditions["Supported"]["message"]
    assert conditions["Ready"]["status"] == "True"
    assert conditions["Degraded"]["status"] == "False"
    assert all(c["type"] != "Supported" for c in _status(ASSUMED)["conditions"])
    (event,) = [e for e in status_events({}, status) if e.reason == r.FIELD_UNSUPPORTED]
    assert event.type == "Warning"


class FakeApi:
    """The three reads discover.learn makes, answered or refused as given."""

    def __init__(self, version: Any, dry_run: Any, group: Any) -> None:
        self.answers = {"/version": version, "/apis/custom.metrics.k8s.io": group}
        self.dry_run = dry_run
        self.dry_runs: list[tuple[str, str]] = []

    async def read_path(self, path: str) -> dict[str, Any]:
        return self._answer(self.answers[path])

    async def dry_run_create(self, kind: str, namespace: str, body: dict[str, Any]) -> dict[str, Any]:
        self.dry_runs.append((kind, namespace))
        return self._answer(self.dry_run)

    @staticmethod
    def _answer(answer: Any) -> dict[str, Any]:
        if answer is None:
            raise NotFound("not served", 404)
        if isinstance(answer, BaseException):
            raise answer
        return dict(answer)


def _learn(api: FakeApi) -> ServerCapabilities:
    return asyncio.run(learn(api, "models"))  # type: ignore[arg-type]


def test_learning_asks_the_server_and_falls_back_per_rule() -> None:
    api = FakeApi(V1_34, DROPPED, METRICS_GROUP)
    assert _learn(api) == OLD
    assert api.dry_runs == [("HorizontalPodAutoscaler", "models")]
    refused = FakeApi(V1_36, Forbidden("no", 403), NotFound("none", 404))
    assert _learn(refused) == ServerCapabilities("v1.36.3", 36, True, True, ())
    assert _learn(FakeApi(ConnectionError("down"), KEPT, METRICS_GROUP)) == ASSUMED
    too_old = FakeApi({"major": "1", "minor": "32", "gitVersion": "v1.32.1"}, KEPT, None)
    assert not _learn(too_old).hpa_tolerance
    assert too_old.dry_runs == []


def test_a_server_older_than_the_oldest_tested_is_named_at_start() -> None:
    assert warnings(OLD) == []
    assert warnings(ASSUMED) == []
    (older,) = warnings(capabilities_from({"major": "1", "minor": "33", "gitVersion": "v1.33.9"}))
    assert "v1.33.9" in older
    ancient = warnings(capabilities_from({"major": "1", "minor": "28", "gitVersion": "v1.28.1"}))
    assert len(ancient) == 2
    assert "native sidecars" in ancient[1]
    (unread,) = warnings(replace(OLD, custom_metrics_versions=("v2",)))
    assert "none of which the HPA reads" in unread
