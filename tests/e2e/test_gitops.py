"""What Argo CD and kstatus make of live Chutes, and GPU-safe rollouts on the simulated GPU nodes."""

from __future__ import annotations

import json
import secrets
from pathlib import Path
from typing import Any

import pytest

from tests.gitops import argocd
from tests.gitops.doc_table import state_table
from tests.gitops.kstatus import compute
from tests.gitops.states import FULL_NODE, IMAGE, NEW_IMAGE, STATES, State, chute
from tests.kube_helpers import apply, condition, eventually, get, items
from tests.operator_fixtures import OperatorProcess

pytestmark = pytest.mark.e2e
LIVE_STATES = [state for state in STATES if not state.needs_operator_stopped]


@pytest.fixture(scope="module")
def live_states(operator: OperatorProcess, control_plane: Any) -> dict[str, dict[str, Any] | str]:
    """Every live state at once, in one namespace (they use disjoint GPU pools): fixture -> the Chute
    as it was when it reached its state, or why it did not. The namespace is gone before any test
    of this module runs, so the pool tests below find their pools free."""
    name = f"t-gitops-states-{secrets.token_hex(3)}"
    control_plane.kubectl("create", "namespace", name)
    control_plane.kubectl("label", "namespace", name, "chutes.ai/test=true")
    eventually(lambda: get(control_plane, "serviceaccount", "default", name), what="default ServiceAccount")
    for pool in sorted({state.pool for state in LIVE_STATES if state.pool}):
        eventually(lambda p=pool: _pool_free(control_plane, p), what=f"free {pool} nodes", timeout=120)
    found: dict[str, dict[str, Any] | str] = {}
    try:
        for state in LIVE_STATES:
            state.create(control_plane, name)
        for state in LIVE_STATES:
            try:
                found[state.fixture] = state.reach(control_plane, name, create=False)
            except AssertionError as error:
                found[state.fixture] = str(error)
    finally:
        control_plane.kubectl("delete", "namespace", name, "--wait=false", check=False)
    return found


@pytest.mark.parametrize("state", LIVE_STATES, ids=[s.fixture for s in LIVE_STATES])
def test_argocd_health_and_kstatus_of_the_live_chute_are_what_the_docs_say(
    live_states: dict[str, dict[str, Any] | str], kstatus_binary: Path, state: State
) -> None:
    live = live_states[state.fixture]
    if isinstance(live, str):
        pytest.fail(live, pytrace=False)
    expected = state_table()[state.fixture]
    shown = argocd.health(live)
    result = compute(kstatus_binary, live)
    assert (shown.status, result.status) == (expected.argocd, expected.kstatus), json.dumps(
        live["status"], indent=1
    )
    ready = condition(live, "Ready")
    assert ready["reason"] in shown.message or condition(live, "Available")["reason"] in shown.message


def test_kstatus_follows_a_new_generation_from_in_progress_to_current(
    operator: OperatorProcess, control_plane: Any, namespace: str, kstatus_binary: Path
) -> None:
    apply(control_plane, chute("gen"), namespace)
    eventually(
        lambda: (
            compute(kstatus_binary, get(control_plane, "chute", "gen", namespace) or {}).status == "Current"
            and condition(get(control_plane, "chute", "gen", namespace), "Ready").get("status") == "True"
        ),
        what="Current",
    )
    patch = {"spec": {"image": NEW_IMAGE, "pod": {"annotations": {"sim.chutes.ai/ready-after": "6"}}}}
    control_plane.kubectl("patch", "chute", "gen", "-n", namespace, "--type=merge", "-p", json.dumps(patch))
    seen = []

    def current() -> bool:
        obj = get(control_plane, "chute", "gen", namespace) or {}
        result = compute(kstatus_binary, obj)
        seen.append((obj["metadata"]["generation"], result.status))
        return obj["metadata"]["generation"] == 2 and result.status == "Current"

    eventually(current, what="Current for generation 2", timeout=120)
    assert (2, "InProgress") in seen
    assert "Failed" not in {status for _, status in seen}
    assert argocd.health(get(control_plane, "chute", "gen", namespace) or {}).status == "Healthy"


# GPU-safe rollouts. The two l40s nodes have 4 GPUs each; a Chute asking for 4 l40s GPUs per replica
# (FULL_NODE) fills one node per replica, so two replicas (or one and a filler) leave no spare GPU.


def _pool_free(cp: Any, pool: str) -> bool:
    """No pod runs on the simulated pool's nodes (sim-<pool>-N)."""
    pods = json.loads(cp.kubectl("get", "pods", "-A", "-o", "json").stdout)["items"]
    return not [
        p
        for p in pods
        if (p["spec"].get("nodeName") or "").startswith(f"sim-{pool}-")
        and not p["metadata"].get("deletionTimestamp")
    ]


def _images(cp: Any, name: str, namespace: str) -> list[str]:
    pods = items(cp, "pods", namespace, f"chutes.ai/chute={name}")
    return sorted(
        p["spec"]["containers"][0]["image"] for p in pods if not p["metadata"].get("deletionTimestamp")
    )


@pytest.mark.parametrize("strategy", ["Auto", "Replace"])
def test_a_rollout_on_a_full_gpu_pool_completes_by_replacing_pods(
    operator: OperatorProcess, control_plane: Any, namespace: str, kstatus_binary: Path, strategy: str
) -> None:
    eventually(lambda: _pool_free(control_plane, "l40s"), what="free l40s nodes", timeout=120)
    spec = {
        "nodeSelector": FULL_NODE,
        "minInstances": 2,
        "maxInstances": 2,
        "rollout": {"strategy": strategy},
    }
    apply(control_plane, chute("full", **spec), namespace)
    eventually(
        lambda: condition(get(control_plane, "chute", "full", namespace), "Ready").get("status") == "True",
        what="Ready on both l40s nodes",
    )
    control_plane.kubectl(
        "patch",
        "chute",
        "full",
        "-n",
        namespace,
        "--type=merge",
        "-p",
        json.dumps({"spec": {"image": NEW_IMAGE}}),
    )

    seen = []

    def rolled_out() -> bool:
        found = get(control_plane, "chute", "full", namespace) or {}
        seen.append((compute(kstatus_binary, found).status, argocd.health(found).status))
        ready = condition(found, "Ready")
        return (
            ready.get("status") == "True"
            and ready.get("observedGeneration") == 2
            and _images(control_plane, "full", namespace) == [NEW_IMAGE, NEW_IMAGE]
        )

    eventually(rolled_out, what="the rollout to complete on a full pool", timeout=120)
    assert [s for s in seen if s[0] == "Failed" or s[1] == "Degraded"] == [], (
        seen
    )  # never a failure meanwhile
    deployment = get(control_plane, "deployment", "full", namespace) or {}
    rolling = deployment["spec"]["strategy"]["rollingUpdate"]
    expected = (
        {"maxSurge": 1, "maxUnavailable": 0} if strategy == "Auto" else {"maxSurge": 0, "maxUnavailable": 1}
    )
    eventually(
        lambda: (
            (get(control_plane, "deployment", "full", namespace) or {})["spec"]["strategy"]["rollingUpdate"]
            == expected
        ),
        what=f"{strategy}: the budget after the rollout ({rolling} now)",
    )


def test_a_single_replica_on_a_full_gpu_pool_reports_no_spare_gpu_and_keeps_serving(
    operator: OperatorProcess, control_plane: Any, namespace: str, kstatus_binary: Path
) -> None:
    eventually(lambda: _pool_free(control_plane, "l40s"), what="free l40s nodes", timeout=120)
    apply(control_plane, chute("filler", nodeSelector=FULL_NODE), namespace)
    apply(control_plane, chute("single", nodeSelector=FULL_NODE), namespace)
    for name in ("filler", "single"):
        eventually(
            lambda n=name: (
                condition(get(control_plane, "chute", n, namespace), "Ready").get("status") == "True"
            ),
            what=f"{name} Ready",
        )
    control_plane.kubectl(
        "patch",
        "chute",
        "single",
        "-n",
        namespace,
        "--type=merge",
        "-p",
        json.dumps({"spec": {"image": NEW_IMAGE}}),
    )
    progressing = eventually(
        lambda: (
            (c := condition(get(control_plane, "chute", "single", namespace), "Progressing")).get("reason")
            == "NoSpareGpu"
            and c
        ),
        what="Progressing=False NoSpareGpu",
    )
    assert progressing["status"] == "False"
    assert "l40s" in progressing["message"]
    live = get(control_plane, "chute", "single", namespace) or {}
    assert condition(live, "Available")["status"] == "True"
    assert IMAGE in _images(control_plane, "single", namespace)
    assert compute(kstatus_binary, live).status == "Failed"
    assert argocd.health(live).status == "Degraded"
    control_plane.kubectl("delete", "chute", "filler", "-n", namespace)
    eventually(
        lambda: (
            condition(get(control_plane, "chute", "single", namespace), "Ready").get("status") == "True"
            and _images(control_plane, "single", namespace) == [NEW_IMAGE]
        ),
        what="the rollout completes once a GPU is free",
        timeout=120,
    )
