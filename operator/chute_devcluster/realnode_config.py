"""The real node's settings and the configuration files of its processes (pure: data in, text out).

The node is one machine-wide set of processes, each confined to the node's own directory where it
can be: containerd (own root, state and socket, never the system's), the CNI bridge and host-local
plugins on a pod subnet inside the cluster's pod range that kwok does not hand out (kwok numbers
its pods upwards from the start of the range), the kubelet and kube-proxy in iptables mode.

Settings come from the environment (``CHUTE_OPERATOR_REAL_NODE_*``, see :meth:`RealNodeSettings.from_env`).
"""

from __future__ import annotations

import ipaddress
import json
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from chute_devcluster.nodes import GPU_RESOURCE, GPU_TAINT, GpuSpec

REAL_NODE_LABEL = "chutes.ai/real-node"
"""Label (value ``"true"``) on the real node."""
SIMULATED_GPU_LABEL = "chutes.ai/simulated-gpu"
"""Label (value ``"true"``) saying the node's GPUs are advertised by a simulating device plugin."""
CNI_NETWORK_NAME = "chute-real-node"
DEVICE_PLUGIN_DIR = Path("/var/lib/kubelet/device-plugins")
"""Where the kubelet listens for device plugins: fixed by the kubelet, whatever its root dir."""
DEFAULT_GPU = GpuSpec("NVIDIA-A10", 23028, 4, "ampere")
"""A GPU of the catalog that no default simulated pool has: a Chute with ``include: [a10]`` lands here."""


@dataclass(frozen=True)
class RealNodeSettings:
    """What the real node is called, where its pods live and which GPUs it pretends to have."""

    name: str = "chute-real-0"
    pod_subnet: str = "10.244.250.0/24"
    bridge: str = "chute-br0"
    gpu: GpuSpec = DEFAULT_GPU
    max_pods: int = 32
    network_policies: bool = True
    """Run the NetworkPolicy enforcer (kube-network-policies, :mod:`chute_devcluster.netpol`)."""

    def __post_init__(self) -> None:
        subnet = ipaddress.IPv4Network(self.pod_subnet, strict=True)
        if subnet.num_addresses < 16:
            raise ValueError(f"real node pod subnet {self.pod_subnet}: at least a /28 is needed")
        if not 0 < len(self.bridge) <= 15:
            raise ValueError(f"bridge name {self.bridge!r}: 1 to 15 characters")

    @property
    def node_ip(self) -> str:
        """The bridge's address, the pods' gateway and the node's InternalIP: local to this machine."""
        return str(ipaddress.IPv4Network(self.pod_subnet)[1])

    @property
    def prefix_length(self) -> int:
        return ipaddress.IPv4Network(self.pod_subnet).prefixlen

    @classmethod
    def from_env(cls, environ: dict[str, str] | None = None) -> RealNodeSettings:
        """``CHUTE_OPERATOR_REAL_NODE_NAME``, ``_SUBNET``, ``_BRIDGE``, ``_GPU_COUNT`` override defaults;
        ``_NETWORK_POLICIES=0`` (or false, no, off) runs the node without the NetworkPolicy enforcer."""
        env = os.environ if environ is None else environ
        default = cls()
        gpu_count = int(env.get("CHUTE_OPERATOR_REAL_NODE_GPU_COUNT", default.gpu.count))
        return cls(
            name=env.get("CHUTE_OPERATOR_REAL_NODE_NAME", default.name),
            pod_subnet=env.get("CHUTE_OPERATOR_REAL_NODE_SUBNET", default.pod_subnet),
            bridge=env.get("CHUTE_OPERATOR_REAL_NODE_BRIDGE", default.bridge),
            gpu=GpuSpec(default.gpu.product, default.gpu.memory_mib, gpu_count, default.gpu.family),
            network_policies=env.get("CHUTE_OPERATOR_REAL_NODE_NETWORK_POLICIES", "1").strip().lower()
            not in {"0", "false", "no", "off"},
        )

    def labels(self) -> dict[str, str]:
        """GPU Feature Discovery's labels for the simulated GPUs, and labels that say they are simulated."""
        labels = {
            REAL_NODE_LABEL: "true",
            SIMULATED_GPU_LABEL: "true",
            "nvidia.com/gpu.present": "true",
            "nvidia.com/gpu.product": self.gpu.product,
            "nvidia.com/gpu.memory": str(self.gpu.memory_mib),
            "nvidia.com/gpu.count": str(self.gpu.count),
        }
        if self.gpu.family:
            labels["nvidia.com/gpu.family"] = self.gpu.family
        return labels


@dataclass(frozen=True)
class NodePaths:
    """Every file and directory of one real node, under ``root``."""

    root: Path
    image_store: Path | None = None
    """containerd's root (images, snapshots, metadata); kept between runs, so pulled layers are.
    Default: inside ``root``."""
    device_plugin_dir: Path = field(default=DEVICE_PLUGIN_DIR)

    @property
    def containerd_config(self) -> Path:
        return self.root / "containerd" / "config.toml"

    @property
    def containerd_root(self) -> Path:
        return self.image_store or self.root / "containerd" / "root"

    @property
    def containerd_state(self) -> Path:
        return self.root / "containerd" / "state"

    @property
    def containerd_socket(self) -> Path:
        return self.root / "containerd" / "containerd.sock"

    @property
    def registry_hosts_dir(self) -> Path:
        """containerd's ``config_path``: one ``<host:port>/hosts.toml`` per registry it may pull from."""
        return self.root / "containerd" / "certs.d"

    @property
    def runc_root(self) -> Path:
        return self.root / "containerd" / "runc"

    @property
    def cni_conf_dir(self) -> Path:
        return self.root / "cni" / "net.d"

    @property
    def cni_data_dir(self) -> Path:
        return self.root / "cni" / "ipam"

    @property
    def kubelet_root(self) -> Path:
        return self.root / "kubelet"

    @property
    def kubelet_config(self) -> Path:
        return self.root / "kubelet-config.yaml"

    @property
    def kube_proxy_config(self) -> Path:
        return self.root / "kube-proxy-config.yaml"

    @property
    def pod_logs(self) -> Path:
        return self.root / "pod-logs"

    @property
    def pki(self) -> Path:
        return self.root / "pki"


def _toml_string(value: str) -> str:
    return json.dumps(value)


def containerd_config(paths: NodePaths, sandbox_image: str) -> str:
    """containerd 1.6's config (version 2): everything under the node's directory, cgroupfs,
    ``restrict_oom_score_adj`` because this kind of machine does not allow lowering oom_score_adj, and
    the registries' settings read from :attr:`NodePaths.registry_hosts_dir` (:func:`registry_hosts_toml`)."""
    q = _toml_string
    cri = 'plugins."io.containerd.grpc.v1.cri"'
    return f"""version = 2
root = {q(str(paths.containerd_root))}
state = {q(str(paths.containerd_state))}
disabled_plugins = [
  "io.containerd.snapshotter.v1.aufs",
  "io.containerd.snapshotter.v1.btrfs",
  "io.containerd.snapshotter.v1.devmapper",
  "io.containerd.snapshotter.v1.zfs",
  "io.containerd.tracing.processor.v1.otlp",
]

[grpc]
  address = {q(str(paths.containerd_socket))}

[ttrpc]
  address = {q(str(paths.containerd_socket) + ".ttrpc")}

[debug]
  address = ""

[metrics]
  address = ""

[plugins."io.containerd.internal.v1.opt"]
  path = {q(str(paths.root / "containerd" / "opt"))}

[{cri}]
  sandbox_image = {q(sandbox_image)}
  restrict_oom_score_adj = true
  disable_apparmor = true
  stream_server_address = "127.0.0.1"
  stream_server_port = "0"
  enable_selinux = false

[{cri}.containerd]
  snapshotter = "overlayfs"
  default_runtime_name = "runc"
  discard_unpacked_layers = false

[{cri}.containerd.runtimes.runc]
  runtime_type = "io.containerd.runc.v2"

[{cri}.containerd.runtimes.runc.options]
  SystemdCgroup = false
  Root = {q(str(paths.runc_root))}

[{cri}.cni]
  bin_dir = "/usr/lib/cni"
  conf_dir = {q(str(paths.cni_conf_dir))}
  max_conf_num = 1

[{cri}.registry]
  config_path = {q(str(paths.registry_hosts_dir))}
"""


def registry_hosts_toml(host: str) -> str:
    """containerd's ``hosts.toml`` for a plain-HTTP registry at ``host`` (``127.0.0.1:PORT``): pull and
    resolve over ``http://``; containerd reads it at each pull from ``<config_path>/<host>/hosts.toml``."""
    server = _toml_string(f"http://{host}")
    return f"""server = {server}

[host.{server}]
  capabilities = ["pull", "resolve"]
"""


def cni_conflist(paths: NodePaths, settings: RealNodeSettings) -> dict[str, Any]:
    """A bridge (the node's gateway address, hairpin for a pod reaching itself through its Service)
    with host-local addresses kept in the node's directory, plus loopback and portmap."""
    subnet = ipaddress.IPv4Network(settings.pod_subnet)
    return {
        "cniVersion": "0.4.0",
        "name": CNI_NETWORK_NAME,
        "plugins": [
            {
                "type": "bridge",
                "bridge": settings.bridge,
                "isGateway": True,
                "ipMasq": False,
                "hairpinMode": True,
                "ipam": {
                    "type": "host-local",
                    "dataDir": str(paths.cni_data_dir),
                    "ranges": [
                        [
                            {
                                "subnet": settings.pod_subnet,
                                "rangeStart": str(subnet[10]),
                                "rangeEnd": str(subnet[-2]),
                                "gateway": settings.node_ip,
                            }
                        ]
                    ],
                    "routes": [{"dst": "0.0.0.0/0"}],
                },
            },
            {"type": "portmap", "capabilities": {"portMappings": True}},
        ],
    }


def kubelet_config(
    paths: NodePaths,
    settings: RealNodeSettings,
    *,
    ca_cert: Path,
    serving: tuple[Path, Path],
    port: int,
    healthz_port: int,
) -> dict[str, Any]:
    """The KubeletConfiguration: cgroup v1 with cgroupfs, x509 client auth, no DNS (pods need none),
    the GPU taint, image garbage collection off (the node keeps what it pulled from the local registry)."""
    return {
        "apiVersion": "kubelet.config.k8s.io/v1beta1",
        "kind": "KubeletConfiguration",
        "address": settings.node_ip,
        "port": port,
        "readOnlyPort": 0,
        "healthzBindAddress": "127.0.0.1",
        "healthzPort": healthz_port,
        "tlsCertFile": str(serving[0]),
        "tlsPrivateKeyFile": str(serving[1]),
        "authentication": {
            "anonymous": {"enabled": False},
            "webhook": {"enabled": False},
            "x509": {"clientCAFile": str(ca_cert)},
        },
        "authorization": {"mode": "AlwaysAllow"},
        "cgroupDriver": "cgroupfs",
        "failCgroupV1": False,
        "containerRuntimeEndpoint": f"unix://{paths.containerd_socket}",
        "registerNode": True,
        "registerWithTaints": [dict(GPU_TAINT)],
        "resolvConf": "",
        "clusterDomain": "cluster.local",
        "maxPods": settings.max_pods,
        "podLogsDir": str(paths.pod_logs),
        "volumePluginDir": str(paths.root / "volume-plugins"),
        "imageGCHighThresholdPercent": 100,
        "imageGCLowThresholdPercent": 99,
        "evictionHard": {
            "memory.available": "100Mi",
            "nodefs.available": "1%",
            "nodefs.inodesFree": "1%",
            "imagefs.available": "1%",
        },
        "syncFrequency": "10s",
        "nodeStatusUpdateFrequency": "4s",  # the device plugin's GPUs show up within seconds
        "serializeImagePulls": False,
        "shutdownGracePeriod": "0s",
        "containerLogMaxSize": "10Mi",
        "containerLogMaxFiles": 2,
    }


def kubelet_command(
    kubelet: Path, paths: NodePaths, settings: RealNodeSettings, kubeconfig: Path
) -> list[str]:
    labels = ",".join(f"{key}={value}" for key, value in sorted(settings.labels().items()))
    return [
        str(kubelet),
        f"--config={paths.kubelet_config}",
        f"--kubeconfig={kubeconfig}",
        f"--root-dir={paths.kubelet_root}",
        f"--cert-dir={paths.kubelet_root / 'pki'}",
        f"--hostname-override={settings.name}",
        f"--node-ip={settings.node_ip}",
        f"--node-labels={labels}",
        "--v=1",
    ]


def kube_proxy_config(
    settings: RealNodeSettings, *, kubeconfig: Path, healthz_port: int, metrics_port: int
) -> dict[str, Any]:
    """iptables mode; NodePorts only on the node's own address; conntrack sysctls left alone."""
    return {
        "apiVersion": "kubeproxy.config.k8s.io/v1alpha1",
        "kind": "KubeProxyConfiguration",
        "mode": "iptables",
        "clientConnection": {"kubeconfig": str(kubeconfig)},
        "hostnameOverride": settings.name,
        "bindAddress": settings.node_ip,
        "clusterCIDR": settings.pod_subnet,
        "detectLocalMode": "ClusterCIDR",
        "healthzBindAddress": f"127.0.0.1:{healthz_port}",
        "metricsBindAddress": f"127.0.0.1:{metrics_port}",
        "nodePortAddresses": [f"{settings.node_ip}/32"],
        "conntrack": {"maxPerCore": 0, "min": 0, "tcpEstablishedTimeout": "0s", "tcpCloseWaitTimeout": "0s"},
        "iptables": {"syncPeriod": "30s", "minSyncPeriod": "0s", "masqueradeAll": False},
    }


def device_plugin_command(binary: Path, paths: NodePaths, settings: RealNodeSettings) -> list[str]:
    return [
        str(binary),
        f"--device-plugin-dir={paths.device_plugin_dir}",
        f"--resource={GPU_RESOURCE}",
        f"--count={settings.gpu.count}",
    ]


def dump_yaml(document: dict[str, Any]) -> str:
    return yaml.safe_dump(document, sort_keys=False)
