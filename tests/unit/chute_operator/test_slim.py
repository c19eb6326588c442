"""What the store keeps of each object (store.slim), and proof that every reader still finds its fields.

The objects are a benchmark Chute's Deployment and Pod as the API server and kwok made them
(tests/data/store/bench-children.json: ``kubectl get -o json --show-managed-fields``); the pod's
failure states are derived from it. Each reader runs on the full object and on its slimmed copy and
must answer the same.
"""

from __future__ import annotations

import copy
import json
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from chute_operator.drift import drifted
from chute_operator.gpus import builtin_catalog
from chute_operator.metricsapi.query import PodQuery, answer_pods
from chute_operator.metricsapi.samples import Sample, Samples
from chute_operator.metricsapi.targets import plan
from chute_operator.plan import owns_replicas
from chute_operator.render import render
from chute_operator.rollout import observe
from chute_operator.settled import template_digest
from chute_operator.status import Observation, compute_status, pod_problem
from chute_operator.store import Store, chute_of, slim
from chute_operator.validation import parse_chute
from chute_operator.workload import RenderOptions, resolve
from chute_operator.zero import idle_for, ready_pods, wants_activator
from tests.chutes import cpu_chute

CAPTURED = json.loads((Path(__file__).parents[2] / "data" / "store" / "bench-children.json").read_text())
NOW = datetime(2026, 12, 2, 11, 50, tzinfo=UTC)
CHUTE = cpu_chute("bench-0001", {"namespace": "bench"})  # the Chute the captured children belong to
OPTIONS = RenderOptions(catalog=builtin_catalog(), sidecar_image="chute-operator:test")


def _pod(**change: Any) -> dict[str, Any]:
    pod: dict[str, Any] = copy.deepcopy(CAPTURED["Pod"])
    for path, value in change.items():
        *parents, last = path.split("__")
        target = pod
        for part in parents:
            target = target[int(part)] if isinstance(target, list) else target[part]
        target[last] = value
    return pod


def _model_state(**state: Any) -> dict[str, Any]:
    return {**CAPTURED["Pod"]["status"]["containerStatuses"][0], **state}


def _not_ready(pod: dict[str, Any]) -> dict[str, Any]:
    for condition in pod["status"]["conditions"]:
        if condition["type"] in ("Ready", "ContainersReady"):
            condition["status"] = "False"
    return pod


POD_STATES = {
    "ready": _pod(),
    "loading": _not_ready(_pod(status__containerStatuses=[_model_state(ready=False, started=False)])),
    "probe failing": _not_ready(_pod(status__containerStatuses=[_model_state(ready=False, started=True)])),
    "crash loop": _not_ready(
        _pod(
            status__containerStatuses=[
                _model_state(
                    ready=False,
                    restartCount=3,
                    state={"waiting": {"reason": "CrashLoopBackOff", "message": "back-off"}},
                    lastState={"terminated": {"exitCode": 1, "reason": "Error"}},
                )
            ]
        )
    ),
    "image pull": _not_ready(
        _pod(
            status__initContainerStatuses=[
                {
                    **CAPTURED["Pod"]["status"]["initContainerStatuses"][0],
                    "ready": False,
                    "state": {"waiting": {"reason": "ImagePullBackOff", "message": "no such image"}},
                }
            ]
        )
    ),
    "oom killed": _not_ready(
        _pod(
            status__containerStatuses=[
                _model_state(
                    ready=False,
                    restartCount=1,
                    lastState={"terminated": {"reason": "OOMKilled", "finishedAt": "2026-12-02T11:49:00Z"}},
                )
            ]
        )
    ),
    "unschedulable": _pod(
        spec__nodeName=None,
        status={
            "phase": "Pending",
            "conditions": [
                {
                    "type": "PodScheduled",
                    "status": "False",
                    "reason": "Unschedulable",
                    "message": "0/2 nodes are available: 2 Insufficient nvidia.com/gpu.",
                    "lastTransitionTime": (NOW - timedelta(seconds=30)).strftime("%Y-%m-%dT%H:%M:%SZ"),
                }
            ],
        },
    ),
    "being deleted": _pod(metadata__deletionTimestamp="2026-12-02T11:49:30Z"),
}


def test_a_pod_keeps_only_what_its_readers_use() -> None:
    """Named here on purpose: a new reader of another pod field must add it to store.POD_* and here."""
    pod = POD_STATES["crash loop"]
    kept = slim("Pod", pod)
    assert set(kept) == {"apiVersion", "kind", "metadata", "spec", "status"}
    assert set(kept["metadata"]) == {"name", "namespace", "uid", "resourceVersion", "labels"}
    assert set(kept["spec"]) == {"nodeName", "initContainers", "containers"}
    assert all(set(c) == {"name", "ports"} for c in kept["spec"]["containers"])
    assert all(set(c) == {"name", "ports", "image"} for c in kept["spec"]["initContainers"])  # sidecars.py
    assert set(kept["status"]) == {
        "phase",
        "podIP",
        "conditions",
        "containerStatuses",
        "initContainerStatuses",
    }
    assert all(
        set(c) == {"name", "ready", "started", "restartCount", "state", "lastState"}
        for c in kept["status"]["containerStatuses"] + kept["status"]["initContainerStatuses"]
    )
    assert kept["metadata"]["labels"] == pod["metadata"]["labels"]
    assert "deletionTimestamp" in slim("Pod", POD_STATES["being deleted"])["metadata"]
    job = {"apiVersion": "batch/v1", "kind": "Job", "name": "j", "uid": "u", "controller": True}
    download = {**pod, "metadata": {**pod["metadata"], "ownerReferences": [job]}}
    assert slim("Pod", download)["metadata"]["ownerReferences"] == [{"kind": "Job", "uid": "u"}]  # weights.py
    assert "managedFields" in pod["metadata"]  # the watch event's body is left alone
    assert slim("Pod", kept) == kept  # slimming twice (a listed object, then the store) changes nothing
    assert len(json.dumps(kept)) < len(json.dumps(pod)) / 5


@pytest.mark.parametrize("state", sorted(POD_STATES))
def test_every_reader_of_a_pod_answers_the_same_on_its_slimmed_copy(state: str) -> None:
    full = POD_STATES[state]
    slimmed = slim("Pod", full)
    deployment = CAPTURED["Deployment"]
    workload = resolve(parse_chute(CHUTE), OPTIONS)
    # status: each pod's problem, and the whole status computed from the Deployment and its pods
    assert pod_problem(slimmed, NOW) == pod_problem(full, NOW)
    for pods in ([full], [full, POD_STATES["ready"]]):
        observed = [Observation(1, "chutes.ai/chute=bench-0001", workload, deployment=deployment, pods=pods)]
        observed.append(Observation(**{**observed[0].__dict__, "pods": [slim("Pod", p) for p in pods]}))
        assert compute_status(observed[1], NOW) == compute_status(observed[0], NOW)
        # rollout: pods left without GPUs, pods being deleted
        assert observe(deployment, [slim("Pod", p) for p in pods]) == observe(deployment, pods)
        # scale to zero: readiness, idleness per pod, whether the activator takes the traffic
        assert ready_pods([slim("Pod", p) for p in pods]) == [slim("Pod", p) for p in ready_pods(pods)]
        assert idle_for([slim("Pod", p) for p in pods], lambda ns, name: 42.0) == idle_for(
            pods, lambda ns, name: 42.0
        )
        zero_workload = resolve(parse_chute({**CHUTE, "spec": {**CHUTE["spec"], "minInstances": 0}}), OPTIONS)
        assert wants_activator(zero_workload, deployment, [slim("Pod", p) for p in pods]) == wants_activator(
            zero_workload, deployment, pods
        )
    # metrics API: which sidecar is read at which address (real node or simulated), and label selectors
    for simulated in ({"sim-cpu-0": False}.get, {"sim-cpu-0": True}.get):  # None: a node not known
        assert plan([slimmed], simulated) == plan([full], simulated)
    samples = Samples(max_age=10)
    samples.record(("bench", full["metadata"]["name"]), Sample(0.5, read_at=100.0, timestamp=1.0))
    query = PodQuery("bench", "*", "chute_utilization_ratio", "chutes.ai/chute=bench-0001")
    assert answer_pods(query, [slimmed], samples, {}, 101.0, 30) == answer_pods(
        query, [full], samples, {}, 101.0, 30
    )
    # the store's own index
    assert chute_of(slimmed) == chute_of(full) == "bench-0001"


def test_a_ready_pod_on_a_real_node_is_still_read_at_its_sidecar_metrics_port() -> None:
    targets, skipped = plan([slim("Pod", POD_STATES["ready"])], {"sim-cpu-0": False}.get)
    assert skipped == {}
    assert [t.address for t in targets] == ["10.244.0.1:9090"]


def test_a_deployment_keeps_its_spec_for_drift_and_of_its_managed_fields_only_who_applied_replicas() -> None:
    full = CAPTURED["Deployment"]
    slimmed = slim("Deployment", full)
    assert {k: v for k, v in slimmed["metadata"].items() if k != "managedFields"} == {
        k: v for k, v in full["metadata"].items() if k != "managedFields"
    }
    assert slimmed["spec"] == full["spec"]
    assert slimmed["status"] == full["status"]
    assert slimmed["metadata"]["managedFields"] == [
        {"manager": "chute-operator", "operation": "Apply", "fieldsV1": {}}
    ]  # an autoscaled Chute: the operator leaves replicas to the HPA
    assert slim("Deployment", slimmed) == slimmed
    with_replicas = copy.deepcopy(full)
    applied = next(e for e in with_replicas["metadata"]["managedFields"] if e["operation"] == "Apply")
    applied["fieldsV1"]["f:spec"]["f:replicas"] = {}
    assert slim("Deployment", with_replicas)["metadata"]["managedFields"] == [
        {"manager": "chute-operator", "operation": "Apply", "fieldsV1": {"f:spec": {"f:replicas": {}}}}
    ]
    for deployment in (full, with_replicas):
        for manager in ("chute-operator", "someone-else"):
            assert owns_replicas(slim("Deployment", deployment), manager) == owns_replicas(
                deployment, manager
            )
    assert owns_replicas(slim("Deployment", with_replicas), "chute-operator")
    assert template_digest(slimmed) == template_digest(full)
    rendered = next(m for m in render(parse_chute(CHUTE), OPTIONS) if m["kind"] == "Deployment")
    changed = copy.deepcopy(rendered)
    changed["spec"]["template"]["spec"]["containers"][0]["image"] = "other:1"
    for desired in (rendered, changed):
        assert drifted(desired, slimmed) == drifted(desired, full)
    assert drifted(changed, slimmed)


def test_the_store_holds_slimmed_objects_whatever_way_they_arrive() -> None:
    store = Store()
    store.put("Pod", POD_STATES["ready"])
    store.replace("Deployment", [CAPTURED["Deployment"]], "1")
    assert store.get("Pod", ("bench", POD_STATES["ready"]["metadata"]["name"])) == slim(
        "Pod", POD_STATES["ready"]
    )
    assert store.get("Deployment", ("bench", "bench-0001")) == slim("Deployment", CAPTURED["Deployment"])
    assert store.children("Pod", ("bench", "bench-0001")) == [slim("Pod", POD_STATES["ready"])]
