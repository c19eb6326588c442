"""The real node's configuration files: confined to the node's directory, right for this kind of machine."""

from __future__ import annotations

import ipaddress
import tomllib
from pathlib import Path

import pytest

from chute_devcluster.controlplane import POD_CIDR
from chute_devcluster.realnode_config import (
    REAL_NODE_LABEL,
    SIMULATED_GPU_LABEL,
    NodePaths,
    RealNodeSettings,
    cni_conflist,
    containerd_config,
    kube_proxy_config,
    kubelet_command,
    kubelet_config,
    registry_hosts_toml,
)
from chute_operator.gpus import load_catalog

ROOT = Path("/tmp/cluster/real-node")
PATHS = NodePaths(ROOT)
SETTINGS = RealNodeSettings()


def _strings(value: object) -> list[str]:
    if isinstance(value, str):
        return [value]
    if isinstance(value, dict):
        return [s for item in value.values() for s in _strings(item)]
    if isinstance(value, list):
        return [s for item in value for s in _strings(item)]
    return []


def test_containerd_keeps_everything_under_the_node_directory() -> None:
    config = tomllib.loads(containerd_config(PATHS, "localhost/chute-pause:3.10"))
    assert config["version"] == 2
    for key in ("root", "state"):
        assert Path(config[key]).is_relative_to(ROOT)
    assert Path(config["grpc"]["address"]).is_relative_to(ROOT)
    assert Path(config["ttrpc"]["address"]).is_relative_to(ROOT)
    cri = config["plugins"]["io.containerd.grpc.v1.cri"]
    runc = cri["containerd"]["runtimes"]["runc"]["options"]
    assert Path(runc["Root"]).is_relative_to(ROOT)
    assert Path(cri["cni"]["conf_dir"]).is_relative_to(ROOT)
    assert Path(config["plugins"]["io.containerd.internal.v1.opt"]["path"]).is_relative_to(ROOT)


def test_containerd_fits_a_cgroup_v1_machine() -> None:
    cri = tomllib.loads(containerd_config(PATHS, "localhost/chute-pause:3.10"))["plugins"][
        "io.containerd.grpc.v1.cri"
    ]
    assert cri["restrict_oom_score_adj"] is True  # lowering oom_score_adj is not allowed here
    assert cri["containerd"]["runtimes"]["runc"]["options"]["SystemdCgroup"] is False
    assert cri["sandbox_image"] == "localhost/chute-pause:3.10"
    assert cri["cni"]["bin_dir"] == "/usr/lib/cni"
    assert cri["stream_server_address"] == "127.0.0.1"


def test_containerd_reads_registry_hosts_from_the_node_directory() -> None:
    cri = tomllib.loads(containerd_config(PATHS, "127.0.0.1:5000/pause:3.10"))["plugins"][
        "io.containerd.grpc.v1.cri"
    ]
    assert Path(cri["registry"]["config_path"]) == PATHS.registry_hosts_dir
    assert PATHS.registry_hosts_dir.is_relative_to(ROOT)
    assert "mirrors" not in cri["registry"]  # config_path excludes the deprecated sections


def test_registry_hosts_toml_pulls_over_plain_http() -> None:
    hosts = tomllib.loads(registry_hosts_toml("127.0.0.1:41234"))
    assert hosts["server"] == "http://127.0.0.1:41234"
    assert hosts["host"] == {"http://127.0.0.1:41234": {"capabilities": ["pull", "resolve"]}}


def test_pod_subnet_is_inside_the_pod_range_far_from_kwok_addresses() -> None:
    subnet = ipaddress.IPv4Network(SETTINGS.pod_subnet)
    pod_range = ipaddress.IPv4Network(POD_CIDR)
    assert subnet.subnet_of(pod_range)
    # kwok numbers pod IPs upwards from the start of the range and reuses freed ones.
    first_kwok_addresses = {pod_range[index] for index in range(1, 20_000)}
    assert not any(address in subnet for address in first_kwok_addresses)


def test_cni_bridge_uses_the_node_subnet_and_keeps_its_state_in_the_node_directory() -> None:
    conflist = cni_conflist(PATHS, SETTINGS)
    bridge = conflist["plugins"][0]
    assert bridge["type"] == "bridge"
    assert bridge["bridge"] == SETTINGS.bridge
    assert bridge["isGateway"] is True
    assert bridge["ipMasq"] is False  # pods never need to reach anything off the machine
    ipam = bridge["ipam"]
    assert Path(ipam["dataDir"]).is_relative_to(ROOT)
    (range_,) = ipam["ranges"][0]
    assert range_["subnet"] == SETTINGS.pod_subnet
    assert range_["gateway"] == SETTINGS.node_ip == "10.244.250.1"
    assert ipaddress.IPv4Address(range_["rangeStart"]) in ipaddress.IPv4Network(SETTINGS.pod_subnet)


def test_kubelet_config_for_cgroup_v1_and_no_registry() -> None:
    config = kubelet_config(
        PATHS,
        SETTINGS,
        ca_cert=ROOT / "ca.crt",
        serving=(ROOT / "s.crt", ROOT / "s.key"),
        port=1,
        healthz_port=2,
    )
    assert config["failCgroupV1"] is False
    assert config["cgroupDriver"] == "cgroupfs"
    assert config["containerRuntimeEndpoint"] == f"unix://{PATHS.containerd_socket}"
    assert config["imageGCHighThresholdPercent"] == 100  # an imported image can never be pulled again
    assert config["authentication"]["anonymous"]["enabled"] is False
    assert config["readOnlyPort"] == 0
    assert config["registerWithTaints"] == [
        {"key": "nvidia.com/gpu", "value": "present", "effect": "NoSchedule"}
    ]
    assert config["resolvConf"] == ""  # no name server: pods send nothing off the machine
    for value in (config["podLogsDir"], config["volumePluginDir"]):
        assert Path(value).is_relative_to(ROOT)


def test_kubelet_command_labels_the_node_with_simulated_gpus() -> None:
    command = kubelet_command(Path("/bin/kubelet"), PATHS, SETTINGS, ROOT / "kubelet.kubeconfig")
    assert f"--root-dir={PATHS.kubelet_root}" in command
    assert f"--node-ip={SETTINGS.node_ip}" in command
    labels = dict(
        item.split("=", 1)
        for item in next(a for a in command if a.startswith("--node-labels="))[14:].split(",")
    )
    assert labels[REAL_NODE_LABEL] == labels[SIMULATED_GPU_LABEL] == "true"
    assert labels["nvidia.com/gpu.product"] == "NVIDIA-A10"
    assert labels["nvidia.com/gpu.count"] == "4"
    assert labels["nvidia.com/gpu.memory"] == "23028"


def test_the_real_node_gpu_is_in_the_catalog_and_in_no_default_pool() -> None:
    from chute_devcluster.nodes import default_node_pools

    catalog_products = {product for gpu in load_catalog().values() for product in gpu.products}
    assert SETTINGS.gpu.product in catalog_products
    assert all(pool.gpu is None or pool.gpu.product != SETTINGS.gpu.product for pool in default_node_pools())


def test_kube_proxy_runs_iptables_mode_on_the_node_subnet() -> None:
    config = kube_proxy_config(SETTINGS, kubeconfig=ROOT / "kp.kubeconfig", healthz_port=3, metrics_port=4)
    assert config["mode"] == "iptables"
    assert config["clusterCIDR"] == SETTINGS.pod_subnet
    assert config["nodePortAddresses"] == [f"{SETTINGS.node_ip}/32"]
    assert config["conntrack"]["maxPerCore"] == 0  # leaves the machine's conntrack settings alone
    assert config["healthzBindAddress"].startswith("127.0.0.1:")


def test_settings_from_the_environment() -> None:
    settings = RealNodeSettings.from_env(
        {"CHUTE_OPERATOR_REAL_NODE_SUBNET": "10.244.200.0/24", "CHUTE_OPERATOR_REAL_NODE_GPU_COUNT": "2"}
    )
    assert settings.pod_subnet == "10.244.200.0/24"
    assert settings.node_ip == "10.244.200.1"
    assert settings.gpu.count == 2
    assert RealNodeSettings.from_env({}) == RealNodeSettings()


@pytest.mark.parametrize(
    ("changes", "message"),
    [({"pod_subnet": "10.244.250.0/30"}, "at least a /28"), ({"bridge": "a-very-long-bridge-name"}, "15")],
)
def test_settings_refuse_what_cannot_work(changes: dict[str, str], message: str) -> None:
    with pytest.raises(ValueError, match=message):
        RealNodeSettings(**changes)  # type: ignore[arg-type]


def test_no_configured_path_escapes_the_node_directory_except_the_kubelet_fixed_ones() -> None:
    strings = _strings(cni_conflist(PATHS, SETTINGS)) + _strings(
        kubelet_config(
            PATHS,
            SETTINGS,
            ca_cert=ROOT / "ca.crt",
            serving=(ROOT / "s.crt", ROOT / "s.key"),
            port=1,
            healthz_port=2,
        )
    )
    absolute = [s for s in strings if s.startswith("/")]
    assert absolute
    assert all(Path(s).is_relative_to(ROOT) for s in absolute)
