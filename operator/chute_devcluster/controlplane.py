"""A real Kubernetes control plane on loopback: etcd, kube-apiserver, controller-manager, scheduler,
and kwok simulating the (GPU) nodes and the lives of their pods.

    with ControlPlane() as cp:
        cp.kubectl("get", "nodes")

Every process listens on 127.0.0.1 on a free port, logs to ``<work_dir>/logs/<name>.log`` and is
stopped by :meth:`ControlPlane.stop` (also at interpreter exit, and by the kernel if this process
dies: the children get SIGKILL when the thread that started them ends).
"""

from __future__ import annotations

import atexit
import ipaddress
import os
import re
import shlex
import shutil
import ssl
import subprocess
import sys
import tempfile
import time
import urllib.request
from collections.abc import Callable, Sequence
from functools import partial
from pathlib import Path
from types import TracebackType

from chute_devcluster.apiclient import ApiClient, ApiError
from chute_devcluster.binaries import Toolset, toolset
from chute_devcluster.images import ImageBuildError
from chute_devcluster.kubeconfig import write_kubeconfig
from chute_devcluster.netguard import NetworkGuard, NetworkGuardError
from chute_devcluster.nodes import (
    MANAGED_NODES_SELECTOR,
    NodePool,
    default_node_pools,
    node_manifests,
)
from chute_devcluster.pki import FRONT_PROXY_CLIENT_NAME, Pki, create_pki
from chute_devcluster.processes import Component, free_port, pid_alive
from chute_devcluster.realnode import NodeImages, RealNode, RealNodeError, push_node_images
from chute_devcluster.realnode_config import RealNodeSettings
from chute_devcluster.registry import (
    REGISTRY_ENV,
    REGISTRY_HOST,
    registry_command,
    registry_ready,
    write_registry_config,
)
from chute_devcluster.stages import write_stages

SERVICE_CLUSTER_IP_RANGE = "10.96.0.0/16"
"""The default Service range; the network guard keeps it on this machine."""
POD_CIDR = "10.244.0.0/16"
"""The default pod range (kwok's pod IPs come from it); the network guard keeps it on this machine."""
SERVICE_ACCOUNT_ISSUER = "https://kubernetes.default.svc.cluster.local"
NODE_IP = "127.0.0.1"
"""Every simulated node's InternalIP: the API server's calls to a "kubelet" reach kwok on loopback."""
WORK_DIR_PREFIX = "chute-cp-"
OWNER_FILE = "owner.pid"


GUARD_COMMENT = "chute-operator dev pid {pid}: the API server answers this machine and its pods"
_GUARD_PID = re.compile(r"chute-operator dev pid (\d+): the API server answers")


def apiserver_guard_rule(port: int, pod_subnet: str, owner_pid: int | None = None) -> list[str]:
    """iptables INPUT rule arguments: REJECT TCP to ``port`` unless it comes from this machine's own
    addresses or from ``pod_subnet`` (the real node's pods). The comment names the process that
    inserted it (``owner_pid``, by default this one), so a rule a killed control plane left is found."""
    comment = GUARD_COMMENT.format(pid=os.getpid() if owner_pid is None else owner_pid)
    return [
        "-p", "tcp", "--dport", str(port), "!", "-s", pod_subnet,
        "-m", "addrtype", "!", "--src-type", "LOCAL",
        "-m", "comment", "--comment", comment,
        "-j", "REJECT", "--reject-with", "tcp-reset",
    ]  # fmt: skip


def stale_guard_deletions(rules: str, alive: Callable[[int], bool] = pid_alive) -> list[list[str]]:
    """``-D`` arguments for the guards in ``iptables -S`` output whose control plane no longer runs."""
    deletions = []
    for line in rules.splitlines():
        found = _GUARD_PID.search(line)
        if line.startswith("-A INPUT ") and found and not alive(int(found.group(1))):
            deletions.append(["-D", *shlex.split(line)[1:]])
    return deletions


class ControlPlaneError(RuntimeError):
    """The control plane could not be started; the message carries the relevant log lines."""


class KubectlError(subprocess.CalledProcessError):
    """A kubectl call that failed; unlike its base, the message includes kubectl's stderr."""

    def __str__(self) -> str:
        command = " ".join(str(part) for part in self.cmd[3:]) if isinstance(self.cmd, list) else self.cmd
        stderr = self.stderr.strip() if isinstance(self.stderr, str) else self.stderr
        return f"kubectl {command} exited {self.returncode}: {stderr}"


def remove_stale_work_dirs() -> None:
    """Delete temporary work dirs whose owning process is gone (left by a killed test run)."""
    for directory in Path(tempfile.gettempdir()).glob(WORK_DIR_PREFIX + "*"):
        try:
            owner = int((directory / OWNER_FILE).read_text())
        except (OSError, ValueError):
            continue
        if not pid_alive(owner):
            shutil.rmtree(directory, ignore_errors=True)


_running: set[ControlPlane] = set()


@atexit.register
def _stop_all() -> None:
    for control_plane in list(_running):
        control_plane.stop()


class ControlPlane:
    """etcd + kube-apiserver + kube-controller-manager + kube-scheduler + kwok, on loopback.

    ``work_dir``: where certificates, kubeconfigs, data and logs go. Without it a temporary one
    is made and removed by :meth:`stop`; with it only the etcd data is removed and the logs stay.
    ``node_pools``: the simulated nodes (default: :func:`default_node_pools`).
    ``kwok_log_level``: ``INFO`` logs every pod patch and node lease renewal, ``WARN`` only trouble.
    ``pod_cidr``, ``service_cidr``: the cluster's ranges, kept on this machine by
    :attr:`network_guard` (installed before any process starts, removed by :meth:`stop`).
    ``real_node``: also run a real node (kubelet, containerd, kube-proxy) with these settings, and the
    local registry (:mod:`chute_devcluster.registry`, ``<work_dir>/registry``) that its containerd pulls
    ``real_node_images`` from once they are pushed there; see :mod:`chute_devcluster.realnode`.
    ``real_node_lock_timeout``: how long to wait for another cluster's real node to go.
    ``real_node_image_store``: containerd's root for the real node (default: kept in the cache).
    ``apiserver_args``: extra kube-apiserver flags (e.g. a low ``--max-requests-inflight``, an audit log).
    """

    def __init__(
        self,
        work_dir: Path | None = None,
        node_pools: Sequence[NodePool] | None = None,
        tools: Toolset | None = None,
        startup_timeout: float = 120.0,
        kwok_log_level: str = "INFO",
        pod_cidr: str = POD_CIDR,
        service_cidr: str = SERVICE_CLUSTER_IP_RANGE,
        real_node: RealNodeSettings | None = None,
        real_node_images: NodeImages | None = None,
        real_node_lock_timeout: float = 0.0,
        real_node_image_store: Path | None = None,
        apiserver_args: Sequence[str] = (),
    ) -> None:
        if real_node is not None and real_node_images is None:
            raise ControlPlaneError("a real node needs its images (real_node_images)")
        self.tools = tools or toolset()
        self.real_node_settings = real_node
        self.real_node_images = real_node_images
        self.real_node_lock_timeout = real_node_lock_timeout
        self.real_node_image_store = real_node_image_store
        self.real_node: RealNode | None = None
        self.registry = ""
        """``127.0.0.1:PORT`` of the local registry (plain HTTP) while it runs, else empty."""
        self.node_pools = tuple(default_node_pools() if node_pools is None else node_pools)
        self.startup_timeout = startup_timeout
        self.kwok_log_level = kwok_log_level
        self.apiserver_args = tuple(apiserver_args)
        self._etcd_port = 0
        self._apiserver_guard: list[str] | None = None
        try:
            node_subnets = (real_node.pod_subnet,) if real_node is not None else ()
            self.network_guard = NetworkGuard(pod_cidr, service_cidr, node_subnets)
        except NetworkGuardError as error:
            raise ControlPlaneError(str(error)) from None
        self.pod_cidr, self.service_cidr = pod_cidr, service_cidr
        self._own_work_dir = work_dir is None
        self._work_dir = work_dir.resolve() if work_dir else None
        self._components: list[Component] = []
        self._api: ApiClient | None = None
        self._pki: Pki | None = None
        self.server = ""
        self.startup_seconds = 0.0
        self.milestones: dict[str, float] = {}
        """Seconds from the start of :meth:`start` to each step of the last start."""

    # -- public surface -------------------------------------------------------------------------

    @property
    def work_dir(self) -> Path:
        if self._work_dir is None:
            raise ControlPlaneError("the control plane has not been started")
        return self._work_dir

    @property
    def kubeconfig(self) -> Path:
        """The admin kubeconfig (system:masters), self-contained."""
        return self.work_dir / "kubeconfig"

    @property
    def log_dir(self) -> Path:
        return self.work_dir / "logs"

    @property
    def api(self) -> ApiClient:
        if self._api is None:
            raise ControlPlaneError("the control plane has not been started")
        return self._api

    def project_image(self) -> str:
        """The project image as the real node's pods name it (in the local registry)."""
        if self.real_node is None or not self.real_node.images:
            raise ControlPlaneError("no real node runs: its images are pushed only with it")
        return self.real_node.images[0].ref

    def node_names(self) -> list[str]:
        """The simulated nodes' names (the real node's is ``real_node.name``)."""
        return [name for pool in self.node_pools for name in pool.node_names()]

    def all_components(self) -> list[Component]:
        return self._components + (self.real_node.components if self.real_node else [])

    def pids(self) -> dict[str, int]:
        return {c.name: c.process.pid for c in self.all_components() if c.process and c.running()}

    def running(self) -> bool:
        return bool(self._components) and all(c.running() for c in self.all_components())

    def kubectl(
        self, *args: str, input: str | None = None, check: bool = True, timeout: float = 120.0
    ) -> subprocess.CompletedProcess[str]:
        """Run kubectl against this control plane; with ``check`` a failure raises :class:`KubectlError`."""
        command = [
            str(self.tools.kubectl),
            f"--kubeconfig={self.kubeconfig}",
            f"--cache-dir={self.work_dir / 'kubectl-cache'}",
            *args,
        ]
        result = subprocess.run(
            command, input=input, capture_output=True, text=True, timeout=timeout, check=False
        )
        if check and result.returncode != 0:
            raise KubectlError(result.returncode, command, result.stdout, result.stderr)
        return result

    def log_tail(self, name: str, lines: int = 25) -> str:
        for component in self.all_components():
            if component.name == name:
                return component.tail(lines)
        return f"(no component {name})"

    def logs_summary(self, lines: int = 15) -> str:
        """The last lines of every component's log, for error messages."""
        return "\n".join(f"--- {c.name} ({c.log}) ---\n{c.tail(lines)}" for c in self.all_components())

    def __enter__(self) -> ControlPlane:
        self.start()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self.stop()

    # -- lifecycle ------------------------------------------------------------------------------

    def start(self) -> Path:
        """Start everything, create the nodes and wait until they are Ready; return the kubeconfig."""
        needed = self.tools.control_plane_paths()
        if self.real_node_settings is not None:
            needed += self.tools.node_paths()
        missing = [str(path) for path in needed if not path.exists()]
        if missing:
            raise ControlPlaneError(
                f"binaries missing (build them: chute-operator dev build): {', '.join(missing)}"
            )
        started = time.monotonic()
        for attempt in (1, 2):
            try:
                self._start_once()
                break
            except ControlPlaneError as error:
                port_clash = "address already in use" in self.logs_summary(60)
                self.stop(remove=False)
                if attempt == 2 or not port_clash:
                    raise error
        self.startup_seconds = time.monotonic() - started
        return self.kubeconfig

    @property
    def etcd_port(self) -> int:
        """etcd's client port on loopback (plain HTTP)."""
        return self._etcd_port

    def restart(self, name: str, kill: bool = False, while_down: Callable[[], object] | None = None) -> float:
        """Stop one component (SIGTERM, or SIGKILL with ``kill``) and start it again with the same flags,
        ports and data; return the seconds from the stop to healthy again (etcd, kube-apiserver: probed).
        ``while_down`` runs between the stop and the start (a test's change nothing can watch)."""
        component = next((c for c in self._components if c.name == name), None)
        if component is None or component.process is None:
            raise ControlPlaneError(f"no running component {name!r}")
        stopped = time.monotonic()
        if kill:
            component.process.kill()
        else:
            component.terminate()
        component.wait(15)
        if while_down is not None:
            while_down()
        component.start()
        probes: dict[str, Callable[[], bool]] = {
            "etcd": partial(self._etcd_healthy, self._etcd_port),
            "kube-apiserver": self._apiserver_ready,
        }
        if name in probes:
            self._wait(
                time.monotonic() + self.startup_timeout, component, f"{name} after a restart", probes[name]
            )
        return time.monotonic() - stopped

    def _prepare_work_dir(self) -> Path:
        if self._own_work_dir:
            remove_stale_work_dirs()
            if self._work_dir is None:
                self._work_dir = Path(tempfile.mkdtemp(prefix=WORK_DIR_PREFIX))
        work_dir = self.work_dir
        work_dir.mkdir(parents=True, exist_ok=True)
        (work_dir / OWNER_FILE).write_text(str(os.getpid()))
        shutil.rmtree(work_dir / "etcd", ignore_errors=True)
        return work_dir

    def _start_once(self) -> None:
        began = time.monotonic()
        deadline = began + self.startup_timeout
        self.milestones = {}

        def milestone(name: str) -> None:
            self.milestones[name] = round(time.monotonic() - began, 3)

        work_dir = self._prepare_work_dir()
        _running.add(self)
        try:
            self.network_guard.install()  # before any process starts
        except NetworkGuardError as error:
            raise ControlPlaneError(str(error)) from None
        milestone("network guard")
        etcd_port, etcd_peer_port, apiserver_port = free_port(), free_port(), free_port()
        kcm_port, scheduler_port, kwok_port = free_port(), free_port(), free_port()
        self.server = f"https://127.0.0.1:{apiserver_port}"
        self._etcd_port = etcd_port
        etcd = self._component("etcd", self._etcd_command(etcd_port, etcd_peer_port))
        etcd.start()  # boots while the certificates are made
        registry = self._start_registry() if self.real_node_settings is not None else None

        pki = self._pki = create_pki(
            work_dir / "pki", service_ip=self._kubernetes_service_ip(), extra_ips=self._pod_facing_ips()
        )
        write_kubeconfig(self.kubeconfig, self.server, pki.ca.cert, "admin", pki.admin)
        kubeconfigs = work_dir / "kubeconfigs"
        component_kubeconfig = {
            name: write_kubeconfig(kubeconfigs / f"{name}.kubeconfig", self.server, pki.ca.cert, user, pair)
            for name, user, pair in (
                ("kube-controller-manager", "system:kube-controller-manager", pki.controller_manager),
                ("kube-scheduler", "system:kube-scheduler", pki.scheduler),
                ("kwok", "kwok-controller", pki.kwok),
            )
        }
        stages = write_stages(work_dir / "kwok" / "stages.yaml")
        self._api = ApiClient(self.server, str(pki.ca.cert), pki.admin)
        milestone("certificates")

        self._wait(deadline, etcd, "etcd to be healthy", lambda: self._etcd_healthy(etcd_port))
        milestone("etcd healthy")
        apiserver = self._component("kube-apiserver", self._apiserver_command(pki, apiserver_port, etcd_port))
        if self.real_node_settings is not None:
            self._guard_apiserver_port(apiserver_port)
        apiserver.start()
        self._wait(deadline, apiserver, "kube-apiserver /readyz", self._apiserver_ready)
        milestone("kube-apiserver ready")

        # The controller-manager exits if it starts before RBAC is bootstrapped: after /readyz then.
        kcm = self._component(
            "kube-controller-manager", self._controller_manager_command(pki, component_kubeconfig, kcm_port)
        )
        scheduler = self._component(
            "kube-scheduler", self._scheduler_command(component_kubeconfig["kube-scheduler"], scheduler_port)
        )
        kwok = self._component(
            "kwok",
            self._kwok_command(pki, component_kubeconfig["kwok"], stages, kwok_port),
            env={"KWOK_WORKDIR": str(work_dir / "kwok")},
        )
        for component in (kcm, scheduler, kwok):
            component.start()

        for manifest in node_manifests(self.node_pools):
            self.api.create("/api/v1/nodes", manifest)

        for component, port in ((kcm, kcm_port), (scheduler, scheduler_port)):
            self._wait(
                deadline, component, f"{component.name} /healthz", partial(self._component_healthy, port)
            )
            milestone(f"{component.name} healthy")
        if registry is not None and self.real_node_settings is not None and self.real_node_images is not None:
            self._wait(deadline, registry, "the registry's /v2/", partial(registry_ready, self.registry))
            milestone("registry ready")
            try:
                pushed = push_node_images(self.real_node_images, self.registry)
            except ImageBuildError as error:
                raise ControlPlaneError(
                    f"pushing the real node's images to {self.registry}: {error}"
                ) from None
            milestone("images pushed")
            self.real_node = RealNode(
                self.tools,
                work_dir / "real-node",
                self.log_dir,
                images=pushed,
                registry=self.registry,
                settings=self.real_node_settings,
                lock_timeout=self.real_node_lock_timeout,
                image_store=self.real_node_image_store,
            )
            try:
                self.real_node.start(self.server, pki.ca, self.api, deadline)
            except RealNodeError as error:
                raise ControlPlaneError(f"the real node did not start: {error}") from error
            self.milestones.update({f"real node: {k}": v for k, v in self.real_node.milestones.items()})
            milestone("real node Ready")
        self._wait(deadline, kwok, "every simulated node to be Ready", self._nodes_ready)
        milestone("nodes Ready")
        self._wait(deadline, kcm, "the default ServiceAccount", self._default_service_account_exists)
        milestone("default ServiceAccount")

    def stop(self, remove: bool = True) -> None:
        """Stop every process (the real node first, etcd last); remove the temporary work dir or the data
        (etcd's and the registry's)."""
        if self.real_node is not None:
            apiserver_up = any(c.name == "kube-apiserver" and c.running() for c in self._components)
            self.real_node.stop(self._api if apiserver_up else None)
            self.real_node = None
        waves = (
            [c for c in self._components if c.name not in ("kube-apiserver", "etcd")],
            [c for c in self._components if c.name == "kube-apiserver"],
            [c for c in self._components if c.name == "etcd"],
        )
        for wave in waves:
            for component in wave:
                component.terminate()
            for component in wave:
                component.wait(15)
        self._components = []
        self.registry = ""
        self._remove_apiserver_guard()
        _running.discard(self)
        try:
            self.network_guard.remove()
        except NetworkGuardError as error:
            print(f"warning: the network guard could not be removed: {error}", file=sys.stderr)
        if remove and self._work_dir is not None:
            if self._own_work_dir:
                shutil.rmtree(self._work_dir, ignore_errors=True)
                self._work_dir = None
            else:
                shutil.rmtree(self._work_dir / "etcd", ignore_errors=True)
                shutil.rmtree(self._work_dir / "registry", ignore_errors=True)  # the pushed images: 300 MB
                (self._work_dir / OWNER_FILE).unlink(missing_ok=True)

    # -- the processes --------------------------------------------------------------------------

    def _kubernetes_service_ip(self) -> str:
        """The first address of the Service range: the ``kubernetes`` Service's ClusterIP."""
        return str(ipaddress.IPv4Network(self.service_cidr)[1])

    def _component(self, name: str, command: list[str], env: dict[str, str] | None = None) -> Component:
        component = Component(name, command, self.log_dir / f"{name}.log", env)
        self._components.append(component)
        return component

    def _start_registry(self) -> Component:
        """The local registry, on loopback (the real node's containerd is a host process), its storage
        under the work dir (a fresh one each start: the images are pushed again)."""
        self.registry = f"{REGISTRY_HOST}:{free_port()}"
        root = self.work_dir / "registry"
        shutil.rmtree(root, ignore_errors=True)
        config = write_registry_config(root, self.registry)
        registry = self._component("registry", registry_command(self.tools.registry, config), REGISTRY_ENV)
        registry.start()
        return registry

    def _etcd_command(self, port: int, peer_port: int) -> list[str]:
        client_url, peer_url = f"http://127.0.0.1:{port}", f"http://127.0.0.1:{peer_port}"
        return [
            str(self.tools.etcd),
            "--name=chute-dev",
            f"--data-dir={self.work_dir / 'etcd'}",
            f"--listen-client-urls={client_url}",
            f"--advertise-client-urls={client_url}",
            f"--listen-peer-urls={peer_url}",
            f"--initial-advertise-peer-urls={peer_url}",
            f"--initial-cluster=chute-dev={peer_url}",
            "--unsafe-no-fsync",
            "--log-level=warn",
            "--quota-backend-bytes=2147483648",
        ]

    def _pod_facing_ips(self) -> tuple[str, ...]:
        """The API server's address for pods: the real node's bridge address (none without the node)."""
        return (self.real_node_settings.node_ip,) if self.real_node_settings is not None else ()

    def _apiserver_address_args(self) -> list[str]:
        """Loopback only without the real node. With it, pods must reach the API server through the
        ``kubernetes`` Service: its EndpointSlice (kept by the API server's lease reconciler) lists the
        bridge's address, which kube-proxy DNATs to; EndpointSlices refuse loopback. The bridge exists
        only once the node starts, so the API server binds every address and :meth:`_guard_apiserver_port`
        refuses its port to anything but this machine and the node's pods."""
        if self.real_node_settings is None:
            return [
                "--advertise-address=127.0.0.1",
                "--bind-address=127.0.0.1",
                # The `kubernetes` Service's endpoints would be 127.0.0.1, which EndpointSlices reject.
                "--endpoint-reconciler-type=none",
            ]
        return [
            f"--advertise-address={self.real_node_settings.node_ip}",
            "--bind-address=0.0.0.0",  # its port is guarded: _guard_apiserver_port
            "--endpoint-reconciler-type=lease",
        ]

    def _guard_apiserver_port(self, port: int) -> None:
        """An INPUT rule: the API server's port answers only this machine's own addresses and the real
        node's pods (its bridge subnet); removed by :meth:`stop`, or, if this process is killed, by the
        next control plane that guards its port."""
        assert self.real_node_settings is not None  # nosec B101: only called with the real node
        iptables = shutil.which("iptables") or "/usr/sbin/iptables"
        rule = apiserver_guard_rule(port, self.real_node_settings.pod_subnet)
        listed = subprocess.run([iptables, "-w", "-S", "INPUT"], capture_output=True, text=True, check=False)
        for deletion in stale_guard_deletions(listed.stdout):  # what killed control planes left
            subprocess.run([iptables, "-w", *deletion], capture_output=True, check=False)
        try:
            subprocess.run(
                [iptables, "-w", "-I", "INPUT", "1", *rule], check=True, capture_output=True, text=True
            )
        except (OSError, subprocess.CalledProcessError) as error:
            raise ControlPlaneError(f"guarding the API server's port {port}: {error}") from None
        self._apiserver_guard = rule

    def _remove_apiserver_guard(self) -> None:
        rule, self._apiserver_guard = self._apiserver_guard, None
        iptables = shutil.which("iptables")
        if rule is None or iptables is None:
            return
        for _ in range(10):  # bounded: one copy was inserted
            result = subprocess.run([iptables, "-w", "-D", "INPUT", *rule], capture_output=True, check=False)
            if result.returncode != 0:
                return

    def _apiserver_command(self, pki: Pki, port: int, etcd_port: int) -> list[str]:
        return [
            str(self.tools.kube_apiserver),
            *self._apiserver_address_args(),
            f"--secure-port={port}",
            f"--etcd-servers=http://127.0.0.1:{etcd_port}",
            f"--tls-cert-file={pki.apiserver.cert}",
            f"--tls-private-key-file={pki.apiserver.key}",
            f"--client-ca-file={pki.ca.cert}",
            f"--service-account-issuer={SERVICE_ACCOUNT_ISSUER}",
            f"--service-account-key-file={pki.service_account_pub}",
            f"--service-account-signing-key-file={pki.service_account_key}",
            f"--service-cluster-ip-range={self.service_cidr}",
            "--authorization-mode=Node,RBAC",
            "--allow-privileged=true",
            f"--kubelet-client-certificate={pki.apiserver_kubelet_client.cert}",
            f"--kubelet-client-key={pki.apiserver_kubelet_client.key}",
            "--kubelet-preferred-address-types=InternalIP,Hostname",
            # Request-header authentication, as for aggregated API servers; without it every
            # component's delegated authentication complains about the missing CA forever.
            f"--requestheader-client-ca-file={pki.front_proxy_ca.cert}",
            f"--requestheader-allowed-names={FRONT_PROXY_CLIENT_NAME}",
            "--requestheader-username-headers=X-Remote-User",
            "--requestheader-group-headers=X-Remote-Group",
            "--requestheader-extra-headers-prefix=X-Remote-Extra-",
            f"--proxy-client-cert-file={pki.front_proxy_client.cert}",
            f"--proxy-client-key-file={pki.front_proxy_client.key}",
            f"--cert-dir={self.work_dir / 'apiserver-certs'}",
            "--profiling=false",
            *self.apiserver_args,
        ]

    def _controller_manager_command(self, pki: Pki, kubeconfigs: dict[str, Path], port: int) -> list[str]:
        kubeconfig = kubeconfigs["kube-controller-manager"]
        return [
            str(self.tools.kube_controller_manager),
            f"--kubeconfig={kubeconfig}",
            f"--authentication-kubeconfig={kubeconfig}",
            f"--authorization-kubeconfig={kubeconfig}",
            "--bind-address=127.0.0.1",
            f"--secure-port={port}",
            f"--cert-dir={self.work_dir / 'controller-manager-certs'}",
            "--leader-elect=false",
            "--controllers=*",
            "--use-service-account-credentials=true",
            f"--service-account-private-key-file={pki.service_account_key}",
            f"--root-ca-file={pki.ca.cert}",
            f"--cluster-signing-cert-file={pki.ca.cert}",
            f"--cluster-signing-key-file={pki.ca.key}",
            "--cluster-name=chute-dev",
            "--kube-api-qps=100",
            "--kube-api-burst=200",
            "--profiling=false",
        ]

    def _scheduler_command(self, kubeconfig: Path, port: int) -> list[str]:
        return [
            str(self.tools.kube_scheduler),
            f"--kubeconfig={kubeconfig}",
            f"--authentication-kubeconfig={kubeconfig}",
            f"--authorization-kubeconfig={kubeconfig}",
            "--bind-address=127.0.0.1",
            f"--secure-port={port}",
            f"--cert-dir={self.work_dir / 'scheduler-certs'}",
            "--leader-elect=false",
            "--profiling=false",
        ]

    def _kwok_command(self, pki: Pki, kubeconfig: Path, stages: Path, port: int) -> list[str]:
        return [
            str(self.tools.kwok),
            f"--kubeconfig={kubeconfig}",
            f"--config={stages}",
            "--manage-all-nodes=false",
            f"--manage-nodes-with-annotation-selector={MANAGED_NODES_SELECTOR}",
            f"--node-ip={NODE_IP}",
            f"--node-port={port}",
            f"--server-address=127.0.0.1:{port}",
            f"--tls-cert-file={pki.kwok_serving.cert}",
            f"--tls-private-key-file={pki.kwok_serving.key}",
            f"--cidr={self.pod_cidr}",
            "--node-lease-duration-seconds=40",
            f"--v={self.kwok_log_level}",
        ]

    # -- readiness probes -----------------------------------------------------------------------

    def _wait(self, deadline: float, component: Component, what: str, probe: Callable[[], bool]) -> None:
        while True:
            if not component.running():
                code = component.process.returncode if component.process else None
                raise ControlPlaneError(
                    f"{component.name} exited ({code}) while waiting for {what}; its log ends:\n"
                    f"{component.tail(40)}"
                )
            if probe():
                return
            if time.monotonic() > deadline:
                raise ControlPlaneError(
                    f"timed out after {self.startup_timeout:.0f}s waiting for {what}.\n{self.logs_summary()}"
                )
            time.sleep(0.1)

    @staticmethod
    def _etcd_healthy(port: int) -> bool:
        try:
            # a fixed http://127.0.0.1 URL (bandit B310)
            with urllib.request.urlopen(f"http://127.0.0.1:{port}/health", timeout=2) as response:  # nosec B310
                return b'"true"' in response.read()
        except OSError:
            return False

    def _apiserver_ready(self) -> bool:
        try:
            return self.api.get("/readyz", timeout=3).get("text") == "ok"
        except ApiError:
            return False

    @staticmethod
    def _component_healthy(port: int) -> bool:
        context = ssl.create_default_context()
        context.check_hostname = False
        context.verify_mode = ssl.CERT_NONE  # the component's self-signed serving certificate
        try:
            # a fixed https://127.0.0.1 URL (bandit B310)
            with urllib.request.urlopen(f"https://127.0.0.1:{port}/healthz", timeout=2, context=context) as r:  # nosec B310
                return bool(r.read().strip() == b"ok")
        except OSError:
            return False

    def _nodes_ready(self) -> bool:
        try:
            nodes = self.api.get("/api/v1/nodes?labelSelector=type%3Dkwok")["items"]
        except (ApiError, KeyError):
            return False
        ready = {
            node["metadata"]["name"]
            for node in nodes
            for condition in (node.get("status") or {}).get("conditions") or []
            if condition.get("type") == "Ready" and condition.get("status") == "True"
        }
        return set(self.node_names()) <= ready

    def _default_service_account_exists(self) -> bool:
        try:
            self.api.get("/api/v1/namespaces/default/serviceaccounts/default")
        except ApiError:
            return False
        return True
