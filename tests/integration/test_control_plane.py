"""The local control plane itself: simulated GPU nodes, the real scheduler, simulated pod lives."""

from __future__ import annotations

import json
from collections.abc import Callable
from datetime import datetime
from typing import Any, TypeVar

import pytest
from tests.kube_helpers import eventually

from chute_devcluster.controlplane import ControlPlane
from chute_devcluster.nodes import default_node_pools
from chute_devcluster.stages import (
    BEHAVIOR_ANNOTATION,
    CONTAINER_ANNOTATION,
    READY_AFTER_ANNOTATION,
)

pytestmark = pytest.mark.integration

T = TypeVar("T")
GPU_TOLERATION = {"key": "nvidia.com/gpu", "operator": "Exists", "effect": "NoSchedule"}
H100 = "NVIDIA-H100-80GB-HBM3"


def get_json(cp: ControlPlane, *args: str) -> dict[str, Any]:
    return dict(json.loads(cp.kubectl("get", *args, "-o", "json").stdout))


def apply(cp: ControlPlane, namespace: str, manifest: dict[str, Any]) -> None:
    cp.kubectl("apply", "-n", namespace, "-f", "-", input=json.dumps(manifest))


def condition(obj: dict[str, Any], kind: str) -> dict[str, Any]:
    for entry in (obj.get("status") or {}).get("conditions") or []:
        if entry.get("type") == kind:
            return dict(entry)
    return {}


def pod(name: str, annotations: dict[str, str] | None = None, **spec: Any) -> dict[str, Any]:
    return {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": name, "annotations": annotations or {}},
        "spec": {"containers": [{"name": "model", "image": "vllm/vllm-openai:v0.11.0"}], **spec},
    }


def container_status(found: dict[str, Any], name: str = "model") -> dict[str, Any]:
    for status in (found.get("status") or {}).get("containerStatuses") or []:
        if status.get("name") == name:
            return dict(status)
    return {}


def timestamp(value: str) -> datetime:
    return datetime.fromisoformat(value.replace("Z", "+00:00"))


# -- nodes -------------------------------------------------------------------------------------


def test_every_simulated_node_is_ready(control_plane: ControlPlane) -> None:
    nodes = get_json(control_plane, "nodes", "-l", "type=kwok")["items"]
    expected = {name for pool in default_node_pools() for name in pool.node_names()}
    ready = {n["metadata"]["name"] for n in nodes if condition(n, "Ready").get("status") == "True"}
    assert expected <= ready


@pytest.mark.parametrize(
    ("pool_name", "product", "memory_mib", "gpus"),
    [
        ("h100", "NVIDIA-H100-80GB-HBM3", "81559", "8"),
        ("a100", "NVIDIA-A100-SXM4-80GB", "81920", "8"),
        ("l40s", "NVIDIA-L40S", "46068", "4"),
        ("l4", "NVIDIA-L4", "23034", "4"),
    ],
)
def test_gpu_nodes_carry_capacity_labels_and_taint(
    control_plane: ControlPlane, pool_name: str, product: str, memory_mib: str, gpus: str
) -> None:
    nodes = get_json(control_plane, "nodes", "-l", f"nvidia.com/gpu.product={product}")["items"]
    assert len(nodes) == 2
    for node in nodes:
        labels, status = node["metadata"]["labels"], node["status"]
        assert labels["nvidia.com/gpu.present"] == "true"
        assert labels["nvidia.com/gpu.memory"] == memory_mib
        assert labels["nvidia.com/gpu.count"] == gpus
        assert labels["kubernetes.io/hostname"] == node["metadata"]["name"]
        assert labels["node.kubernetes.io/instance-type"]
        assert labels["type"] == "kwok"
        assert status["capacity"]["nvidia.com/gpu"] == gpus
        assert status["allocatable"]["nvidia.com/gpu"] == gpus
        assert {"cpu", "memory", "pods", "ephemeral-storage"} <= set(status["allocatable"])
        assert {"key": "nvidia.com/gpu", "value": "present", "effect": "NoSchedule"} in node["spec"]["taints"]


def test_cpu_node_has_no_gpu(control_plane: ControlPlane) -> None:
    node = get_json(control_plane, "node", "sim-cpu-0")
    assert not any(key.startswith("nvidia.com/") for key in node["metadata"]["labels"])
    assert "nvidia.com/gpu" not in node["status"]["capacity"]
    assert not node["spec"].get("taints")


# -- scheduling and pod lives ------------------------------------------------------------------


def test_gpu_deployment_is_scheduled_onto_gpu_nodes_and_becomes_ready(
    control_plane: ControlPlane, namespace: str
) -> None:
    deployment = {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {"name": "llm"},
        "spec": {
            "replicas": 2,
            "selector": {"matchLabels": {"app": "llm"}},
            "template": {
                "metadata": {"labels": {"app": "llm"}},
                "spec": {
                    "nodeSelector": {"nvidia.com/gpu.product": H100},
                    "tolerations": [GPU_TOLERATION],
                    "initContainers": [
                        {"name": "fetch-weights", "image": "busybox:1.37"},
                        {"name": "proxy", "image": "chute-sidecar:test", "restartPolicy": "Always"},
                    ],
                    "containers": [
                        {
                            "name": "model",
                            "image": "vllm/vllm-openai:v0.11.0",
                            "resources": {"limits": {"nvidia.com/gpu": "8"}},
                        }
                    ],
                },
            },
        },
    }
    apply(control_plane, namespace, deployment)
    control_plane.kubectl(
        "wait", "--for=condition=Available", "deployment/llm", "-n", namespace, "--timeout=120s"
    )
    pods = get_json(control_plane, "pods", "-n", namespace, "-l", "app=llm")["items"]
    assert len(pods) == 2
    h100_nodes = {"sim-h100-0", "sim-h100-1"}
    assert {p["spec"]["nodeName"] for p in pods} == h100_nodes  # 8 GPUs each: one pod per node
    for found in pods:
        assert found["status"]["phase"] == "Running"
        assert condition(found, "Ready")["status"] == "True"
        assert found["status"]["podIP"]
        init = {s["name"]: s for s in found["status"]["initContainerStatuses"]}
        assert init["fetch-weights"]["state"]["terminated"]["reason"] == "Completed"
        assert init["proxy"]["started"] is True
        assert "running" in init["proxy"]["state"]
        assert container_status(found)["ready"] is True


def test_pod_asking_for_more_gpus_than_any_node_stays_pending(
    control_plane: ControlPlane, namespace: str
) -> None:
    greedy = pod("greedy", tolerations=[GPU_TOLERATION])
    greedy["spec"]["containers"][0]["resources"] = {"limits": {"nvidia.com/gpu": "16"}}
    apply(control_plane, namespace, greedy)

    def unschedulable() -> dict[str, Any]:
        found = get_json(control_plane, "pod", "greedy", "-n", namespace)
        scheduled = condition(found, "PodScheduled")
        return scheduled if scheduled.get("reason") == "Unschedulable" else {}

    scheduled = eventually(unschedulable, "the scheduler to give up on the pod")
    assert scheduled["status"] == "False"
    assert "nvidia.com/gpu" in scheduled["message"]
    assert get_json(control_plane, "pod", "greedy", "-n", namespace)["status"]["phase"] == "Pending"


def test_gpu_pod_without_toleration_is_not_scheduled_onto_gpu_nodes(
    control_plane: ControlPlane, namespace: str
) -> None:
    gpu_pod = pod("no-toleration")
    gpu_pod["spec"]["containers"][0]["resources"] = {"limits": {"nvidia.com/gpu": "1"}}
    apply(control_plane, namespace, gpu_pod)

    def unschedulable() -> dict[str, Any]:
        scheduled = condition(
            get_json(control_plane, "pod", "no-toleration", "-n", namespace), "PodScheduled"
        )
        return scheduled if scheduled.get("reason") == "Unschedulable" else {}

    assert "untolerated taint" in eventually(unschedulable, "the scheduler to refuse the pod")["message"]


def _wait_for_container(
    cp: ControlPlane, namespace: str, name: str, check: Callable[[dict[str, Any]], bool], what: str
) -> dict[str, Any]:
    def probe() -> dict[str, Any]:
        found = get_json(cp, "pod", name, "-n", namespace)
        return found if check(container_status(found)) else {}

    return eventually(probe, f"pod {name}: {what}")


def test_image_pull_back_off(control_plane: ControlPlane, namespace: str) -> None:
    apply(control_plane, namespace, pod("pull", {BEHAVIOR_ANNOTATION: "ImagePullBackOff"}))
    found = _wait_for_container(
        control_plane,
        namespace,
        "pull",
        lambda s: (s.get("state") or {}).get("waiting", {}).get("reason") == "ImagePullBackOff",
        "waiting with ImagePullBackOff",
    )
    waiting = container_status(found)["state"]["waiting"]
    assert "vllm/vllm-openai:v0.11.0" in waiting["message"]
    assert found["status"]["phase"] == "Pending"
    assert condition(found, "Ready")["status"] == "False"


@pytest.mark.parametrize(
    ("behavior", "reason", "exit_code"), [("CrashLoopBackOff", "Error", 1), ("OOMKilled", "OOMKilled", 137)]
)
def test_crash_loop(
    control_plane: ControlPlane, namespace: str, behavior: str, reason: str, exit_code: int
) -> None:
    apply(control_plane, namespace, pod("crash", {BEHAVIOR_ANNOTATION: behavior}))
    found = _wait_for_container(
        control_plane,
        namespace,
        "crash",
        lambda s: (s.get("state") or {}).get("waiting", {}).get("reason") == "CrashLoopBackOff",
        "waiting with CrashLoopBackOff",
    )
    status = container_status(found)
    assert status["lastState"]["terminated"]["reason"] == reason
    assert status["lastState"]["terminated"]["exitCode"] == exit_code
    assert status["restartCount"] >= 1
    assert status["ready"] is False
    assert found["status"]["phase"] == "Running"
    assert condition(found, "Ready")["status"] == "False"
    _wait_for_container(
        control_plane,
        namespace,
        "crash",
        lambda s: s.get("restartCount", 0) > status["restartCount"],
        "the restart count to rise",
    )


def test_failure_hits_only_the_named_container(control_plane: ControlPlane, namespace: str) -> None:
    two = pod("two", {BEHAVIOR_ANNOTATION: "CrashLoopBackOff", CONTAINER_ANNOTATION: "model"})
    two["spec"]["containers"].append({"name": "helper", "image": "busybox:1.37"})
    apply(control_plane, namespace, two)
    found = _wait_for_container(
        control_plane,
        namespace,
        "two",
        lambda s: s.get("restartCount", 0) >= 1,
        "the model container to crash",
    )
    helper = container_status(found, "helper")
    assert helper["ready"] is True
    assert "running" in helper["state"]


def test_probe_failing(control_plane: ControlPlane, namespace: str) -> None:
    apply(control_plane, namespace, pod("probe", {BEHAVIOR_ANNOTATION: "ProbeFailing"}))
    found = _wait_for_container(
        control_plane, namespace, "probe", lambda s: "running" in (s.get("state") or {}), "running"
    )
    assert container_status(found)["ready"] is False
    assert found["status"]["phase"] == "Running"
    ready = condition(found, "Ready")
    assert ready["status"] == "False"
    assert ready["reason"] == "ContainersNotReady"


def test_ready_after_delays_readiness(control_plane: ControlPlane, namespace: str) -> None:
    delay = 15
    apply(control_plane, namespace, pod("slow", {READY_AFTER_ANNOTATION: str(delay)}))
    running = _wait_for_container(
        control_plane, namespace, "slow", lambda s: "running" in (s.get("state") or {}), "running"
    )
    assert condition(running, "Ready")["status"] == "False"
    control_plane.kubectl("wait", "--for=condition=Ready", "pod/slow", "-n", namespace, "--timeout=120s")
    ready = get_json(control_plane, "pod", "slow", "-n", namespace)
    became_ready = timestamp(condition(ready, "Ready")["lastTransitionTime"])
    started = timestamp(ready["status"]["startTime"])
    assert (became_ready - started).total_seconds() >= delay - 1  # timestamps have 1 s resolution


def test_deleted_pod_goes_away(control_plane: ControlPlane, namespace: str) -> None:
    apply(control_plane, namespace, pod("short-lived"))
    control_plane.kubectl(
        "wait", "--for=condition=Ready", "pod/short-lived", "-n", namespace, "--timeout=60s"
    )
    control_plane.kubectl("delete", "pod", "short-lived", "-n", namespace, "--timeout=60s")
    gone = control_plane.kubectl("get", "pod", "short-lived", "-n", namespace, check=False)
    assert gone.returncode != 0
    assert "NotFound" in gone.stderr


# -- the namespace fixture ---------------------------------------------------------------------

_first_namespace: list[str] = []


def test_namespace_fixture_gives_a_fresh_namespace(control_plane: ControlPlane, namespace: str) -> None:
    assert get_json(control_plane, "namespace", namespace)["status"]["phase"] == "Active"
    assert get_json(control_plane, "serviceaccount", "default", "-n", namespace)
    assert get_json(control_plane, "pods", "-n", namespace)["items"] == []
    control_plane.kubectl("create", "configmap", "marker", "-n", namespace)
    _first_namespace.append(namespace)


def test_namespace_fixture_isolates_tests(control_plane: ControlPlane, namespace: str) -> None:
    if not _first_namespace:
        pytest.skip("needs test_namespace_fixture_gives_a_fresh_namespace to run first")
    previous = _first_namespace[0]
    assert namespace != previous
    assert control_plane.kubectl("get", "configmap", "marker", "-n", namespace, check=False).returncode != 0
    old = control_plane.kubectl("get", "namespace", previous, "-o", "json", check=False)
    assert old.returncode != 0 or json.loads(old.stdout)["metadata"].get("deletionTimestamp")
