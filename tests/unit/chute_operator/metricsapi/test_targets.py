"""Which sidecars the scraper dials: ready pods on real nodes only; simulated and unknown nodes never."""

from __future__ import annotations

from typing import Any

from chute_devcluster.nodes import SIMULATED_LABEL, default_node_pools, node_manifests
from chute_devcluster.realnode_config import RealNodeSettings
from chute_operator.metricsapi.targets import (
    SKIPPED_NO_ADDRESS,
    SKIPPED_NODE_UNKNOWN,
    SKIPPED_NOT_READY,
    SKIPPED_SIMULATED,
    Target,
    is_loopback,
    is_simulated_node,
    metrics_port,
    plan,
)
from chute_shared.cluster import SIDECAR_CONTAINER

NODES = {"real-1": False, "sim-h100-0": True}


def pod(
    name: str,
    node: str = "real-1",
    ready: bool = True,
    ip: str | None = "127.0.0.1",
    ports: tuple[tuple[str, int], ...] = (("http", 8080), ("metrics", 9090), ("admin", 9091)),
    deleting: bool = False,
) -> dict[str, Any]:
    meta: dict[str, Any] = {"namespace": "ns", "name": name}
    if deleting:
        meta["deletionTimestamp"] = "2026-01-01T00:00:00Z"
    return {
        "metadata": meta,
        "spec": {
            "nodeName": node,
            "initContainers": [
                {"name": SIDECAR_CONTAINER, "ports": [{"name": n, "containerPort": p} for n, p in ports]}
            ],
            "containers": [{"name": "model", "ports": [{"name": "model", "containerPort": 8000}]}],
        },
        "status": {
            "phase": "Running",
            "podIP": ip,
            "conditions": [{"type": "Ready", "status": "True" if ready else "False"}],
        },
    }


def test_every_simulated_node_of_the_devcluster_is_recognised() -> None:
    nodes = node_manifests(default_node_pools())
    assert nodes
    assert all(is_simulated_node(node) for node in nodes)
    assert not is_simulated_node({"metadata": {"name": "worker", "labels": {"type": "gpu"}}})
    assert is_simulated_node({"metadata": {"name": "x", "labels": {SIMULATED_LABEL: "true"}}})
    real = RealNodeSettings()
    assert not is_simulated_node({"metadata": {"name": real.name, "labels": real.labels()}})


def test_ready_pod_on_a_real_node_is_read_at_its_sidecar_port() -> None:
    targets, skipped = plan([pod("a")], NODES.get)
    assert targets == [Target("ns", "a", "127.0.0.1:9090")]
    assert skipped == {}


def test_only_the_metrics_port_is_read_never_admin() -> None:
    ports = (("http", 8080), ("admin", 9090), ("metrics", 9091))
    assert metrics_port(pod("a", ports=ports)) == 9091
    assert metrics_port(pod("a", ports=(("http", 8080), ("admin", 9091)))) is None
    assert metrics_port(pod("a", ports=(("http", 8080),))) is None


def test_pods_on_simulated_or_unknown_nodes_are_never_dialled() -> None:
    pods = [pod("sim", node="sim-h100-0", ip="10.244.0.7"), pod("unknown", node="new-node")]
    targets, skipped = plan(pods, NODES.get)
    assert targets == []
    assert skipped == {("ns", "sim"): SKIPPED_SIMULATED, ("ns", "unknown"): SKIPPED_NODE_UNKNOWN}


def test_unready_deleting_and_addressless_pods_are_skipped() -> None:
    pods = [pod("unready", ready=False), pod("deleting", deleting=True), pod("no-ip", ip=None)]
    targets, skipped = plan(pods, NODES.get)
    assert targets == []
    assert skipped == {
        ("ns", "unready"): SKIPPED_NOT_READY,
        ("ns", "deleting"): SKIPPED_NOT_READY,
        ("ns", "no-ip"): SKIPPED_NO_ADDRESS,
    }


def test_test_only_overrides_point_at_loopback_and_nothing_else() -> None:
    pods = [pod("sim", node="sim-h100-0", ip="10.244.0.7"), pod("evil", node="sim-h100-0", ip="10.244.0.8")]
    overrides = {"ns/sim": "127.0.0.1:40001", "ns/evil": "10.0.0.1:80"}
    targets, skipped = plan(pods, NODES.get, overrides)
    assert targets == [Target("ns", "sim", "127.0.0.1:40001")]
    assert skipped == {("ns", "evil"): SKIPPED_SIMULATED}


def test_unready_pods_are_not_read_even_with_an_override() -> None:
    targets, _ = plan([pod("a", ready=False)], NODES.get, {"ns/a": "127.0.0.1:1"})
    assert targets == []


def test_loopback_addresses() -> None:
    assert is_loopback("127.0.0.1:9090")
    assert is_loopback("127.3.2.1:1")
    assert is_loopback("[::1]:9090")
    assert not is_loopback("10.244.0.1:9090")
    assert not is_loopback("localhost:9090")
    assert not is_loopback("garbage")
