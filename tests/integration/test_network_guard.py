"""The local cluster keeps its pod and Service ranges on this machine, and removes exactly that after.

No test here dials an address unless :func:`tests.net_helpers.kept_on_machine` holds first.
"""

from __future__ import annotations

import errno
import ipaddress
import json
import os
import random
import re
import signal
import subprocess
import sys
from pathlib import Path

import pytest
from tests.kube_helpers import eventually
from tests.net_helpers import dial, guard_lines, network_state, rejected_by_guard, route_get

from chute_devcluster.controlplane import ControlPlane, ControlPlaneError
from chute_devcluster.netguard import (
    OUTPUT_CHAIN,
    STATE_DIR,
    STATE_FILE,
    GuardOwner,
    machine_addresses,
    parse_owners,
    remove_stale,
)
from chute_devcluster.nodes import SIMULATED_LABEL, NodePool
from chute_devcluster.supervisor import STATE_FILE as SUPERVISOR_STATE
from chute_devcluster.supervisor import read_state

pytestmark = pytest.mark.integration

FAILS_AT_ONCE = {errno.ENETUNREACH, errno.EHOSTUNREACH, errno.ECONNREFUSED}
ONE_CPU_NODE = [NodePool(name="cpu", count=1, instance_type="m7i.4xlarge", cpu="16", memory="64Gi")]


def unused_address(cidr: str) -> str:
    """An address near the end of the range: kwok and the API server hand out the low ones."""
    return str(ipaddress.IPv4Network(cidr)[-2])


def assert_fails_at_once(address: str) -> None:
    result = dial(address, 80, timeout=1.0)
    assert result.error is not None, f"{address} answered"
    assert not isinstance(result.error, TimeoutError), f"{address}: timed out instead of failing at once"
    assert result.error.errno in FAILS_AT_ONCE, f"{address}: {result.error!r}"


def reject_counter(cidr: str) -> int:
    """Packets the guard's OUTPUT rule for ``cidr`` rejected so far."""
    listing = subprocess.run(
        ["iptables", "-w", "-L", OUTPUT_CHAIN, "-n", "-v", "-x"], capture_output=True, text=True, check=True
    ).stdout
    return sum(int(line.split()[0]) for line in listing.splitlines() if f" {cidr} " in f" {line} ")


def free_ranges() -> tuple[str, str]:
    """A pod and a Service range no other local cluster on this machine uses right now."""
    owners = live_owners()
    taken = {ipaddress.IPv4Network(cidr) for o in owners for cidr in (o.pod_cidr, o.service_cidr)}
    candidates = [ipaddress.IPv4Network(f"10.{second}.0.0/16") for second in range(160, 240)]
    pod, service = random.sample([c for c in candidates if not any(c.overlaps(t) for t in taken)], 2)
    return str(pod), str(service)


def lines_naming(lines: set[str], *cidrs: str) -> set[str]:
    return {line for line in lines if any(re.search(rf"\b{re.escape(c)}\b", line) for c in cidrs)}


def live_owners() -> list[GuardOwner]:
    try:
        return [o for o in parse_owners((STATE_DIR / STATE_FILE).read_text()) if o.alive()]
    except OSError:
        return []


def assert_only_live_owners_guards_remain(new_lines: set[str]) -> None:
    """Of what appeared meanwhile, guard lines may only be those of clusters still running.

    Other helpers' processes change the machine at the same time (a real node's bridge, kube-proxy's
    chains): those lines are not the guard's and are not judged here.
    """
    owners = live_owners()
    ranges = [cidr for owner in owners for cidr in (owner.pod_cidr, owner.service_cidr)]
    for line in guard_lines(new_lines):
        assert owners, f"no cluster runs, yet the guard left: {line}"
        assert lines_naming({line}, *ranges) or " -j REJECT" not in line, f"left behind: {line}"


# -- with the session's cluster up --------------------------------------------------------------


def test_an_unused_pod_address_is_unreachable_and_a_connect_fails_at_once(
    control_plane: ControlPlane,
) -> None:
    address = unused_address(control_plane.pod_cidr)
    route = route_get(address)
    assert route.returncode != 0, route.stdout
    assert "No route to host" in route.stderr
    assert_fails_at_once(address)


def test_an_unused_service_address_is_rejected_on_the_machine_and_a_connect_fails_at_once(
    control_plane: ControlPlane,
) -> None:
    address = unused_address(control_plane.service_cidr)
    assert rejected_by_guard(address)
    before = reject_counter(control_plane.service_cidr)
    assert_fails_at_once(address)
    assert reject_counter(control_plane.service_cidr) > before, "the guard's REJECT rule did not see it"


def test_a_pod_on_a_simulated_node_and_a_service_fail_at_once(
    control_plane: ControlPlane, namespace: str
) -> None:
    """What code dialing pods meets if it ignores the simulated-node label: an immediate error."""
    pod = {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": "web", "labels": {"app": "web"}},
        "spec": {"containers": [{"name": "web", "image": "nginx:1.27"}]},
    }
    control_plane.kubectl("apply", "-n", namespace, "-f", "-", input=json.dumps(pod))
    control_plane.kubectl("create", "service", "clusterip", "web", "--tcp=80:80", "-n", namespace)

    def scheduled_with_ip() -> dict[str, str] | None:
        found = json.loads(control_plane.kubectl("get", "pod", "web", "-n", namespace, "-o", "json").stdout)
        if found["status"].get("podIP") and found["spec"].get("nodeName"):
            return {"ip": found["status"]["podIP"], "node": found["spec"]["nodeName"]}
        return None

    placed = eventually(scheduled_with_ip, "the pod's IP")
    node = json.loads(control_plane.kubectl("get", "node", placed["node"], "-o", "json").stdout)
    assert node["metadata"]["labels"].get(SIMULATED_LABEL) == "true"
    assert ipaddress.IPv4Address(placed["ip"]) in ipaddress.IPv4Network(control_plane.pod_cidr)
    assert_fails_at_once(placed["ip"])

    cluster_ip = control_plane.kubectl(
        "get", "service", "web", "-n", namespace, "-o", "jsonpath={.spec.clusterIP}"
    ).stdout
    assert ipaddress.IPv4Address(cluster_ip) in ipaddress.IPv4Network(control_plane.service_cidr)
    assert_fails_at_once(cluster_ip)


# -- clusters of their own ----------------------------------------------------------------------


def test_a_range_overlapping_the_machines_network_is_refused_naming_both(tmp_path: Path) -> None:
    address = next(
        ipaddress.IPv4Interface(f"{info['local']}/{info['prefixlen']}")
        for link in machine_addresses()
        if link.get("ifname") != "lo"
        for info in link.get("addr_info") or []
        if info.get("family") == "inet"
    )
    before = network_state()
    _, service = free_ranges()
    plane = ControlPlane(
        work_dir=tmp_path, node_pools=ONE_CPU_NODE, pod_cidr=str(address.network), service_cidr=service
    )
    with pytest.raises(ControlPlaneError) as refused:
        plane.start()
    plane.stop()
    assert f"pod range {address.network}" in str(refused.value)
    assert f"address {address}" in str(refused.value) or f"route '{address.network}" in str(refused.value)
    assert not plane.pids()
    assert not lines_naming(network_state() - before, str(address.network), service)
    assert_only_live_owners_guards_remain(network_state() - before)


def test_a_cluster_with_its_own_ranges_uses_them_and_leaves_nothing_after_stop(tmp_path: Path) -> None:
    pod_cidr, service_cidr = free_ranges()
    before = network_state()
    with ControlPlane(
        work_dir=tmp_path, node_pools=ONE_CPU_NODE, pod_cidr=pod_cidr, service_cidr=service_cidr
    ) as plane:
        during = network_state()
        assert f"unreachable {pod_cidr} proto 147" in during
        assert len(lines_naming(during, service_cidr)) == 2  # OUTPUT and FORWARD
        assert_fails_at_once(unused_address(pod_cidr))
        assert_fails_at_once(unused_address(service_cidr))
        kubernetes = plane.kubectl("get", "service", "kubernetes", "-o", "jsonpath={.spec.clusterIP}").stdout
        assert kubernetes == str(ipaddress.IPv4Network(service_cidr)[1])
    after = network_state()
    assert not lines_naming(after, pod_cidr, service_cidr)
    assert_only_live_owners_guards_remain(after - before)


def test_the_guard_of_a_killed_cluster_goes_at_the_stale_cleanup(tmp_path: Path) -> None:
    """What `dev down` and every start do: drop dead owners and what only they needed."""
    pod_cidr, service_cidr = free_ranges()
    supervisor = subprocess.Popen(
        [
            *(sys.executable, "-m", "chute_devcluster.supervisor", "--state-dir", str(tmp_path)),
            *("--pod-cidr", pod_cidr, "--service-cidr", service_cidr),
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        state = eventually(lambda: read_state(tmp_path) or None, "the supervisor's state", timeout=150)
        assert state.get("ready"), state
        assert (state["pod_cidr"], state["service_cidr"]) == (pod_cidr, service_cidr)
        assert lines_naming(network_state(), pod_cidr, service_cidr)
    finally:
        os.kill(supervisor.pid, signal.SIGKILL)
        supervisor.wait(30)
    assert (tmp_path / SUPERVISOR_STATE).exists()  # killed: it removed nothing itself
    remove_stale()
    assert not lines_naming(network_state(), pod_cidr, service_cidr)
