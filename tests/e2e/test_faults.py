"""Faults, small (issue 14): kill -9 during churn, kube-apiserver and etcd restarts, leader failover.

A control plane of this module's own (restarting the session's would disturb other tests); the full runs
with their figures are benchmarks/chaos.py.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from chute_devcluster.controlplane import ControlPlane
from chute_devcluster.nodes import NodePool
from tests.faults import (
    apply_chutes,
    chaos_chute,
    converge,
    failover,
    kill_during_churn,
    plane_of_its_own,
    restart_component,
)
from tests.operator_fixtures import OperatorProcess

pytestmark = [pytest.mark.e2e, pytest.mark.faults]
NAMESPACE = "chaos"


@pytest.fixture(scope="module")
def chaos_plane(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ControlPlane]:
    pool = NodePool("cpu", 1, "chaos.cpu", "64", "256Gi", "1Ti", pods=200)
    yield from plane_of_its_own(tmp_path_factory.mktemp("chaos-plane"), pool, NAMESPACE)


def _operator(plane: ControlPlane, tmp_path: Path, identity: str) -> OperatorProcess:
    return OperatorProcess(plane.kubeconfig, tmp_path, identity, namespaces=(NAMESPACE,))


def _clean(plane: ControlPlane) -> None:
    plane.kubectl("delete", "chutes", "--all", "-n", NAMESPACE, "--wait=true", timeout=180)


def test_kill_9_at_random_moments_during_churn_loses_nothing(
    chaos_plane: ControlPlane, tmp_path: Path
) -> None:
    operator = _operator(chaos_plane, tmp_path, "op-killed").start()
    try:
        result = kill_during_churn(chaos_plane, NAMESPACE, operator, operations=12, kills=3, seed=14)
    finally:
        operator.stop()
        _clean(chaos_plane)
    assert result["kills"] == 3


@pytest.mark.parametrize("component", ["kube-apiserver", "etcd"])
def test_a_restarted_control_plane_loses_no_change_and_costs_no_needless_write(
    chaos_plane: ControlPlane, tmp_path: Path, component: str
) -> None:
    operator = _operator(chaos_plane, tmp_path, f"op-{component}").start()
    expected = {f"steady-{i}": chaos_chute(f"steady-{i}", NAMESPACE, 4 + i) for i in range(3)}
    try:
        apply_chutes(chaos_plane, list(expected.values()))
        result = restart_component(chaos_plane, NAMESPACE, operator, component, expected)
        assert result["operator_alive"], operator.log_tail()
        # The change to one Chute: its Deployment once, its status and Event; the others: nothing.
        assert result["writes_after_restart"].get("Deployment") == 1, result
        assert "Service" not in result["writes_after_restart"], result
        assert "Traceback" not in operator.log_path.read_text(errors="replace")
    finally:
        operator.stop()
        _clean(chaos_plane)


def test_the_standby_takes_over_from_a_killed_leader_and_never_writes_while_standby(
    chaos_plane: ControlPlane, tmp_path: Path
) -> None:
    lease = {"CHUTE_OPERATOR_LEASE_NAME": "chaos-failover"}
    leader = OperatorProcess(chaos_plane.kubeconfig, tmp_path, "op-a", (NAMESPACE,), **lease).start()
    expected = {"pair": chaos_chute("pair", NAMESPACE)}
    apply_chutes(chaos_plane, list(expected.values()))
    converge(chaos_plane, NAMESPACE, expected, 120)
    standby = OperatorProcess(chaos_plane.kubeconfig, tmp_path, "op-b", (NAMESPACE,), **lease).start()
    try:
        result = failover(chaos_plane, NAMESPACE, leader, standby, expected)
    finally:
        standby.stop()
        leader.stop()
        _clean(chaos_plane)
    assert result["standby_writes_while_standby"] == 0
