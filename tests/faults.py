"""Fault scenarios on the local control plane, shared by tests/e2e/test_faults.py (small) and
benchmarks/chaos.py (the full runs): kill -9 during churn, control-plane restarts, leader failover,
throttling. Each returns its measurements; :func:`problems` says how the end state differs from the spec.
"""

from __future__ import annotations

import json
import os
import random
import signal
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import yaml

from chute_devcluster.binaries import ensure_binaries
from chute_devcluster.controlplane import ControlPlane
from chute_devcluster.nodes import NodePool
from chute_operator.gpus import builtin_catalog
from chute_operator.render import render
from chute_operator.validation import parse_chute
from chute_operator.workload import RenderOptions
from chute_shared.cluster import CHUTE_LABEL
from tests.operator_fixtures import ROOT, OperatorProcess

CHILD_RESOURCES = {
    "Deployment": "deployments.apps",
    "Service": "services",
    "HorizontalPodAutoscaler": "horizontalpodautoscalers.autoscaling",
    "NetworkPolicy": "networkpolicies.networking.k8s.io",
}
WRITE_KINDS = ("Deployment", "Service", "HorizontalPodAutoscaler", "NetworkPolicy", "Chute/status", "Event")
OPTIONS = RenderOptions(catalog=builtin_catalog())


def plane_of_its_own(work_dir: Path, pool: NodePool, namespace: str) -> Iterator[ControlPlane]:
    """A control plane of its own (faults restart and stop its parts), with the Chute CRD and
    ``namespace``; stopped at the end."""
    plane = ControlPlane(work_dir=work_dir, tools=ensure_binaries(), node_pools=[pool])
    plane.start()
    try:
        plane.kubectl("apply", "--server-side", "-f", str(ROOT / "crds" / "chute.yaml"))
        plane.kubectl("wait", "--for=condition=Established", "--timeout=60s", "crd/chutes.chutes.ai")
        plane.kubectl("create", "namespace", namespace)
        yield plane
    finally:
        plane.stop()


def chaos_chute(name: str, namespace: str, concurrency: int = 8, max_instances: int = 1) -> dict[str, Any]:
    """A small CPU-only Chute (fits the simulated cpu node), no ServiceMonitor."""
    return {
        "apiVersion": "chutes.ai/v1alpha1",
        "kind": "Chute",
        "metadata": {"name": name, "namespace": namespace},
        "spec": {
            "image": "ghcr.io/huggingface/text-embeddings-inference:cpu-1.8",
            "template": "tei",
            "model": {"name": "sentence-transformers/all-MiniLM-L6-v2"},
            "nodeSelector": {"gpuCount": 0},
            "resources": {"cpu": "10m", "memory": "16Mi"},
            "concurrency": concurrency,
            "minInstances": 1,
            "maxInstances": max_instances,
            "monitoring": {"serviceMonitor": False},
        },
    }


def apply_chutes(cp: Any, documents: list[dict[str, Any]]) -> None:
    if documents:
        cp.kubectl("apply", "-f", "-", input="\n---\n".join(json.dumps(d) for d in documents), timeout=300)


def _list(cp: Any, resource: str, namespace: str, selector: str = "") -> list[dict[str, Any]]:
    args = ["get", resource, "-n", namespace, "-o", "json"] + (["-l", selector] if selector else [])
    result = cp.kubectl(*args, check=False)
    return list(json.loads(result.stdout)["items"]) if result.returncode == 0 else []


def _ready(chute: dict[str, Any]) -> bool:
    return any(
        c.get("type") == "Ready" and c.get("status") == "True"
        for c in (chute.get("status") or {}).get("conditions") or []
    )


def problems(cp: Any, namespace: str, expected: dict[str, dict[str, Any]]) -> list[str]:
    """How the namespace differs from ``expected`` (name -> Chute document); empty when converged.

    Every expected Chute exists, is Ready for its current generation, and owns exactly the children
    the offline render gives (no orphan, no duplicate, none of a deleted Chute); its Deployment carries
    the spec's concurrency.
    """
    found: list[str] = []
    chutes = {c["metadata"]["name"]: c for c in _list(cp, "chutes.chutes.ai", namespace)}
    if set(chutes) != set(expected):
        found.append(f"chutes {sorted(set(chutes) ^ set(expected))} differ from the spec")
    uids = {c["metadata"]["uid"]: name for name, c in chutes.items()}
    wanted: set[tuple[str, str, str]] = set()
    for name, document in expected.items():
        chute = chutes.get(name)
        if chute is None:
            continue
        status = chute.get("status") or {}
        if status.get("observedGeneration") != chute["metadata"]["generation"] or not _ready(chute):
            found.append(f"{name}: not Ready at generation {chute['metadata']['generation']}")
        for manifest in render(parse_chute(document), OPTIONS):
            if manifest["kind"] in CHILD_RESOURCES:
                wanted.add((manifest["kind"], manifest["metadata"]["name"], chute["metadata"]["uid"]))
    have: set[tuple[str, str, str]] = set()
    for kind, resource in CHILD_RESOURCES.items():
        for child in _list(cp, resource, namespace, CHUTE_LABEL):
            owners = [r["uid"] for r in child["metadata"].get("ownerReferences") or []]
            if len(owners) != 1 or owners[0] not in uids:
                found.append(f"orphan {kind} {child['metadata']['name']} (owners {owners})")
                continue
            have.add((kind, child["metadata"]["name"], owners[0]))
            if kind == "Deployment":
                spec = expected[uids[owners[0]]]["spec"]
                args = child["spec"]["template"]["spec"]["initContainers"][0]["args"]
                if f"--concurrency={spec['concurrency']}" not in args:
                    name = child["metadata"]["name"]
                    found.append(f"Deployment {name}: concurrency not {spec['concurrency']}")
    found += [f"missing {k} {n}" for k, n, _ in sorted(wanted - have)]
    found += [f"extra {k} {n}" for k, n, _ in sorted(have - wanted)]
    return found


def converge(cp: Any, namespace: str, expected: dict[str, dict[str, Any]], timeout: float) -> float:
    """Seconds until :func:`problems` is empty; AssertionError with the problems after ``timeout``."""
    started = time.monotonic()
    while True:
        found = problems(cp, namespace, expected)
        if not found:
            return time.monotonic() - started
        if time.monotonic() - started > timeout:
            raise AssertionError(f"not converged after {timeout:.0f}s: {found[:20]}")
        time.sleep(1)


def writes(operator: OperatorProcess) -> dict[str, float]:
    """The operator's API writes so far, by kind."""
    return {kind: operator.metric("chute_operator_api_writes_total", kind=kind) for kind in WRITE_KINDS}


def delta(after: dict[str, float], before: dict[str, float]) -> dict[str, float]:
    return {kind: after[kind] - before.get(kind, 0) for kind in after if after[kind] - before.get(kind, 0)}


# -- (a) kill -9 during churn ------------------------------------------------------------------------


class Churn:
    """Random creates, updates (concurrency, maxInstances) and deletes; ``expected`` is the spec."""

    def __init__(self, cp: Any, namespace: str, rng: random.Random) -> None:
        self.cp, self.namespace, self.rng = cp, namespace, rng
        self.expected: dict[str, dict[str, Any]] = {}
        self.counter = 0
        self.counts = {"create": 0, "update": 0, "delete": 0}

    def create(self) -> None:
        self.counter += 1
        name = f"chaos-{self.counter:04d}"
        document = chaos_chute(name, self.namespace, self.rng.randint(1, 64), self.rng.choice((1, 2)))
        apply_chutes(self.cp, [document])
        self.expected[name] = document
        self.counts["create"] += 1

    def step(self) -> None:
        """One operation: a create while there are few Chutes, else a random one."""
        choices = ("create", "update", "update", "delete")
        choice = "create" if len(self.expected) < 3 else self.rng.choice(choices)
        if choice == "create":
            self.create()
            return
        name = self.rng.choice(sorted(self.expected))
        if choice == "delete":
            self.cp.kubectl("delete", "chute", name, "-n", self.namespace, "--wait=false")
            del self.expected[name]
        else:
            spec = self.expected[name]["spec"]
            document = chaos_chute(
                name, self.namespace, self.rng.randint(1, 64), self.rng.choice((1, 2, spec["maxInstances"]))
            )
            apply_chutes(self.cp, [document])
            self.expected[name] = document
        self.counts[choice] += 1


def kill_during_churn(
    cp: Any,
    namespace: str,
    operator: OperatorProcess,
    operations: int,
    kills: int,
    seed: int,
    timeout: float = 300,
) -> dict[str, Any]:
    """``operations`` random changes while ``kills`` SIGKILLs (each followed by a restart) land at random
    moments; then the namespace must converge to the spec."""
    rng = random.Random(seed)
    churn = Churn(cp, namespace, rng)
    done = threading.Event()
    killed: list[float] = []
    errors: list[BaseException] = []

    def killer() -> None:
        try:
            for _ in range(kills):
                time.sleep(rng.uniform(0.2, 2.0))
                assert operator.process is not None
                os.kill(operator.process.pid, signal.SIGKILL)
                operator.process.wait()
                killed.append(time.monotonic())
                operator.start()
        except BaseException as error:  # reported by the main thread
            errors.append(error)
        finally:
            done.set()

    started = time.monotonic()
    thread = threading.Thread(target=killer, daemon=True)
    thread.start()
    for _ in range(operations):
        churn.step()
        time.sleep(rng.uniform(0, 0.3))
    done.wait(600)
    thread.join(5)
    if errors:
        raise errors[0]
    churned = time.monotonic() - started
    seconds = converge(cp, namespace, churn.expected, timeout)
    return {
        "operations": churn.counts,
        "kills": len(killed),
        "chutes_at_end": len(churn.expected),
        "churn_seconds": round(churned, 1),
        "seconds_to_converge_after_churn": round(seconds, 1),
        "problems_at_end": 0,
    }


# -- (b) control-plane restarts ---------------------------------------------------------------------


def restart_component(
    cp: Any,
    namespace: str,
    operator: OperatorProcess,
    component: str,
    expected: dict[str, dict[str, Any]],
    settle: float = 8.0,
) -> dict[str, Any]:
    """Restart ``component`` (kube-apiserver or etcd) under a running operator, change one Chute right after,
    and count what the operator wrote: the change only (nothing for the untouched Chutes)."""
    converge(cp, namespace, expected, 120)
    time.sleep(settle)
    before = writes(operator)
    down = cp.restart(component)
    name = sorted(expected)[0]
    changed = chaos_chute(name, namespace, expected[name]["spec"]["concurrency"] % 64 + 1)
    changed_at = time.monotonic()
    apply_chutes(cp, [changed])
    expected[name] = changed
    seconds = converge(cp, namespace, expected, 180)
    time.sleep(settle)
    written = delta(writes(operator), before)
    return {
        "component": component,
        "seconds_down": round(down, 1),
        "seconds_change_to_converged": round(time.monotonic() - changed_at - settle, 1),
        "seconds_to_converge": round(seconds, 1),
        "writes_after_restart": written,
        "operator_alive": operator.process is not None and operator.process.poll() is None,
    }


# -- (c) leader failover ----------------------------------------------------------------------------


def failover(
    cp: Any,
    namespace: str,
    leader: OperatorProcess,
    standby: OperatorProcess,
    expected: dict[str, dict[str, Any]],
) -> dict[str, Any]:
    """SIGKILL the leader; measure until the standby leads; the standby wrote nothing before that."""
    wait_for(lambda: leader.metric("chute_operator_leader") == 1, 60, "leader elected")
    converge(cp, namespace, expected, 120)
    standby_writes_before = sum(writes(standby).values())
    assert leader.process is not None
    os.kill(leader.process.pid, signal.SIGKILL)
    killed = time.monotonic()
    leader.process.wait()
    early_writes = 0.0
    while standby.metric("chute_operator_leader") != 1:
        early_writes = max(early_writes, sum(writes(standby).values()))
        if time.monotonic() - killed > 120:
            raise AssertionError("the standby did not take over within 120 s")
        time.sleep(0.1)
    takeover = time.monotonic() - killed
    name = sorted(expected)[0]
    expected[name] = chaos_chute(name, namespace, expected[name]["spec"]["concurrency"] % 64 + 1)
    apply_chutes(cp, [expected[name]])
    converge(cp, namespace, expected, 120)
    return {
        "seconds_to_take_over": round(takeover, 2),
        "standby_writes_while_standby": standby_writes_before + early_writes,
    }


def wait_for(probe: Callable[[], bool], timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while not probe():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout:.0f}s: {what}")
        time.sleep(0.3)


# -- (d) throttling: an identity the API server limits ----------------------------------------------


def service_account_kubeconfig(cp: Any, path: Path) -> Path:
    """A kubeconfig for a cluster-admin ServiceAccount: unlike the admin (system:masters), its requests
    count against --max-requests-inflight."""
    cp.kubectl("create", "serviceaccount", "chaos-operator", "-n", "default")
    cp.kubectl(
        "create",
        "clusterrolebinding",
        "chaos-operator",
        "--clusterrole=cluster-admin",
        "--serviceaccount=default:chaos-operator",
    )
    token = cp.kubectl("create", "token", "chaos-operator", "-n", "default", "--duration=2h").stdout.strip()
    config = yaml.safe_load(Path(cp.kubeconfig).read_text())
    context = config["contexts"][0]["context"]
    config["users"] = [{"name": "chaos-operator", "user": {"token": token}}]
    context["user"] = "chaos-operator"
    path.write_text(yaml.safe_dump(config))
    return path


def apiserver_429s(cp: Any) -> float:
    """Requests the API server answered 429 so far."""
    text = cp.kubectl("get", "--raw", "/metrics").stdout
    total = 0.0
    for line in text.splitlines():
        if line.startswith("apiserver_request_total{") and 'code="429"' in line:
            total += float(line.rsplit(" ", 1)[1])
    return total
