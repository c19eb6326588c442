"""The real node's NetworkPolicy enforcer: its source changes, command, RBAC, metrics and switch."""

from __future__ import annotations

from pathlib import Path

import pytest

from chute_devcluster import netpol, netpol_source
from chute_devcluster.binaries import Toolset, network_policies_key, toolset
from chute_devcluster.realnode_config import RealNodeSettings

MAIN = """var (
\tdisableNRI                 bool
)

func init() {
}

import (
\t"k8s.io/client-go/rest"
)
\tconfig, err := rest.InClusterConfig()
"""
QUEUE = (
    "queue := &expr.Queue{Num: uint16(c.config.QueueID)}\n"
    "\tif c.config.FailOpen {\n\t\tqueue.Flag = expr.QueueFlagBypass\n\t}"
)


def _tree(root: Path, queues: int = 2) -> Path:
    (root / "cmd").mkdir(parents=True)
    (root / "pkg" / "networkpolicy").mkdir(parents=True)
    (root / "cmd" / "main.go").write_text(MAIN)
    (root / "pkg" / "networkpolicy" / "controller.go").write_text("\n".join([QUEUE] * queues))
    return root


def test_patches_add_a_kubeconfig_flag_and_the_xtables_queue(tmp_path: Path) -> None:
    root = _tree(tmp_path)
    netpol_source.patch_source(root)
    main = (root / "cmd" / "main.go").read_text()
    assert 'clientcmd.BuildConfigFromFlags("", kubeconfig)' in main
    assert 'flag.StringVar(&kubeconfig, "kubeconfig"' in main
    assert "InClusterConfig" not in main
    controller = (root / "pkg" / "networkpolicy" / "controller.go").read_text()
    assert "expr.Queue" not in controller
    assert controller.count("xtQueue(uint16(c.config.QueueID), c.config.FailOpen)") == 2
    assert 'Name: "NFQUEUE", Rev: 3' in (root / "pkg" / "networkpolicy" / "xtqueue.go").read_text()


def test_a_release_whose_source_moved_fails_the_build(tmp_path: Path) -> None:
    with pytest.raises(netpol_source.PatchError, match="expected 2"):
        netpol_source.patch_source(_tree(tmp_path, queues=1))


def test_binary_is_a_node_binary_keyed_by_version_and_patches() -> None:
    tools = toolset()
    assert tools.network_policies in tools.node_paths()
    assert "network_policies" in Toolset.NODE_FIELDS
    assert network_policies_key().startswith(f"{netpol_source.VERSION}-")
    assert tools.network_policies.parent.name == f"kube-network-policies-{network_policies_key()}"


def test_command_names_the_node_and_keeps_metrics_on_loopback() -> None:
    command = netpol.enforcer_command(Path("/bin/knp"), Path("/k/config"), "chute-real-0", 9999)
    assert command[0] == "/bin/knp"
    assert "--kubeconfig=/k/config" in command
    assert "--hostname-override=chute-real-0" in command
    assert f"--nfqueue-id={netpol.QUEUE_ID}" in command
    assert "--metrics-bind-address=127.0.0.1:9999" in command
    assert not any(arg.startswith("--fail-open") for arg in command)  # a dead enforcer lets nothing in


def test_rbac_is_its_release_manifests_role_bound_to_its_user() -> None:
    (role_path, role), (binding_path, binding) = netpol.rbac_objects("someone")
    assert role_path.endswith("/clusterroles")
    assert binding_path.endswith("/clusterrolebindings")
    verbs = {verb for rule in role["rules"] for verb in rule["verbs"]}
    assert verbs == {"list", "watch"}
    resources = {r for rule in role["rules"] for r in rule["resources"]}
    assert resources == {"pods", "namespaces", "networkpolicies"}
    assert binding["subjects"][0]["kind"] == "User"
    assert binding["subjects"][0]["name"] == "someone"
    assert binding["roleRef"]["name"] == role["metadata"]["name"]


def test_verdicts_add_up_its_packet_counts() -> None:
    text = "\n".join(
        [
            "# TYPE kube_network_policies_packet_count counter",
            'kube_network_policies_packet_count{family="IPv4",protocol="TCP",verdict="drop"} 3',
            'kube_network_policies_packet_count{family="IPv4",protocol="UDP",verdict="drop"} 1',
            'kube_network_policies_packet_count{family="IPv4",protocol="TCP",verdict="accept"} 7',
            "kube_network_policies_nfqueue_queue_total 0",
        ]
    )
    assert netpol.verdicts(text) == {"drop": 4.0, "accept": 7.0}


@pytest.mark.parametrize(
    ("value", "on"), [(None, True), ("1", True), ("0", False), ("off", False), ("no", False)]
)
def test_the_enforcer_is_on_unless_switched_off(value: str | None, on: bool) -> None:
    env = {} if value is None else {"CHUTE_OPERATOR_REAL_NODE_NETWORK_POLICIES": value}
    assert RealNodeSettings.from_env(env).network_policies is on
