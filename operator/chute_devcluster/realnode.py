"""The real node: containerd, a CNI bridge, the simulated-GPU device plugin, the kubelet, kube-proxy and
the NetworkPolicy enforcer (kube-network-policies, :mod:`chute_devcluster.netpol`).

    pushed = push_node_images(NodeImages(pause, (project,)), "127.0.0.1:PORT")  # into the local registry
    node = RealNode(tools, work_dir / "real-node", log_dir, images=pushed, registry="127.0.0.1:PORT")
    node.start(server, pki.ca, api, deadline)    # after kube-apiserver is ready
    ...
    node.stop()

The node's containerd pulls every image, the sandbox (pause) image included, from the local
registry (:mod:`chute_devcluster.registry`) over plain HTTP when the kubelet (or, for the sandbox,
containerd itself) first needs it; nothing is imported.

Only one real node can run on a machine at a time (the kubelet, its device-plugin directory, the
bridge and kube-proxy's iptables rules are machine-wide), so :meth:`RealNode.start` takes an
exclusive ``flock`` on :data:`MACHINE_LOCK` and fails with the holder's pid and directory if another
cluster has it (or waits ``lock_timeout`` seconds). What a killed holder left behind (containers,
their network namespaces, mounts, the bridge, kube-proxy's and the enforcer's rules) is removed when
the lock is next taken. :meth:`RealNode.stop` removes pods, rules, mounts and the bridge, and puts
back the kernel settings the kubelet and the bridge plugin change (:data:`RESTORED_SYSCTLS`).
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import shutil
import signal
import subprocess
import time
import urllib.request
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any

from chute_devcluster import netpol
from chute_devcluster.apiclient import ApiClient, ApiError
from chute_devcluster.binaries import Toolset, cache_dir, toolset
from chute_devcluster.images import ensure_images, push_image
from chute_devcluster.kubeconfig import write_kubeconfig
from chute_devcluster.nodes import GPU_RESOURCE
from chute_devcluster.pki import NETWORK_POLICIES_USER, KeyPair, create_node_pki
from chute_devcluster.processes import Component, free_port
from chute_devcluster.realnode_config import (
    DEVICE_PLUGIN_DIR,
    NodePaths,
    RealNodeSettings,
    cni_conflist,
    containerd_config,
    device_plugin_command,
    dump_yaml,
    kube_proxy_config,
    kubelet_command,
    kubelet_config,
    registry_hosts_toml,
)
from chute_devcluster.registry import registry_ref

MACHINE_STATE_DIR = Path("/run/chute-operator")
MACHINE_LOCK = MACHINE_STATE_DIR / "real-node.lock"
HOLDER_FILE = MACHINE_STATE_DIR / "real-node.json"
NAMESPACE = "k8s.io"
"""containerd's namespace for the CRI (where the kubelet looks for images)."""
RESTORED_SYSCTLS = (
    "net/ipv4/ip_forward",
    "vm/overcommit_memory",
    "vm/panic_on_oom",
    "kernel/panic",
    "kernel/panic_on_oops",
    "kernel/keys/root_maxkeys",
    "kernel/keys/root_maxbytes",
)
"""Kernel settings that the bridge plugin (forwarding) and the kubelet change; restored at stop."""
REQUIRED_COMMANDS = {
    "containerd": "containerd",
    "ctr": "containerd",
    "runc": "runc",
    "ip": "iproute2",
    "iptables": "iptables",
    "nft": "nftables",
}


def kept_image_store() -> Path:
    """containerd's root for the real node, in the cache: pulled layers survive the node (a later pull
    of the same image fetches only its manifest).
    Only the holder of :data:`MACHINE_LOCK` uses it."""
    return cache_dir() / "real-node" / "containerd"


class RealNodeError(RuntimeError):
    """The real node could not be started (the message says why, with log lines)."""


class RealNodeBusy(RealNodeError):
    """Another local cluster on this machine runs the real node."""


@dataclass(frozen=True)
class NodeImage:
    """An image for the node: its reference and an archive of it (the build's cache); once pushed to
    the local registry (:func:`push_node_images`), the registry's reference and the manifest digest."""

    ref: str
    archive: Path
    digest: str = ""


@dataclass(frozen=True)
class NodeImages:
    """The sandbox (pause) image containerd needs for every pod, and the images pods run."""

    sandbox: NodeImage
    others: tuple[NodeImage, ...] = ()


def build_node_images() -> NodeImages:
    """The pause image and the project image (operator, sidecar, modelsim), built or taken from the
    cache (:func:`chute_devcluster.images.ensure_images`; minutes only the first time)."""
    built = ensure_images()
    return NodeImages(
        NodeImage(built.pause.ref, built.pause.tar), (NodeImage(built.project.ref, built.project.tar),)
    )


def push_node_images(images: NodeImages, registry: str) -> NodeImages:
    """Push every image to the plain-HTTP registry at ``registry`` (``127.0.0.1:PORT``); the same
    images under the registry's references, which the node pulls and pods name."""

    def push(image: NodeImage) -> NodeImage:
        destination = registry_ref(registry, image.ref)
        digest = push_image(image.ref, image.archive, destination, tls_verify=False)
        return NodeImage(destination, image.archive, digest)

    return NodeImages(push(images.sandbox), tuple(push(image) for image in images.others))


def _host_of(ref: str) -> str:
    """The registry host of a reference (``127.0.0.1:5000/x:1``, ``127.0.0.1:5000/x@sha256:...``); empty
    for an image id (``sha256:...``), which the CRI records beside the references it pulled."""
    return ref.split("/", 1)[0] if "/" in ref else ""


def stale_images(listing: str, wanted: dict[str, str]) -> list[str]:
    """The references of ``ctr images list`` output to delete when the node needs ``wanted`` (reference:
    manifest digest). Images of another digest go entirely. Of a wanted digest, the references under
    one registry host stay (that of ``wanted`` if present, else the first listed: an earlier run's
    registry): they keep the image's layers and snapshots in the store, so the node's pull from the
    new registry fetches only the manifest and config; those under other hosts go."""
    present = []
    for line in listing.splitlines()[1:]:
        fields = line.split()
        if len(fields) >= 3:
            present.append((fields[0], fields[2]))
    wanted_hosts: dict[str, set[str]] = {}
    for ref, digest in wanted.items():
        wanted_hosts.setdefault(digest, set()).add(_host_of(ref))
    kept_host: dict[str, str] = {}
    for ref, digest in present:
        if _host_of(ref) and _host_of(ref) in wanted_hosts.get(digest, set()):
            kept_host[digest] = _host_of(ref)
    for ref, digest in present:
        if _host_of(ref) and digest in wanted_hosts:
            kept_host.setdefault(digest, _host_of(ref))
    return [
        ref
        for ref, digest in present
        if ref not in wanted
        and (digest not in wanted_hosts or (_host_of(ref) and _host_of(ref) != kept_host.get(digest)))
    ]


def unavailable_reason() -> str | None:
    """Why this machine cannot run a real node (not root, a missing package), or None."""
    if os.geteuid() != 0:
        return "the real node (kubelet, containerd, bridge, iptables) needs root"
    missing = sorted({package for command, package in REQUIRED_COMMANDS.items() if not shutil.which(command)})
    if not Path("/usr/lib/cni/bridge").exists():
        missing.append("containernetworking-plugins")
    if missing:
        return f"the real node needs the Debian packages {', '.join(missing)} (scripts/setup installs them)"
    return None


def _run(*command: str, check: bool = True, timeout: float = 60) -> subprocess.CompletedProcess[str]:
    result = subprocess.run(command, capture_output=True, text=True, timeout=timeout, check=False)
    if check and result.returncode != 0:
        raise RealNodeError(f"`{' '.join(command)}` exited {result.returncode}: {result.stderr.strip()}")
    return result


def _read_sysctl(name: str) -> str | None:
    try:
        return (Path("/proc/sys") / name).read_text().strip()
    except OSError:
        return None


def _write_sysctl(name: str, value: str) -> None:
    with contextlib.suppress(OSError):
        path = Path("/proc/sys") / name
        if path.read_text().strip() != value:
            path.write_text(value + "\n")


# -- the machine-wide lock and what a killed holder left behind --------------------------------------


class MachineLock:
    """An exclusive ``flock`` on :data:`MACHINE_LOCK`, with the holder recorded in :data:`HOLDER_FILE`."""

    def __init__(self, lock_path: Path = MACHINE_LOCK, holder_path: Path = HOLDER_FILE) -> None:
        self.lock_path, self.holder_path = lock_path, holder_path
        self._file: IO[str] | None = None

    def acquire(self, holder: dict[str, Any], timeout: float = 0.0) -> dict[str, Any] | None:
        """Take the lock (waiting up to ``timeout`` seconds); the previous, dead holder's record, if any."""
        self.lock_path.parent.mkdir(parents=True, exist_ok=True)
        lock = self.lock_path.open("a")
        deadline = time.monotonic() + timeout
        while True:
            try:
                fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
                break
            except BlockingIOError:
                if time.monotonic() >= deadline:
                    lock.close()
                    current = self._read_holder() or {}
                    raise RealNodeBusy(
                        "another local cluster on this machine runs the real node "
                        f"(pid {current.get('pid', '?')}, directory {current.get('root', '?')}); only one "
                        "can run at a time: stop it (chute-operator dev down) or start without a real node "
                        "(dev up --no-real-node)"
                    ) from None
                time.sleep(0.5)
        self._file = lock
        previous = self._read_holder()
        self.record(holder)
        return previous

    def record(self, holder: dict[str, Any]) -> None:
        """Rewrite the holder's record (what a later holder needs to clean up after it)."""
        temporary = self.holder_path.with_suffix(".tmp")
        temporary.write_text(json.dumps(holder) + "\n")
        temporary.replace(self.holder_path)

    def _read_holder(self) -> dict[str, Any] | None:
        try:
            holder = json.loads(self.holder_path.read_text())
        except (OSError, ValueError):
            return None
        return holder if isinstance(holder, dict) else None

    def release(self) -> None:
        if self._file is None:
            return
        self.holder_path.unlink(missing_ok=True)
        fcntl.flock(self._file, fcntl.LOCK_UN)
        self._file.close()
        self._file = None


def _mounts_under(root: Path) -> list[str]:
    """Mount points at or below ``root``, deepest first."""
    prefix = str(root).rstrip("/") + "/"
    points = []
    with contextlib.suppress(OSError):
        for line in Path("/proc/self/mountinfo").read_text().splitlines():
            point = line.split()[4].replace("\\040", " ")
            if point.startswith(prefix):
                points.append(point)
    return sorted(set(points), key=lambda p: p.count("/"), reverse=True)


def _network_namespaces(paths: NodePaths) -> list[str]:
    """The network namespaces of the node's pods, from their sandboxes' runtime bundles."""
    found = []
    bundles = paths.containerd_state / "io.containerd.runtime.v2.task" / NAMESPACE
    for config in bundles.glob("*/config.json"):
        with contextlib.suppress(OSError, ValueError, KeyError, TypeError):
            for namespace in json.loads(config.read_text())["linux"]["namespaces"]:
                if namespace.get("type") == "network" and namespace.get("path"):
                    found.append(str(namespace["path"]))
    return sorted(set(found))


def _processes_naming(text: str) -> list[int]:
    pids = []
    for proc in Path("/proc").iterdir():
        if not proc.name.isdigit() or int(proc.name) == os.getpid():
            continue
        with contextlib.suppress(OSError):
            if text in proc.joinpath("cmdline").read_bytes().decode(errors="replace"):
                pids.append(int(proc.name))
    return pids


def remove_containers(paths: NodePaths) -> None:
    """Kill and delete every container runc runs for this node, then its pods' network namespaces,
    its runtime shims and its mounts: what is left when containerd and the kubelet are gone."""
    namespaces = _network_namespaces(paths)
    runc_root = paths.runc_root / NAMESPACE
    if runc_root.is_dir():
        for state in runc_root.iterdir():
            _run("runc", "--root", str(runc_root), "delete", "--force", state.name, check=False)
    for pid in _processes_naming(str(paths.containerd_socket)):
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGKILL)
    for namespace in namespaces:
        _run("umount", namespace, check=False)
        with contextlib.suppress(OSError):
            Path(namespace).unlink()
    for point in _mounts_under(paths.root):
        _run("umount", "-l", point, check=False)


def _kube_proxy_cleanup(kube_proxy: Path, log: Path) -> None:
    """kube-proxy's own removal of every rule it made (it leaves them when it exits)."""
    if not kube_proxy.exists():
        return
    log.parent.mkdir(parents=True, exist_ok=True)
    with log.open("ab") as output:
        subprocess.run(
            [str(kube_proxy), "--cleanup", "--v=0"],
            stdout=output,
            stderr=subprocess.STDOUT,
            timeout=60,
            check=False,
        )


def _remove_kubelet_traces(device_plugin_dir: Path) -> None:
    """The kubelet's files outside its root dir (device-plugin socket and checkpoint) and its pods'
    cgroups (empty once the containers are gone), so a stopped node leaves nothing behind."""
    for name in ("kubelet.sock", "kubelet_internal_checkpoint"):
        (device_plugin_dir / name).unlink(missing_ok=True)
    cni_cache = Path("/var/lib/cni")  # libcni's result cache, empty once every sandbox is torn down
    for directory in (device_plugin_dir, device_plugin_dir.parent, cni_cache / "results", cni_cache):
        with contextlib.suppress(OSError):
            directory.rmdir()
    for controller in Path("/sys/fs/cgroup").iterdir():
        kubepods = controller / "kubepods"
        if not kubepods.is_dir():
            continue
        for directory in sorted(
            (p for p in kubepods.rglob("*") if p.is_dir()), key=lambda p: len(p.parts), reverse=True
        ):
            with contextlib.suppress(OSError):
                directory.rmdir()
        with contextlib.suppress(OSError):
            kubepods.rmdir()


KUBELET_CHAINS = ("KUBE-FIREWALL", "KUBE-KUBELET-CANARY", "KUBE-IPTABLES-HINT")
"""The iptables chains the kubelet makes (kube-proxy's own cleanup leaves them)."""


def kubelet_rule_deletions(rules: str) -> list[list[str]]:
    """``-D`` arguments for the rules of ``iptables -S`` output that jump to a kubelet chain."""
    deletions = []
    for line in rules.splitlines():
        parts = line.split()
        jumps = len(parts) >= 4 and parts[0] == "-A" and "-j" in parts[:-1]
        if jumps and parts[1] not in KUBELET_CHAINS and parts[parts.index("-j") + 1] in KUBELET_CHAINS:
            deletions.append(["-D", *parts[1:]])
    return deletions


def _remove_kubelet_iptables() -> None:
    for binary in ("iptables", "ip6tables"):
        if shutil.which(binary) is None:
            continue
        for table in ("filter", "nat", "mangle"):
            listed = _run(binary, "-w", "-t", table, "-S", check=False)
            if listed.returncode != 0:
                continue
            for deletion in kubelet_rule_deletions(listed.stdout):
                _run(binary, "-w", "-t", table, *deletion, check=False)
            for chain in KUBELET_CHAINS:
                if f"-N {chain}" in listed.stdout:
                    _run(binary, "-w", "-t", table, "-F", chain, check=False)
                    _run(binary, "-w", "-t", table, "-X", chain, check=False)


def _delete_bridge(name: str) -> None:
    if Path(f"/sys/class/net/{name}").exists():
        _run("ip", "link", "del", name, check=False)


def remove_stale_real_node() -> None:
    """If no cluster runs the real node but a killed one left it behind, remove what it left."""
    if os.geteuid() != 0 or not HOLDER_FILE.exists():
        return
    lock = MachineLock()
    try:
        previous = lock.acquire({"pid": os.getpid(), "root": "", "bridge": ""})
    except RealNodeBusy:
        return
    try:
        if previous and previous.get("root"):
            RealNode.remove_leftovers(toolset(), previous)
    finally:
        lock.release()


# -- the node ---------------------------------------------------------------------------------------


class RealNode:
    """One real Kubernetes node on this machine, its files under ``root``, its logs in ``log_dir``."""

    def __init__(
        self,
        tools: Toolset,
        root: Path,
        log_dir: Path,
        *,
        images: NodeImages,
        registry: str,
        settings: RealNodeSettings | None = None,
        lock_timeout: float = 0.0,
        image_store: Path | None = None,
    ) -> None:
        self.tools = tools
        self.paths = NodePaths(root, image_store or kept_image_store())
        self.log_dir = log_dir
        self.settings = settings or RealNodeSettings.from_env()
        self.sandbox_image = images.sandbox
        self.images = images.others
        """The images pods run (``images[0]``: the project's), as pods name them."""
        self.registry = registry
        """``host:port`` of the plain-HTTP registry the node's containerd pulls from."""
        self.lock_timeout = lock_timeout
        self.components: list[Component] = []
        self.milestones: dict[str, float] = {}
        self._lock = MachineLock()
        self._sysctls: dict[str, str] = {}
        self._started_network = False

    @property
    def name(self) -> str:
        return self.settings.name

    def ctr(self, *args: str, timeout: float = 300) -> subprocess.CompletedProcess[str]:
        """``ctr`` against the node's containerd, in the CRI's namespace."""
        return _run("ctr", "--address", str(self.paths.containerd_socket), "--namespace", NAMESPACE, *args,
                    timeout=timeout)  # fmt: skip

    # -- start --------------------------------------------------------------------------------

    def start(self, server: str, ca: KeyPair, api: ApiClient, deadline: float) -> None:
        """Bring the node up until it is Ready with its simulated GPUs allocatable."""
        reason = unavailable_reason()
        if reason:
            raise RealNodeError(reason)
        missing = [str(p) for p in self.tools.node_paths() if not p.exists()]
        if missing:
            raise RealNodeError(f"binaries missing (run chute-operator dev build): {', '.join(missing)}")
        began = time.monotonic()
        holder: dict[str, Any] = {"pid": os.getpid(), "root": str(self.paths.root)}
        holder["bridge"] = self.settings.bridge
        previous = self._lock.acquire(holder, self.lock_timeout)
        deadline += time.monotonic() - began  # the wait for another cluster's node is not start time
        if previous and previous.get("root"):
            self.remove_leftovers(self.tools, previous, self.log_dir)
        saved = {name: _read_sysctl(name) for name in RESTORED_SYSCTLS}
        self._sysctls = {name: value for name, value in saved.items() if value is not None}
        self._lock.record({**holder, "sysctls": self._sysctls})
        self._milestone("machine lock", began)
        shutil.rmtree(self.paths.root, ignore_errors=True)
        self.paths.root.mkdir(parents=True)
        kubeconfigs = self._write_files(server, ca)
        self._milestone("configuration", began)

        self._create_bridge()
        containerd = self._component("containerd", ["containerd", f"--config={self.paths.containerd_config}"])
        containerd.start()
        self._wait(deadline, containerd, "containerd to answer", self._containerd_ready)
        self._remove_old_containers()
        self._milestone("containerd ready", began)
        self._prune_images()
        self._milestone("image store pruned", began)

        kubelet = self._component(
            "kubelet", kubelet_command(self.tools.kubelet, self.paths, self.settings, kubeconfigs["kubelet"])
        )
        kubelet.start()
        plugin = device_plugin_command(self.tools.gpu_device_plugin, self.paths, self.settings)
        self._component("gpu-device-plugin", plugin).start()
        proxy = self._component(
            "kube-proxy", [str(self.tools.kube_proxy), f"--config={self.paths.kube_proxy_config}", "--v=1"]
        )
        proxy.start()
        self._wait(deadline, proxy, "kube-proxy /healthz", self._kube_proxy_healthy)
        self._milestone("kube-proxy healthy", began)
        if self.settings.network_policies:
            self._start_enforcer(api, kubeconfigs["kube-network-policies"], deadline)
            self._milestone("NetworkPolicy enforcer synced", began)
        what = f"node {self.name} to be Ready with {GPU_RESOURCE}"
        self._wait(deadline, kubelet, what, lambda: self._ready(api))
        self._milestone("node Ready", began)

    def _start_enforcer(self, api: ApiClient, kubeconfig: Path, deadline: float) -> None:
        """kube-network-policies with its RBAC; ready once its nftables table is in place."""
        for path, body in netpol.rbac_objects(NETWORK_POLICIES_USER):
            api.create(path, body)
        netpol.remove_table()
        command = netpol.enforcer_command(
            self.tools.network_policies, kubeconfig, self.name, self._healthz_ports["kube-network-policies"]
        )
        enforcer = self._component("kube-network-policies", command)
        enforcer.start()
        self._wait(deadline, enforcer, "the NetworkPolicy enforcer's nftables table", netpol.table_present)

    def enforcer_metrics_url(self) -> str:
        """The enforcer's ``/metrics`` (packets judged, by verdict: :func:`netpol.verdicts`)."""
        return f"http://127.0.0.1:{self._healthz_ports['kube-network-policies']}/metrics"

    def _milestone(self, name: str, began: float) -> None:
        self.milestones[name] = round(time.monotonic() - began, 3)

    def _write_files(self, server: str, ca: KeyPair) -> dict[str, Path]:
        paths, settings = self.paths, self.settings
        pki = create_node_pki(paths.pki, ca, settings.name, settings.node_ip)
        kubeconfigs = {
            "kubelet": write_kubeconfig(
                paths.root / "kubelet.kubeconfig", server, ca.cert, f"system:node:{settings.name}",
                pki.kubelet_client,
            ),
            "kube-proxy": write_kubeconfig(
                paths.root / "kube-proxy.kubeconfig", server, ca.cert, "system:kube-proxy", pki.kube_proxy
            ),
            "kube-network-policies": write_kubeconfig(
                paths.root / "kube-network-policies.kubeconfig", server, ca.cert, NETWORK_POLICIES_USER,
                pki.network_policies,
            ),
        }  # fmt: skip
        components = ("kubelet", "kube-proxy", "kube-network-policies")
        self._healthz_ports = {name: free_port() for name in components}
        paths.containerd_config.parent.mkdir(parents=True, exist_ok=True)
        paths.containerd_config.write_text(containerd_config(paths, self.sandbox_image.ref))
        hosts = paths.registry_hosts_dir / self.registry / "hosts.toml"
        hosts.parent.mkdir(parents=True, exist_ok=True)
        hosts.write_text(registry_hosts_toml(self.registry))
        paths.cni_conf_dir.mkdir(parents=True, exist_ok=True)
        (paths.cni_conf_dir / "10-chute-real-node.conflist").write_text(
            json.dumps(cni_conflist(paths, settings), indent=2) + "\n"
        )
        paths.kubelet_config.write_text(
            dump_yaml(
                kubelet_config(
                    paths, settings, ca_cert=ca.cert,
                    serving=(pki.kubelet_serving.cert, pki.kubelet_serving.key),
                    port=free_port(), healthz_port=self._healthz_ports["kubelet"],
                )
            )
        )  # fmt: skip
        paths.kube_proxy_config.write_text(
            dump_yaml(
                kube_proxy_config(
                    settings, kubeconfig=kubeconfigs["kube-proxy"],
                    healthz_port=self._healthz_ports["kube-proxy"], metrics_port=free_port(),
                )
            )
        )  # fmt: skip
        return kubeconfigs

    def _create_bridge(self) -> None:
        """The pods' bridge with the node's address: made here (not by the CNI plugin at the first pod)
        so the kubelet has its InternalIP on this machine from the start."""
        bridge = self.settings.bridge
        if not Path(f"/sys/class/net/{bridge}").exists():
            _run("ip", "link", "add", bridge, "type", "bridge")
        _run("ip", "addr", "replace", f"{self.settings.node_ip}/{self.settings.prefix_length}", "dev", bridge)
        _run("ip", "link", "set", bridge, "up")
        self._started_network = True

    def _remove_old_containers(self) -> None:
        """Containers an earlier node left in the kept image store (their processes are gone)."""
        for task in self.ctr("tasks", "list", "--quiet").stdout.split():
            _run("ctr", "--address", str(self.paths.containerd_socket), "--namespace", NAMESPACE,
                 "tasks", "delete", "--force", task, check=False)  # fmt: skip
        containers = self.ctr("containers", "list", "--quiet").stdout.split()
        if containers:
            self.ctr("containers", "delete", *containers)
        for kind in ("sandboxes", "containers"):
            for directory in (self.paths.containerd_root / "io.containerd.grpc.v1.cri" / kind).glob("*"):
                shutil.rmtree(directory, ignore_errors=True)

    def _prune_images(self) -> None:
        """Delete the references earlier nodes pulled that this one does not use (see :func:`stale_images`);
        nothing is imported: the kubelet pulls from the registry."""
        wanted = {image.ref: image.digest for image in (self.sandbox_image, *self.images)}
        stale = stale_images(self.ctr("images", "list").stdout, wanted)
        if stale:
            self.ctr("images", "delete", *stale)

    def _component(self, name: str, command: list[str]) -> Component:
        component = Component(name, command, self.log_dir / f"{name}.log")
        self.components.append(component)
        return component

    def _wait(self, deadline: float, component: Component, what: str, probe: Callable[[], bool]) -> None:
        while True:
            if not component.running():
                code = component.process.returncode if component.process else None
                raise RealNodeError(
                    f"{component.name} exited ({code}) while waiting for {what}; its log ends:\n"
                    + component.tail(40)
                )
            if probe():
                return
            if time.monotonic() > deadline:
                logs = "\n".join(f"--- {c.name} ({c.log}) ---\n{c.tail(15)}" for c in self.components)
                raise RealNodeError(f"timed out waiting for {what}.\n{logs}")
            time.sleep(0.2)

    def _containerd_ready(self) -> bool:
        if not self.paths.containerd_socket.exists():
            return False
        try:
            self.ctr("version", timeout=5)
        except (RealNodeError, subprocess.TimeoutExpired):
            return False
        return True

    def _kube_proxy_healthy(self) -> bool:
        url = f"http://127.0.0.1:{self._healthz_ports['kube-proxy']}/healthz"
        try:
            # http to the real node's own health address (bandit B310)
            with urllib.request.urlopen(url, timeout=2) as response:  # nosec B310
                return bool(response.status == 200)
        except OSError:
            return False

    def _ready(self, api: ApiClient) -> bool:
        try:
            node = api.get(f"/api/v1/nodes/{self.name}")
        except ApiError:
            return False
        status = node.get("status") or {}
        ready = any(
            c.get("type") == "Ready" and c.get("status") == "True" for c in status.get("conditions") or []
        )
        gpus = (status.get("allocatable") or {}).get(GPU_RESOURCE)
        return ready and gpus == str(self.settings.gpu.count)

    # -- stop ---------------------------------------------------------------------------------

    def running(self) -> bool:
        return all(component.running() for component in self.components)

    def pids(self) -> dict[str, int]:
        return {c.name: c.process.pid for c in self.components if c.process is not None}

    def stop(self, api: ApiClient | None = None) -> None:
        """Remove the node's pods, stop its processes, and undo what it changed on the machine."""
        if api is not None and any(c.name == "kubelet" and c.running() for c in self.components):
            self._evict_pods(api)
        by_name = {c.name: c for c in self.components}
        for name in ("kube-network-policies", "kube-proxy", "kubelet", "gpu-device-plugin"):
            component = by_name.get(name)
            if component is not None:
                component.terminate()
                component.wait(15)
        if "kube-network-policies" in by_name:
            netpol.remove_table()  # it leaves its table when terminated: nothing would read its queue
        if "kube-proxy" in by_name:
            _kube_proxy_cleanup(self.tools.kube_proxy, self.log_dir / "kube-proxy.log")
        if "kubelet" in by_name:
            _remove_kubelet_iptables()
        remove_containers(self.paths)
        containerd = by_name.get("containerd")
        if containerd is not None:
            containerd.terminate()
            containerd.wait(15)
        for point in _mounts_under(self.paths.root):
            _run("umount", "-l", point, check=False)
        if by_name:
            _remove_kubelet_traces(self.paths.device_plugin_dir)
        self.components = []
        if self._started_network:
            _delete_bridge(self.settings.bridge)
            self._started_network = False
        for name, value in self._sysctls.items():
            _write_sysctl(name, value)
        self._sysctls = {}
        self._lock.release()

    def _evict_pods(self, api: ApiClient, timeout: float = 20.0) -> None:
        """Delete the node's pods at once and give the kubelet a moment to tear down their sandboxes."""
        path = f"/api/v1/pods?fieldSelector=spec.nodeName%3D{self.name}"
        try:
            pods = api.get(path)["items"]
            for pod in pods:
                meta = pod["metadata"]
                api.request("DELETE", f"/api/v1/namespaces/{meta['namespace']}/pods/{meta['name']}",
                            {"gracePeriodSeconds": 0})  # fmt: skip
        except (ApiError, KeyError):
            return
        deadline = time.monotonic() + timeout
        while pods and time.monotonic() < deadline and self._sandboxes_running():
            time.sleep(0.5)

    def _sandboxes_running(self) -> bool:
        with contextlib.suppress(RealNodeError, subprocess.TimeoutExpired):
            return "RUNNING" in self.ctr("tasks", "list", timeout=10).stdout
        return False

    @staticmethod
    def remove_leftovers(tools: Toolset, previous: dict[str, Any], log_dir: Path | None = None) -> None:
        """What a killed holder of the lock left: its containers, mounts, rules and bridge."""
        root = Path(str(previous["root"]))
        remove_containers(NodePaths(root))
        _kube_proxy_cleanup(tools.kube_proxy, (log_dir or MACHINE_STATE_DIR) / "kube-proxy-cleanup.log")
        netpol.remove_table()
        _remove_kubelet_iptables()
        _delete_bridge(str(previous.get("bridge") or RealNodeSettings().bridge))
        _remove_kubelet_traces(DEVICE_PLUGIN_DIR)
        for name, value in (previous.get("sysctls") or {}).items():
            _write_sysctl(str(name), str(value))
