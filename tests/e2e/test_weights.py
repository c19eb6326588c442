"""Weights caches on the real API server (simulated nodes: kwok completes the download Job's pod).

The real Job, PV binder and garbage collector controllers; static PersistentVolumes of a StorageClass
the test makes stand in for the platform's class. The download itself is tested against a hub on the
machine (tests/unit/chute_weights) and on the real node (tests/realnode/test_weights.py).
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import pytest

from tests.kube_helpers import apply, condition, eventually, get, items
from tests.operator_fixtures import OperatorProcess

pytestmark = pytest.mark.e2e
REVISION = "0123456789abcdef0123456789abcdef01234567"
REVISION_2 = "89abcdef0123456789abcdef0123456789abcdef"
WEIGHTS = "chutes.ai/weights"


@pytest.fixture
def storage_class(control_plane: Any, namespace: str) -> Iterator[str]:
    """A class of its own, with four static ReadWriteMany volumes the PV binder binds to the caches."""
    name = f"weights-{namespace}"
    objects: list[dict[str, Any]] = [
        {
            "apiVersion": "storage.k8s.io/v1",
            "kind": "StorageClass",
            "metadata": {"name": name},
            "provisioner": "kubernetes.io/no-provisioner",
            "volumeBindingMode": "Immediate",
        }
    ]
    objects += [
        {
            "apiVersion": "v1",
            "kind": "PersistentVolume",
            "metadata": {"name": f"{name}-{index}"},
            "spec": {
                "storageClassName": name,
                "capacity": {"storage": "1Gi"},
                "accessModes": ["ReadWriteMany"],
                "persistentVolumeReclaimPolicy": "Retain",
                "hostPath": {"path": f"/tmp/{name}-{index}"},  # kwok's pods never mount it
            },
        }
        for index in range(4)
    ]
    for obj in objects:
        control_plane.kubectl("apply", "-f", "-", input=json.dumps(obj))
    yield name
    for obj in objects:
        control_plane.kubectl("delete", obj["kind"], obj["metadata"]["name"], "--wait=false", check=False)


def cached_chute(name: str, storage_class: str, revision: str = REVISION) -> dict[str, Any]:
    return {
        "apiVersion": "chutes.ai/v1alpha1",
        "kind": "Chute",
        "metadata": {"name": name},
        "spec": {
            "image": "ghcr.io/huggingface/text-embeddings-inference:cpu-1.8",
            "template": "tei",
            "model": {
                "name": "test-org/tiny",
                "revision": revision,
                "cache": {"size": "1Gi", "storageClassName": storage_class},
            },
            "nodeSelector": {"gpuCount": 0},
            "monitoring": {"serviceMonitor": False},
        },
    }


def caches(cp: Any, namespace: str, kind: str = "pvc") -> list[dict[str, Any]]:
    return items(cp, kind, namespace, WEIGHTS)


def owner_names(obj: dict[str, Any]) -> set[str]:
    return {ref["name"] for ref in obj["metadata"].get("ownerReferences") or []}


def weights_condition(cp: Any, name: str, namespace: str) -> dict[str, Any]:
    return condition(get(cp, "chute", name, namespace), "Weights")


def test_two_chutes_of_one_revision_share_one_cache_downloaded_once(
    control_plane: Any, operator: OperatorProcess, namespace: str, storage_class: str
) -> None:
    cp = control_plane
    for name in ("first", "second"):
        apply(cp, cached_chute(name, storage_class), namespace)
    for name in ("first", "second"):
        cp.kubectl("wait", "--for=condition=Ready", f"chute/{name}", "-n", namespace, "--timeout=120s")
        assert weights_condition(cp, name, namespace)["reason"] == "WeightsReady"
    pvcs, jobs = caches(cp, namespace), caches(cp, namespace, "job")
    assert len(pvcs) == 1
    assert len(jobs) == 1
    assert jobs[0]["status"].get("succeeded") == 1
    for obj in (*pvcs, *jobs, *caches(cp, namespace, "networkpolicy")):
        assert owner_names(obj) == {"first", "second"}
        assert not any(ref.get("controller") for ref in obj["metadata"]["ownerReferences"])
    # the serving pods mount it read-only and run offline; their own policy has no egress beyond DNS
    deployment = get(cp, "deployment", "first", namespace)
    assert deployment is not None
    pod = deployment["spec"]["template"]["spec"]
    claim = next(v for v in pod["volumes"] if v["name"] == "chute-weights")["persistentVolumeClaim"]
    assert claim == {"claimName": pvcs[0]["metadata"]["name"], "readOnly": True}
    env = {e["name"]: e.get("value") for e in pod["containers"][0]["env"]}
    assert env["HF_HUB_OFFLINE"] == "1"
    policy = get(cp, "networkpolicy", "first", namespace)
    assert policy is not None
    assert [rule["ports"][0]["port"] for rule in policy["spec"]["egress"]] == [53]
    # one Chute gone: the other keeps the cache; both gone: the garbage collector removes it
    cp.kubectl("delete", "chute", "first", "-n", namespace)
    eventually(lambda: owner_names(caches(cp, namespace)[0]) == {"second"}, "first's reference removed")
    cp.kubectl("delete", "chute", "second", "-n", namespace)
    eventually(lambda: not caches(cp, namespace, "job"), "the cache's Job collected", timeout=60)


def test_a_revision_change_downloads_the_new_revision_then_rolls_out_and_leaves_the_old_cache(
    control_plane: Any, operator: OperatorProcess, namespace: str, storage_class: str
) -> None:
    cp = control_plane
    apply(cp, cached_chute("model", storage_class), namespace)
    cp.kubectl("wait", "--for=condition=Ready", "chute/model", "-n", namespace, "--timeout=120s")
    old = caches(cp, namespace)[0]["metadata"]["name"]
    apply(cp, cached_chute("model", storage_class, REVISION_2), namespace)

    def moved() -> str | None:
        deployment = get(cp, "deployment", "model", namespace) or {}
        volumes = deployment.get("spec", {}).get("template", {}).get("spec", {}).get("volumes") or []
        claim = next((v for v in volumes if v["name"] == "chute-weights"), {}).get(
            "persistentVolumeClaim", {}
        )
        name = claim.get("claimName")
        return name if name and name != old else None

    new = eventually(moved, "the Deployment to mount the new cache")
    job = get(cp, "job", new, namespace)
    assert job is not None
    assert job["status"].get("succeeded") == 1
    # the rollout started after the download: the new template's ReplicaSet is no older than the Job's end
    new_sets = [
        rs
        for rs in items(cp, "replicaset", namespace, "chutes.ai/chute=model")
        if new in json.dumps(rs["spec"]["template"]["spec"].get("volumes"))
    ]
    assert new_sets
    assert new_sets[0]["metadata"]["creationTimestamp"] >= job["status"]["completionTime"]
    cp.kubectl("wait", "--for=condition=Ready", "chute/model", "-n", namespace, "--timeout=120s")
    eventually(lambda: get(cp, "job", old, namespace) is None, "the old cache's Job deleted", timeout=60)
    eventually(
        lambda: (
            (get(cp, "pvc", old, namespace) or {}).get("metadata", {}).get("deletionTimestamp")
            or get(cp, "pvc", old, namespace) is None
        ),
        "the old cache's claim deleted",
        timeout=60,
    )
    assert [
        p["metadata"]["name"] for p in caches(cp, namespace) if not p["metadata"].get("deletionTimestamp")
    ] == [new]


def test_an_object_in_the_way_of_a_cache_is_never_written_to(
    control_plane: Any, operator: OperatorProcess, namespace: str, storage_class: str
) -> None:
    cp = control_plane
    apply(cp, cached_chute("probe", storage_class), namespace)
    name = eventually(lambda: caches(cp, namespace), "the cache")[0]["metadata"]["name"]
    cp.kubectl("delete", "chute", "probe", "-n", namespace)
    eventually(lambda: not caches(cp, namespace, "job"), "the cache collected", timeout=60)
    cp.kubectl("create", "configmap", "unused", "-n", namespace)  # (the namespace stays busy)
    mine = {
        "apiVersion": "batch/v1",
        "kind": "Job",
        "metadata": {"name": name},
        "spec": {
            "template": {
                "spec": {"restartPolicy": "Never", "containers": [{"name": "c", "image": "busybox"}]}
            }
        },
    }
    apply(cp, mine, namespace)
    apply(cp, cached_chute("blocked", storage_class), namespace)

    def conflict() -> dict[str, Any] | None:
        found = condition(get(cp, "chute", "blocked", namespace), "Degraded")
        return found if found.get("reason") == "ChildConflict" else None

    assert f"Job {name}" in eventually(conflict, "ChildConflict")["message"]
    job = get(cp, "job", name, namespace)
    assert job is not None
    assert not job["metadata"].get("ownerReferences")
    assert get(cp, "deployment", "blocked", namespace) is None


def test_a_cache_claim_deleted_by_hand_is_made_again_and_downloaded_again(
    control_plane: Any, operator: OperatorProcess, namespace: str, storage_class: str
) -> None:
    """Breaking pass 29: the claim was made again, empty, beside the old Complete Job, and the Chute
    said WeightsReady. Now the Job older than its claim is deleted and made again."""
    cp = control_plane
    apply(cp, cached_chute("model", storage_class), namespace)
    cp.kubectl("wait", "--for=condition=Ready", "chute/model", "-n", namespace, "--timeout=120s")
    (old_claim,), (old_job,) = caches(cp, namespace), caches(cp, namespace, "job")
    name = old_claim["metadata"]["name"]
    cp.kubectl("delete", "pvc", name, "-n", namespace, "--wait=false")
    # kwok's pods mount nothing: let the claim go now, as it would once no pod mounts it
    cp.kubectl(
        "patch",
        "pvc",
        name,
        "-n",
        namespace,
        "--type=json",
        "-p",
        '[{"op":"remove","path":"/metadata/finalizers"}]',
    )

    def made_again() -> dict[str, Any] | None:
        found = get(cp, "pvc", name, namespace)
        return found if found and found["metadata"]["uid"] != old_claim["metadata"]["uid"] else None

    eventually(made_again, "the claim made again", timeout=60)

    def downloaded_again() -> dict[str, Any] | None:
        job = get(cp, "job", name, namespace)
        fresh = job and job["metadata"]["uid"] != old_job["metadata"]["uid"]
        return job if fresh and (job.get("status") or {}).get("succeeded") == 1 else None

    eventually(downloaded_again, "the download Job made again and completed", timeout=120)
    eventually(
        lambda: weights_condition(cp, "model", namespace).get("reason") == "WeightsReady", "WeightsReady"
    )
