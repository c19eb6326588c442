"""The API server's address for pods: loopback only without the real node; with it, the bridge's
address advertised (the `kubernetes` Service's EndpointSlice), in its certificate, and its port
guarded so that only this machine and the node's pods reach it."""

from __future__ import annotations

import shlex
import subprocess
from pathlib import Path

from chute_devcluster.binaries import toolset
from chute_devcluster.controlplane import ControlPlane, apiserver_guard_rule, stale_guard_deletions
from chute_devcluster.pki import create_pki
from chute_devcluster.realnode import NodeImage, NodeImages
from chute_devcluster.realnode_config import RealNodeSettings


def test_without_the_real_node_the_api_server_is_on_loopback_only() -> None:
    args = ControlPlane(tools=toolset())._apiserver_address_args()
    assert "--bind-address=127.0.0.1" in args
    assert "--advertise-address=127.0.0.1" in args
    assert "--endpoint-reconciler-type=none" in args


def test_with_the_real_node_pods_reach_it_on_the_bridge_address() -> None:
    settings = RealNodeSettings()
    plane = ControlPlane(
        tools=toolset(),
        real_node=settings,
        real_node_images=NodeImages(NodeImage("localhost/pause:1", Path("pause.tar"))),
    )
    args = plane._apiserver_address_args()
    assert f"--advertise-address={settings.node_ip}" in args
    assert "--bind-address=0.0.0.0" in args
    assert "--endpoint-reconciler-type=lease" in args
    assert plane._pod_facing_ips() == (settings.node_ip,)


def test_the_guard_rejects_all_but_local_and_pod_sources() -> None:
    rule = apiserver_guard_rule(6443, "10.244.250.0/24")
    text = " ".join(rule)
    assert "--dport 6443" in text
    assert "! -s 10.244.250.0/24" in text
    assert "! --src-type LOCAL" in text
    assert rule[-4:-2] == ["-j", "REJECT"]


def test_the_serving_certificate_names_the_extra_address(tmp_path: Path) -> None:
    pki = create_pki(tmp_path, service_ip="10.96.0.1", extra_ips=("10.244.250.1",))
    text = subprocess.run(
        ["openssl", "x509", "-in", str(pki.apiserver.cert), "-noout", "-ext", "subjectAltName"],
        capture_output=True, text=True, check=True,
    ).stdout  # fmt: skip
    assert "IP Address:10.244.250.1" in text
    assert "IP Address:10.96.0.1" in text
    assert "IP Address:127.0.0.1" in text


def test_a_guard_names_the_control_plane_that_inserted_it() -> None:
    rule = apiserver_guard_rule(6443, "10.244.250.0/24", owner_pid=4242)
    assert "pid 4242" in rule[rule.index("--comment") + 1]


def test_guards_left_by_killed_control_planes_are_found_and_only_those() -> None:
    live, dead = 100, 200
    listing = "\n".join(
        [
            "-P INPUT ACCEPT",
            "-A INPUT " + shlex.join(apiserver_guard_rule(6443, "10.244.250.0/24", owner_pid=live)),
            "-A INPUT " + shlex.join(apiserver_guard_rule(7443, "10.244.250.0/24", owner_pid=dead)),
            '-A INPUT -p tcp --dport 22 -m comment --comment "someone else" -j ACCEPT',
        ]
    )
    deletions = stale_guard_deletions(listing, alive=lambda pid: pid == live)
    assert deletions == [["-D", "INPUT", *apiserver_guard_rule(7443, "10.244.250.0/24", owner_pid=dead)]]
