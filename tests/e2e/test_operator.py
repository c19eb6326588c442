"""The operator against the real local control plane with simulated GPU nodes (issue: reconciler)."""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

import pytest

from tests.kube_helpers import apply, condition, eventually, get, items
from tests.operator_fixtures import OperatorProcess

pytestmark = pytest.mark.e2e
ROOT = Path(__file__).resolve().parents[2]
CHILD_KINDS = ("deployment", "service", "horizontalpodautoscaler", "servicemonitor", "networkpolicy")


def chute(name: str, **spec: Any) -> dict[str, Any]:
    base: dict[str, Any] = {
        "image": "vllm/vllm-openai:v0.10.1",
        "template": "vllm",
        "model": {"name": "org/model"},
        "nodeSelector": {"gpuCount": 1, "minVramGbPerGpu": 24},
    }
    return {
        "apiVersion": "chutes.ai/v1alpha1",
        "kind": "Chute",
        "metadata": {"name": name},
        "spec": {**base, **spec},
    }


def wait_ready(cp: Any, name: str, namespace: str, timeout: int = 120) -> dict[str, Any]:
    cp.kubectl("wait", "--for=condition=Ready", f"chute/{name}", "-n", namespace, f"--timeout={timeout}s")
    found = get(cp, "chute", name, namespace)
    assert found is not None
    return found


def ready_reason(cp: Any, name: str, namespace: str) -> tuple[str, str, str]:
    ready = condition(get(cp, "chute", name, namespace), "Ready")
    return ready.get("status", ""), ready.get("reason", ""), ready.get("message", "")


def events(cp: Any, name: str, namespace: str) -> list[dict[str, Any]]:
    result = cp.kubectl(
        "get", "events", "-n", namespace, "--field-selector", f"involvedObject.name={name}", "-o", "json"
    )
    return list(json.loads(result.stdout)["items"])


def versions(cp: Any, name: str, namespace: str) -> dict[str, str]:
    found = {}
    for kind in ("chute", *CHILD_KINDS):
        obj = get(cp, kind, name, namespace)
        if obj:
            found[kind] = obj["metadata"]["resourceVersion"]
    return found


def settled_versions(
    cp: Any, name: str, namespace: str, quiet: float = 5.0, timeout: float = 90.0
) -> dict[str, str]:
    """The resourceVersions once nothing has changed them for ``quiet`` seconds: other writers (the HPA
    controller's status, the running operator mirroring it) finish before the cold operator looks."""
    deadline = time.monotonic() + timeout
    seen = versions(cp, name, namespace)
    while True:
        time.sleep(quiet)
        now = versions(cp, name, namespace)
        if now == seen:
            return now
        if time.monotonic() > deadline:
            pytest.fail(f"{name}: still changing after {timeout:.0f}s: {seen} -> {now}", pytrace=False)
        seen = now


def assert_a_cold_operator_writes_nothing(cp: Any, name: str, namespace: str, log_dir: Path) -> None:
    """A restart in effect: a second operator (own lease, this namespace only) starts cold,
    reconciles the Chute, and neither writes nor changes any resourceVersion."""
    before = settled_versions(cp, name, namespace)
    fresh = OperatorProcess(
        cp.kubeconfig,
        log_dir,
        f"op-cold-{name}",
        namespaces=(namespace,),
        CHUTE_OPERATOR_LEASE_NAME=f"cold-{namespace}",
    ).start()
    try:
        eventually(lambda: fresh.metric("chute_operator_leader") == 1, what="leadership of the cold operator")
        eventually(
            lambda: fresh.metric("chute_operator_reconciles_total", result="success") >= 1, what="reconcile"
        )
        time.sleep(3)
        assert fresh.metric("chute_operator_api_writes_total") == 0, fresh.log_tail()
    finally:
        fresh.stop()
    assert versions(cp, name, namespace) == before


@pytest.fixture
def servicemonitor_api(control_plane: Any) -> None:
    control_plane.kubectl(
        "apply", "--server-side", "-f", str(ROOT / "tests" / "fixtures" / "servicemonitor-crd.yaml")
    )
    control_plane.kubectl(
        "wait", "--for=condition=Established", "--timeout=60s", "crd/servicemonitors.monitoring.coreos.com"
    )


def test_ready_without_the_monitoring_api_then_servicemonitor_once_it_appears(
    operator: OperatorProcess, control_plane: Any, namespace: str, tmp_path: Path
) -> None:
    assert get(control_plane, "crd", "servicemonitors.monitoring.coreos.com", "") is None, "must run first"
    apply(control_plane, chute("mon"), namespace)
    wait_ready(control_plane, "mon", namespace)
    monitored = eventually(
        lambda: condition(get(control_plane, "chute", "mon", namespace), "Monitored"), what="Monitored"
    )
    assert (monitored["status"], monitored["reason"]) == ("False", "MonitoringUnavailable")
    assert "MonitoringUnavailable" in {e["reason"] for e in events(control_plane, "mon", namespace)}

    time.sleep(2)
    assert_a_cold_operator_writes_nothing(control_plane, "mon", namespace, tmp_path)

    control_plane.kubectl(
        "apply", "--server-side", "-f", str(ROOT / "tests" / "fixtures" / "servicemonitor-crd.yaml")
    )
    monitor = eventually(
        lambda: get(control_plane, "servicemonitor", "mon", namespace), what="ServiceMonitor"
    )
    assert monitor["spec"]["endpoints"][0]["port"] == "metrics"
    eventually(
        lambda: condition(get(control_plane, "chute", "mon", namespace), "Monitored").get("status") == "True",
        what="Monitored=True",
    )


def test_example_becomes_ready_with_every_child_owned(
    operator: OperatorProcess, servicemonitor_api: None, control_plane: Any, namespace: str
) -> None:
    control_plane.kubectl("apply", "-n", namespace, "-f", str(ROOT / "examples" / "vllm-chat.yaml"))
    found = wait_ready(control_plane, "qwen3-8b-chat", namespace)
    uid = found["metadata"]["uid"]
    for kind in CHILD_KINDS:
        child = eventually(lambda k=kind: get(control_plane, k, "qwen3-8b-chat", namespace), what=kind)
        owner = child["metadata"]["ownerReferences"][0]
        assert (owner["uid"], owner["controller"], owner["kind"]) == (uid, True, "Chute")
    status = found["status"]
    assert status["observedGeneration"] == found["metadata"]["generation"]
    assert status["url"] == f"http://qwen3-8b-chat.{namespace}.svc.cluster.local"
    assert status["selector"] == "chutes.ai/chute=qwen3-8b-chat"
    assert status["readyReplicas"] >= 1
    pods = items(control_plane, "pods", namespace, "chutes.ai/chute=qwen3-8b-chat")
    node = get(control_plane, "node", pods[0]["spec"]["nodeName"], "")
    assert node is not None
    product = node["metadata"]["labels"]["nvidia.com/gpu.product"]
    assert product in {"NVIDIA-H100-80GB-HBM3", "NVIDIA-A100-SXM4-80GB", "NVIDIA-L40S", "NVIDIA-L4"}
    table = control_plane.kubectl("get", "chutes", "-n", namespace).stdout
    for column in ("READY", "TEMPLATE", "GPU", "vllm"):
        assert column in table


def test_image_change_rolls_out_and_observed_generation_follows(
    operator: OperatorProcess, control_plane: Any, namespace: str
) -> None:
    apply(control_plane, chute("roll"), namespace)
    wait_ready(control_plane, "roll", namespace)
    control_plane.kubectl(
        "patch",
        "chute",
        "roll",
        "-n",
        namespace,
        "--type=merge",
        "-p",
        '{"spec":{"image":"vllm/vllm-openai:v0.11.0"}}',
    )

    def rolled() -> bool:
        deployment = get(control_plane, "deployment", "roll", namespace) or {}
        containers = deployment.get("spec", {}).get("template", {}).get("spec", {}).get("containers", [{}])
        return containers[0].get("image") == "vllm/vllm-openai:v0.11.0"

    eventually(rolled, what="new image in the Deployment")
    found = wait_ready(control_plane, "roll", namespace)
    assert found["metadata"]["generation"] == 2
    eventually(
        lambda: (
            (get(control_plane, "chute", "roll", namespace) or {}).get("status", {}).get("observedGeneration")
            == 2
        ),
        what="observedGeneration 2",
    )
    assert condition(get(control_plane, "chute", "roll", namespace), "Ready")["observedGeneration"] == 2


def test_turning_features_off_removes_their_children(
    operator: OperatorProcess, servicemonitor_api: None, control_plane: Any, namespace: str
) -> None:
    apply(control_plane, chute("prune", minInstances=1, maxInstances=3), namespace)
    for kind in ("horizontalpodautoscaler", "servicemonitor", "networkpolicy"):
        eventually(lambda k=kind: get(control_plane, k, "prune", namespace), what=kind)
    patch = {
        "spec": {
            "minInstances": 2,
            "maxInstances": 2,
            "monitoring": {"serviceMonitor": False},
            "allowExternalEgress": True,
        }
    }
    control_plane.kubectl("patch", "chute", "prune", "-n", namespace, "--type=merge", "-p", json.dumps(patch))
    for kind in ("horizontalpodautoscaler", "servicemonitor"):
        eventually(lambda k=kind: get(control_plane, k, "prune", namespace) is None, what=f"{kind} removed")

    def egress_open() -> bool:  # the NetworkPolicy stays: it still governs ingress
        policy = get(control_plane, "networkpolicy", "prune", namespace) or {}
        return policy.get("spec", {}).get("policyTypes") == ["Ingress"] and "egress" not in policy["spec"]

    eventually(egress_open, what="egress opened, ingress still governed")
    eventually(
        lambda: (
            (get(control_plane, "deployment", "prune", namespace) or {}).get("spec", {}).get("replicas") == 2
        ),
        what="2 fixed replicas",
    )
    wait_ready(control_plane, "prune", namespace)


def test_a_load_balancer_chute_publishes_no_metrics_port_and_its_metrics_service_goes_with_it(
    operator: OperatorProcess, servicemonitor_api: None, control_plane: Any, namespace: str
) -> None:
    """Issue 27, breaking pass of the doors, finding 2: a NodePort or LoadBalancer Service publishes the
    serving port only (a node port of the metrics port would bypass its policy once SNATed); the
    ServiceMonitor reads a headless ClusterIP Service, removed when the Service is ClusterIP again."""
    cp = control_plane
    apply(cp, chute("door", service={"type": "LoadBalancer"}), namespace)
    metrics = eventually(lambda: get(cp, "service", "door-metrics", namespace), what="the metrics Service")
    public = get(cp, "service", "door", namespace) or {}
    assert public["spec"]["type"] == "LoadBalancer"
    assert [p["name"] for p in public["spec"]["ports"]] == ["http"]
    assert (metrics["spec"]["type"], metrics["spec"].get("clusterIP")) == ("ClusterIP", "None")  # headless
    assert [(p["name"], p["port"], p.get("nodePort")) for p in metrics["spec"]["ports"]] == [
        ("metrics", 9090, None)
    ]
    assert metrics["metadata"]["ownerReferences"][0]["kind"] == "Chute"
    monitor = eventually(lambda: get(cp, "servicemonitor", "door", namespace), what="ServiceMonitor")
    assert monitor["spec"]["selector"]["matchLabels"]["chutes.ai/service-role"] == "metrics"
    wait_ready(cp, "door", namespace)

    patch = {"spec": {"service": {"type": "ClusterIP"}}}
    cp.kubectl("patch", "chute", "door", "-n", namespace, "--type=merge", "-p", json.dumps(patch))
    eventually(
        lambda: get(cp, "service", "door-metrics", namespace) is None, what="the metrics Service pruned"
    )
    public = eventually(
        lambda: (s := get(cp, "service", "door", namespace)) and s["spec"]["type"] == "ClusterIP" and s,
        what="the Service back to ClusterIP",
    )
    assert [p["name"] for p in public["spec"]["ports"]] == ["http", "metrics"]
    monitor = get(cp, "servicemonitor", "door", namespace) or {}
    assert "chutes.ai/service-role" not in monitor["spec"]["selector"]["matchLabels"]


def test_hand_edits_are_put_back_but_foreign_labels_stay(
    operator: OperatorProcess, control_plane: Any, namespace: str
) -> None:
    apply(control_plane, chute("drift", minInstances=2, maxInstances=2), namespace)
    wait_ready(control_plane, "drift", namespace)
    control_plane.kubectl("label", "deployment", "drift", "-n", namespace, "team=ml")
    control_plane.kubectl("scale", "deployment", "drift", "-n", namespace, "--replicas=5")
    eventually(
        lambda: get(control_plane, "deployment", "drift", namespace)["spec"]["replicas"] == 2,  # type: ignore[index]
        what="replicas restored",
    )
    control_plane.kubectl("set", "image", "deployment/drift", "-n", namespace, "model=evil:latest")

    def image() -> str:
        deployment = get(control_plane, "deployment", "drift", namespace) or {}
        return str(deployment["spec"]["template"]["spec"]["containers"][0]["image"])

    eventually(lambda: image() == "vllm/vllm-openai:v0.10.1", what="image restored")
    assert get(control_plane, "deployment", "drift", namespace)["metadata"]["labels"]["team"] == "ml"  # type: ignore[index]
    old_uid = get(control_plane, "deployment", "drift", namespace)["metadata"]["uid"]  # type: ignore[index]
    control_plane.kubectl("delete", "deployment", "drift", "-n", namespace, "--wait=true")
    recreated = eventually(
        lambda: (
            (d := get(control_plane, "deployment", "drift", namespace))
            and d["metadata"]["uid"] != old_uid
            and d
        ),
        what="Deployment recreated",
    )
    assert recreated["spec"]["replicas"] == 2


def test_switching_to_autoscaling_keeps_the_current_replicas(
    operator: OperatorProcess, control_plane: Any, namespace: str
) -> None:
    apply(control_plane, chute("handoff", minInstances=3, maxInstances=3), namespace)
    wait_ready(control_plane, "handoff", namespace)
    patch = {"spec": {"minInstances": 1, "maxInstances": 5}}
    control_plane.kubectl(
        "patch", "chute", "handoff", "-n", namespace, "--type=merge", "-p", json.dumps(patch)
    )
    eventually(lambda: get(control_plane, "horizontalpodautoscaler", "handoff", namespace), what="HPA")
    time.sleep(2)
    shown = control_plane.kubectl(
        "get", "deployment", "handoff", "-n", namespace, "-o", "json", "--show-managed-fields"
    )
    deployment = json.loads(shown.stdout)
    assert deployment["spec"]["replicas"] == 3
    replicas_owners = {
        entry["manager"]
        for entry in deployment["metadata"]["managedFields"]
        if "f:replicas" in (entry.get("fieldsV1") or {}).get("f:spec", {})
    }
    assert "chute-operator" not in replicas_owners  # left to the HPA, so never reset by our applies
    assert replicas_owners, "someone must still hold spec.replicas, or it falls back to 1"


def test_deleting_the_chute_garbage_collects_every_child(
    operator: OperatorProcess, control_plane: Any, namespace: str
) -> None:
    apply(control_plane, chute("gone"), namespace)
    wait_ready(control_plane, "gone", namespace)
    control_plane.kubectl("delete", "chute", "gone", "-n", namespace)
    for kind in ("deployment", "service", "networkpolicy"):
        eventually(lambda k=kind: get(control_plane, k, "gone", namespace) is None, what=f"{kind} collected")
    eventually(
        lambda: not items(control_plane, "pods", namespace, "chutes.ai/chute=gone"), what="pods collected"
    )


def test_more_gpus_than_any_node_has_is_unschedulable_with_the_scheduler_message(
    operator: OperatorProcess, control_plane: Any, namespace: str
) -> None:
    apply(control_plane, chute("huge", nodeSelector={"gpuCount": 8, "include": ["l4"]}), namespace)
    status, _, message = eventually(
        lambda: (r := ready_reason(control_plane, "huge", namespace))[1] == "Unschedulable" and r,
        what="Unschedulable",
    )
    assert status == "False"
    assert "nvidia.com/gpu" in message
    assert "l4" in message


@pytest.mark.parametrize("behavior", ["ImagePullBackOff", "CrashLoopBackOff", "OOMKilled", "ProbeFailing"])
def test_a_failing_pod_shows_its_reason(
    operator: OperatorProcess, control_plane: Any, namespace: str, behavior: str
) -> None:
    name = f"fail-{behavior.lower()}"
    apply(control_plane, chute(name, pod={"annotations": {"sim.chutes.ai/behavior": behavior}}), namespace)
    status, _, message = eventually(
        lambda: (r := ready_reason(control_plane, name, namespace))[1] == behavior and r, what=behavior
    )
    assert status == "False"
    assert "pods:" in message
    assert behavior in {e["reason"] for e in events(control_plane, name, namespace)}


def test_a_slow_model_load_is_model_loading_then_serving(
    operator: OperatorProcess, control_plane: Any, namespace: str
) -> None:
    apply(control_plane, chute("slow", pod={"annotations": {"sim.chutes.ai/ready-after": "12"}}), namespace)
    status, _, message = eventually(
        lambda: (r := ready_reason(control_plane, "slow", namespace))[1] == "ModelLoading" and r,
        what="ModelLoading",
    )
    assert status == "False"
    assert "loading" in message
    degraded = condition(get(control_plane, "chute", "slow", namespace), "Degraded")
    assert degraded["status"] == "False"
    wait_ready(control_plane, "slow", namespace, timeout=90)


def test_spec_only_the_operator_can_judge_is_invalid_without_harming_others(
    operator: OperatorProcess, control_plane: Any, namespace: str
) -> None:
    apply(
        control_plane, chute("impossible", nodeSelector={"include": ["l4"], "minVramGbPerGpu": 80}), namespace
    )
    apply(control_plane, chute("neighbour"), namespace)
    status, _, message = eventually(
        lambda: (r := ready_reason(control_plane, "impossible", namespace))[1] == "InvalidSpec" and r,
        what="InvalidSpec",
    )
    assert status == "False"
    assert "minVramGbPerGpu=80" in message
    assert "InvalidSpec" in {e["reason"] for e in events(control_plane, "impossible", namespace)}
    assert get(control_plane, "deployment", "impossible", namespace) is None
    wait_ready(control_plane, "neighbour", namespace)
    assert operator.process is not None
    assert operator.process.poll() is None


def test_a_fresh_operator_writes_nothing_for_unchanged_chutes(
    operator: OperatorProcess, servicemonitor_api: None, control_plane: Any, namespace: str, tmp_path: Path
) -> None:
    """A restart in effect: a second, cold operator (own lease, this namespace only) takes a look."""
    apply(control_plane, chute("steady", minInstances=1, maxInstances=2), namespace)
    wait_ready(control_plane, "steady", namespace)
    # The HPA controller's first sync (up to 15 s after the HPA appears) writes the HPA's status, and
    # the Chute's Autoscaling condition follows it: wait for that before taking the versions.
    eventually(
        lambda: (
            condition(get(control_plane, "chute", "steady", namespace), "Autoscaling").get("status")
            in ("True", "False")
        ),
        what="the HPA's first report in the Autoscaling condition",
    )
    time.sleep(3)  # let the last status write settle
    assert set(versions(control_plane, "steady", namespace)) == {"chute", *CHILD_KINDS}
    assert_a_cold_operator_writes_nothing(control_plane, "steady", namespace, tmp_path)


def set_concurrency(cp: Any, name: str, namespace: str, concurrency: int) -> None:
    """Change the Chute and wait until its Deployment's sidecar carries the change."""
    cp.kubectl(
        "patch",
        "chute",
        name,
        "-n",
        namespace,
        "--type=merge",
        "-p",
        json.dumps({"spec": {"concurrency": concurrency}}),
    )

    def applied() -> bool:
        deployment = get(cp, "deployment", name, namespace) or {}
        sidecar = deployment["spec"]["template"]["spec"]["initContainers"][0]
        return f"--concurrency={concurrency}" in sidecar["args"]

    eventually(applied, what=f"concurrency {concurrency} applied")


def test_two_operators_never_both_write(
    operator: OperatorProcess, control_plane: Any, namespace: str, tmp_path: Path
) -> None:
    eventually(lambda: operator.metric("chute_operator_leader") == 1, what="main operator leading")
    standby = OperatorProcess(control_plane.kubeconfig, tmp_path, "op-standby").start()
    try:
        time.sleep(3)
        assert standby.metric("chute_operator_leader") == 0
        apply(control_plane, chute("pair"), namespace)
        wait_ready(control_plane, "pair", namespace)
        set_concurrency(control_plane, "pair", namespace, 5)
        assert standby.metric("chute_operator_api_writes_total") == 0
        assert operator.metric("chute_operator_api_writes_total") > 0
        operator.stop()  # a clean stop hands the lease over
        eventually(
            lambda: standby.metric("chute_operator_leader") == 1, timeout=30, what="standby takes over"
        )
        set_concurrency(control_plane, "pair", namespace, 6)
    finally:
        standby.stop()
        operator.start()


def test_a_serving_chute_stays_ready_through_a_scale_up_and_a_replaced_pod(
    operator: OperatorProcess, control_plane: Any, namespace: str
) -> None:
    """Each new pod takes 8 s to load its model; meanwhile the Chute serves, so Ready stays True."""
    loading = {"annotations": {"sim.chutes.ai/ready-after": "8"}}
    apply(
        control_plane, chute("steady-up", minInstances=2, maxInstances=2, replicas=1, pod=loading), namespace
    )
    wait_ready(control_plane, "steady-up", namespace, timeout=90)

    def ready_throughout(seconds: float) -> list[tuple[str, str]]:
        seen = []
        deadline = time.monotonic() + seconds
        while time.monotonic() < deadline:
            status, reason, _ = ready_reason(control_plane, "steady-up", namespace)
            seen.append((status, reason))
            time.sleep(0.5)
        return [s for s in seen if s[0] != "True"]

    control_plane.kubectl("scale", "chute", "steady-up", "-n", namespace, "--replicas=2")
    eventually(
        lambda: (
            (get(control_plane, "deployment", "steady-up", namespace) or {}).get("spec", {}).get("replicas")
            == 2
        ),
        what="Deployment scaled to 2",
    )
    assert ready_throughout(6) == []
    progressing = condition(get(control_plane, "chute", "steady-up", namespace), "Progressing")
    assert (progressing["status"], progressing["reason"]) in {
        ("True", "ModelLoading"),
        ("False", "RolloutComplete"),
    }
    eventually(
        lambda: (
            condition(get(control_plane, "chute", "steady-up", namespace), "Progressing")["reason"]
            == "RolloutComplete"
        ),
        what="both replicas available",
    )
    pods = items(control_plane, "pod", namespace, "chutes.ai/chute=steady-up")
    control_plane.kubectl("delete", "pod", "-n", namespace, pods[0]["metadata"]["name"], "--wait=false")
    assert ready_throughout(6) == []


def owner_uids(obj: dict[str, Any] | None) -> list[str]:
    return [ref["uid"] for ref in ((obj or {}).get("metadata") or {}).get("ownerReferences") or []]


def test_an_existing_service_of_the_chute_s_name_is_left_alone_and_reported(
    operator: OperatorProcess, control_plane: Any, namespace: str
) -> None:
    """A new user's story: a database Service named foo exists, then a Chute named foo is applied."""
    cp = control_plane
    cp.kubectl("create", "service", "clusterip", "foo", "--tcp=5432:5432", "-n", namespace)
    apply(cp, chute("foo"), namespace)
    apply(cp, chute("bar"), namespace)
    status, _, message = eventually(
        lambda: (r := ready_reason(cp, "foo", namespace))[1] == "ChildConflict" and r, what="ChildConflict"
    )
    assert status == "False"
    assert "Service foo" in message
    conflicts = [e for e in events(cp, "foo", namespace) if e["reason"] == "ChildConflict"]
    assert conflicts
    assert conflicts[0]["type"] == "Warning"
    assert "Service foo" in conflicts[0]["message"]
    uid = get(cp, "chute", "foo", namespace)["metadata"]["uid"]  # type: ignore[index]
    # the children that conflict with nothing are still applied, and owned
    for kind in ("deployment", "networkpolicy"):
        child = eventually(lambda k=kind: get(cp, k, "foo", namespace), what=f"{kind} foo")
        assert owner_uids(child) == [uid]
    service = get(cp, "service", "foo", namespace)
    assert service is not None
    assert [(p["port"], p["targetPort"]) for p in service["spec"]["ports"]] == [(5432, 5432)]
    assert service["spec"]["selector"] == {"app": "foo"}
    assert owner_uids(service) == []
    wait_ready(cp, "bar", namespace)  # a neighbour is not harmed
    cp.kubectl("delete", "chute", "foo", "-n", namespace)
    eventually(lambda: get(cp, "deployment", "foo", namespace) is None, what="Deployment collected")
    left = get(cp, "service", "foo", namespace)
    assert left is not None
    assert left["metadata"]["uid"] == service["metadata"]["uid"]
    assert [p["port"] for p in left["spec"]["ports"]] == [5432]


def test_once_the_object_in_the_way_is_gone_the_chute_creates_its_own(
    operator: OperatorProcess, control_plane: Any, namespace: str
) -> None:
    """The object in the way is not watched (it lacks the operator's labels): the Chute looks again."""
    cp = control_plane
    cp.kubectl("create", "service", "clusterip", "later", "--tcp=5432:5432", "-n", namespace)
    apply(cp, chute("later"), namespace)
    eventually(lambda: ready_reason(cp, "later", namespace)[1] == "ChildConflict", what="ChildConflict")
    cp.kubectl("delete", "service", "later", "-n", namespace)
    found = wait_ready(cp, "later", namespace, timeout=180)
    service = get(cp, "service", "later", namespace)
    assert owner_uids(service) == [found["metadata"]["uid"]]
    assert 5432 not in [p["port"] for p in (service or {})["spec"]["ports"]]


def test_removing_fields_from_a_chute_removes_them_from_its_children(
    operator: OperatorProcess, control_plane: Any, namespace: str
) -> None:
    cp = control_plane
    priority = f"{namespace}-high"
    cp.kubectl("create", "priorityclass", priority, "--value=1000")
    try:
        full = chute(
            "trim",
            resources={"cpu": "2", "memory": "8Gi"},
            pod={"priorityClassName": priority},
            env=[{"name": "KEEP", "value": "1"}, {"name": "DROP", "value": "2"}],
            service={"annotations": {"team": "ml", "drop.example.com/me": "yes"}},
        )
        apply(cp, full, namespace)
        wait_ready(cp, "trim", namespace)

        def children() -> tuple[dict[str, Any], dict[str, Any], dict[str, Any]]:
            deployment = get(cp, "deployment", "trim", namespace) or {}
            pod = deployment["spec"]["template"]["spec"]
            model = next(c for c in pod["containers"] if c["name"] == "model")
            return pod, model, (get(cp, "service", "trim", namespace) or {})

        pod, model, service = children()
        assert pod["priorityClassName"] == priority
        assert model["resources"]["requests"]["cpu"] == "2"
        assert {"KEEP", "DROP"} <= {e["name"] for e in model["env"]}
        assert service["metadata"]["annotations"]["drop.example.com/me"] == "yes"

        trimmed = chute(
            "trim",
            resources={"memory": "8Gi"},
            env=[{"name": "KEEP", "value": "1"}],
            service={"annotations": {"team": "ml"}},
        )
        apply(cp, trimmed, namespace)  # kubectl apply drops the fields the file no longer has

        def removed() -> bool:
            pod, model, service = children()
            return (
                "priorityClassName" not in pod
                and "cpu" not in model["resources"].get("requests", {})
                and "DROP" not in {e["name"] for e in model.get("env", [])}
                and "drop.example.com/me" not in service["metadata"].get("annotations", {})
            )

        eventually(removed, what="removed fields gone from the Deployment and the Service")
        pod, model, service = children()
        assert "KEEP" in {e["name"] for e in model["env"]}
        assert model["resources"]["requests"]["memory"] == "8Gi"
        assert service["metadata"]["annotations"]["team"] == "ml"
        found = wait_ready(cp, "trim", namespace)
        assert found["status"]["observedGeneration"] == found["metadata"]["generation"]
    finally:
        cp.kubectl("delete", "priorityclass", priority, "--ignore-not-found", check=False)


def test_a_child_that_cannot_be_applied_stops_neither_the_others_nor_the_report(
    operator: OperatorProcess, control_plane: Any, namespace: str
) -> None:
    """A quota refuses the Service and the NetworkPolicy: the HPA is still applied, the Deployment
    is held back (never run without its NetworkPolicy), and both refusals are reported."""
    cp = control_plane
    quota = {
        "apiVersion": "v1",
        "kind": "ResourceQuota",
        "metadata": {"name": "refuse"},
        "spec": {"hard": {"services": "0", "count/networkpolicies.networking.k8s.io": "0"}},
    }
    apply(cp, quota, namespace)
    eventually(
        lambda: ((get(cp, "resourcequota", "refuse", namespace) or {}).get("status") or {}).get("hard"),
        what="quota in force",
    )
    apply(cp, chute("blocked", minInstances=1, maxInstances=2), namespace)
    status, _, message = eventually(
        lambda: (r := ready_reason(cp, "blocked", namespace))[1] == "ApplyFailed" and r, what="ApplyFailed"
    )
    assert status == "False"
    assert "Service blocked" in message
    assert "NetworkPolicy blocked" in message
    assert "exceeded quota" in message
    assert get(cp, "horizontalpodautoscaler", "blocked", namespace) is not None
    assert get(cp, "deployment", "blocked", namespace) is None
    reported = " ".join(e["message"] for e in events(cp, "blocked", namespace) if e["type"] == "Warning")
    assert "Service blocked" in reported
    assert "NetworkPolicy blocked" in reported

    cp.kubectl("delete", "resourcequota", "refuse", "-n", namespace)
    wait_ready(cp, "blocked", namespace, timeout=180)
    for kind in ("deployment", "service", "horizontalpodautoscaler", "networkpolicy"):
        assert get(cp, kind, "blocked", namespace) is not None, kind
