"""Weights caches, pure: what a Chute's spec renders (the cache's objects, the serving pod's mounts
and offline mode), sharing by owner references, and the Weights state from the Job and its pods."""

from __future__ import annotations

import json
from typing import Any

import kubernetes_validate
import pytest

from chute_operator.api import reasons as r
from chute_operator.gpus import builtin_catalog
from chute_operator.render import render_weights, render_workload
from chute_operator.validation import InvalidChute, parse_chute
from chute_operator.weights import (
    is_cache_object,
    join_manifest,
    leave_patch,
    mounted_claim,
    progress_of,
    weights_state,
)
from chute_operator.workload import RenderOptions, resolve
from chute_shared import weights as shared
from tests.chutes import cpu_chute

REVISION = "0123456789abcdef0123456789abcdef01234567"
OPTIONS = RenderOptions(
    catalog=builtin_catalog(), sidecar_image="chute-operator:test", hf_endpoint="http://hub:1"
)
CACHE = {"size": "2Gi", "storageClassName": "shared", "tokenSecretRef": {"name": "hf"}}


def _chute(name: str = "emb", revision: str = REVISION, **cache: Any) -> dict[str, Any]:
    document = cpu_chute(name, model={"name": "org/m", "revision": revision, "cache": {**CACHE, **cache}})
    document["metadata"].update(namespace="models", uid=f"uid-{name}")
    return document


def _workload(document: dict[str, Any]) -> Any:
    return resolve(parse_chute(document), OPTIONS)


def _validate(manifests: list[dict[str, Any]]) -> None:
    for manifest in manifests:
        if not manifest["apiVersion"].startswith("monitoring.coreos.com"):
            kubernetes_validate.validate(manifest, "1.36.0", strict=True)


def test_a_cache_needs_a_pinned_revision() -> None:
    document = _chute()
    del document["spec"]["model"]["revision"]
    with pytest.raises(InvalidChute, match=r"needs spec\.model\.revision"):
        parse_chute(document)


def test_the_cache_objects_are_valid_and_only_the_job_reads_the_token() -> None:
    workload = _workload(_chute())
    objects = render_weights(workload.weights)
    _validate(objects)
    policy, pvc, job = objects
    assert [o["kind"] for o in objects] == ["NetworkPolicy", "PersistentVolumeClaim", "Job"]
    assert pvc["spec"] == {
        "accessModes": ["ReadWriteMany"],
        "resources": {"requests": {"storage": "2Gi"}},
        "storageClassName": "shared",
    }
    container = job["spec"]["template"]["spec"]["containers"][0]
    env = {e["name"]: e for e in container["env"]}
    assert env["HF_TOKEN"]["valueFrom"] == {"secretKeyRef": {"name": "hf", "key": "token"}}
    assert env["HF_ENDPOINT"]["value"] == "http://hub:1"
    assert container["args"][:4] == ["--repo", "org/m", "--revision", REVISION]
    assert policy["spec"]["podSelector"]["matchLabels"] == {shared.WEIGHTS_LABEL: workload.weights.key}
    assert policy["spec"]["egress"] == [{}]
    rule = job["spec"]["podFailurePolicy"]["rules"][0]
    assert rule["onExitCodes"]["values"] == [shared.EXIT_PERMANENT]


def test_serving_pods_mount_the_cache_read_only_offline_and_never_see_the_token() -> None:
    manifests = render_workload(_workload(_chute()))
    _validate(manifests)
    by_kind = {m["kind"]: m for m in manifests}
    deployment = by_kind["Deployment"]
    pod = deployment["spec"]["template"]["spec"]
    model = pod["containers"][0]
    env = {e["name"]: e.get("value") for e in model["env"]}
    assert env["HF_HUB_OFFLINE"] == "1"
    assert env["HF_HUB_CACHE"] == "/weights/hub"
    assert env[shared.MODEL_PATH_ENV] == f"/weights/hub/models--org--m/snapshots/{REVISION}"
    assert "HF_TOKEN" not in json.dumps(deployment)
    assert {"name": "chute-weights", "mountPath": "/weights", "readOnly": True} in model["volumeMounts"]
    assert mounted_claim(deployment) == _workload(_chute()).weights.name
    # the serving pods' own policy is unchanged: DNS only, no egress to the hub
    egress = by_kind["NetworkPolicy"]["spec"]["egress"]
    assert len(egress) == 1
    assert egress[0]["ports"][0]["port"] == 53


def test_chutes_of_one_revision_share_a_cache_and_another_revision_or_size_gets_its_own() -> None:
    one, two = _workload(_chute("a")).weights, _workload(_chute("b")).weights
    assert one.name == two.name
    assert _workload(_chute("c", revision="f" * 40)).weights.name != one.name
    assert _workload(_chute("d", size="3Gi")).weights.name != one.name
    assert _workload(_chute("e", tokenSecretRef={"name": "other"})).weights.name != one.name


def test_the_download_pod_tolerates_the_gpu_taints_of_the_chute_that_made_it() -> None:
    document = _chute("gpu")
    document["spec"]["nodeSelector"] = {"gpuCount": 1}
    job = render_weights(_workload(document).weights)[2]
    tolerations = job["spec"]["template"]["spec"]["tolerations"]
    assert {"key": "nvidia.com/gpu", "operator": "Exists", "effect": "NoSchedule"} in tolerations
    assert "tolerations" not in render_weights(_workload(_chute()).weights)[2]["spec"]["template"]["spec"]


def test_a_chute_without_a_model_cache_renders_as_before() -> None:
    workload = resolve(parse_chute(cpu_chute("plain")), OPTIONS)
    assert workload.weights is None
    deployment = next(m for m in render_workload(workload) if m["kind"] == "Deployment")
    assert "HF_HUB_OFFLINE" not in json.dumps(deployment)
    assert mounted_claim(deployment) is None


def test_joining_applies_the_whole_object_only_when_it_is_missing() -> None:
    chute = _chute("a")
    job = render_weights(_workload(chute).weights)[2]
    created = join_manifest(job, None, chute)
    assert created["spec"] == job["spec"]
    assert created["metadata"]["ownerReferences"] == [
        {"apiVersion": "chutes.ai/v1alpha1", "kind": "Chute", "name": "a", "uid": "uid-a"}
    ]
    joined = join_manifest(job, {**job, "metadata": {**job["metadata"], "ownerReferences": []}}, chute)
    assert "spec" not in joined
    assert joined["metadata"]["ownerReferences"][0]["uid"] == "uid-a"
    assert leave_patch("uid-a") == {"metadata": {"ownerReferences": [{"$patch": "delete", "uid": "uid-a"}]}}
    assert is_cache_object(job, _workload(chute).weights.key)
    assert not is_cache_object({"metadata": {"labels": {}}})


def _job(condition: str | None = None, message: str = "") -> dict[str, Any]:
    status = {"conditions": [{"type": condition, "status": "True", "message": message}]} if condition else {}
    return {"metadata": {"name": "j"}, "status": status}


def _pod(phase: str, termination: dict[str, str] | None = None) -> dict[str, Any]:
    container: dict[str, Any] = {"name": shared.DOWNLOAD_CONTAINER}
    if termination is not None:
        container["state"] = {"terminated": {"exitCode": 3, "message": json.dumps(termination)}}
    return {"status": {"phase": phase, "containerStatuses": [container]}}


BOUND = {"status": {"phase": "Bound"}}


def test_the_weights_state_follows_the_job() -> None:
    cache = _workload(_chute()).weights
    assert weights_state(cache, None, None).reason == r.WEIGHTS_PENDING
    assert weights_state(cache, {"status": {"phase": "Pending"}}, _job()).reason == r.WEIGHTS_PENDING
    running = weights_state(cache, BOUND, _job(), [_pod("Running")], progress=(512 << 20, 2 << 30))
    assert (running.status, running.reason) == ("False", r.WEIGHTS_DOWNLOADING)
    assert "512.0 MiB of 2.0 GiB (25%)" in running.message
    ready = weights_state(cache, BOUND, _job("Complete"))
    assert (ready.status, ready.reason, ready.ready) == ("True", r.WEIGHTS_READY, True)


@pytest.mark.parametrize("reason", shared.FAILURE_REASONS)
def test_a_failed_download_reports_the_hubs_reason(reason: str) -> None:
    cache = _workload(_chute()).weights
    pods = [_pod("Failed", {"reason": reason, "message": f"the hub said {reason}"})]
    state = weights_state(cache, BOUND, _job("Failed", "BackoffLimitExceeded"), pods)
    assert (state.status, state.reason, state.failed) == ("False", reason, True)
    retried = " (tried again 300s after it failed)" if reason == r.DOWNLOAD_FAILED else ""
    assert state.message == f"the hub said {reason}{retried}"


def test_a_failed_job_without_a_report_is_a_download_failure() -> None:
    cache = _workload(_chute()).weights
    state = weights_state(cache, BOUND, _job("Failed", "Job has reached the specified backoff limit"))
    assert (state.reason, state.message) == (
        r.DOWNLOAD_FAILED,
        "Job has reached the specified backoff limit (tried again 300s after it failed)",
    )


def test_progress_lines() -> None:
    assert progress_of(json.dumps({shared.PROGRESS_DONE: 1, shared.PROGRESS_TOTAL: 2})) == (1, 2)
    assert progress_of('{"snapshot": "/weights/hub"}') is None
    assert progress_of("not json") is None
