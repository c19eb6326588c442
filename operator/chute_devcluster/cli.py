"""``chute-operator dev up|down|status|build|images|gateway-crds``: a local cluster for a person, in
the background.

``build`` builds the control plane's binaries and the images (``images`` only the latter);
``gateway-crds`` installs the Gateway API's and the InferencePool's CRDs into the running cluster
(``spec.expose``, :mod:`chute_devcluster.gateway_crds`).

The state lives in ``<cache>/dev/`` (``$CHUTE_OPERATOR_CACHE``, default ``~/.cache/chute-operator``):
the kubeconfig, the supervisor's pid and log, every component's log. ``dev down`` also stops any
process whose ``*.pid`` file lies there (the demo's operator writes one). ``CHUTE_OPERATOR_DEV_NODES``
names a node pool YAML file to use instead of the default nodes. ``dev up`` also runs the real node
(kubelet, containerd, kube-proxy; :mod:`chute_devcluster.realnode`) and the local registry its
containerd pulls the project's images from (:mod:`chute_devcluster.registry`), unless
``--no-real-node``; ``dev down`` removes what it changed on the machine.
``dev up --pod-cidr/--service-cidr`` choose the cluster's ranges; the network guard keeps them on
this machine until ``dev down`` (:mod:`chute_devcluster.netguard`).
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from chute_devcluster.apiclient import ApiClient, ApiError
from chute_devcluster.binaries import (
    KUBERNETES_VERSION,
    BuildError,
    cache_dir,
    ensure_binaries,
    toolset,
)
from chute_devcluster.controlplane import POD_CIDR, SERVICE_CLUSTER_IP_RANGE
from chute_devcluster.images import ImageBuildError
from chute_devcluster.netguard import NetworkGuardError, remove_stale
from chute_devcluster.pki import KeyPair
from chute_devcluster.processes import pid_alive
from chute_devcluster.realnode import (
    HOLDER_FILE,
    NodeImage,
    NodeImages,
    RealNodeError,
    build_node_images,
    remove_stale_real_node,
    unavailable_reason,
)
from chute_devcluster.supervisor import PID_FILE, STATE_FILE, read_state

NODES_ENV = "CHUTE_OPERATOR_DEV_NODES"
LOCK_TIMEOUT_ENV = "CHUTE_OPERATOR_REAL_NODE_LOCK_TIMEOUT"
LOCK_TIMEOUT = 600.0
"""How long ``dev up`` (and the demo) waits for another local cluster's real node, as the tests do."""
START_TIMEOUT = 180.0
STOP_TIMEOUT = 60.0


class DevClusterError(RuntimeError):
    """The background control plane could not be started."""


def state_dir() -> Path:
    return cache_dir() / "dev"


def kubeconfig_path() -> Path:
    return state_dir() / "kubeconfig"


@contextlib.contextmanager
def _locked() -> Iterator[None]:
    """One ``dev`` command at a time changes the state dir."""
    directory = state_dir()
    directory.mkdir(parents=True, exist_ok=True)
    with (directory.parent / "dev.lock").open("w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(lock, fcntl.LOCK_UN)


def _read_pid(path: Path) -> int | None:
    try:
        return int(path.read_text().strip())
    except (OSError, ValueError):
        return None


def _process_start_time(pid: int) -> float | None:
    """When the process started (seconds since the epoch), from /proc."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        boot = next(
            float(line.split()[1])
            for line in Path("/proc/stat").read_text().splitlines()
            if line.startswith("btime")
        )
    except (OSError, IndexError, StopIteration, ValueError):
        return None
    return boot + int(fields[19]) / os.sysconf("SC_CLK_TCK")


def _recorded_pid(pid_file: Path) -> int | None:
    """The live process a pid file names, unless the pid now belongs to a newer, unrelated process."""
    pid = _read_pid(pid_file)
    if pid is None or pid == os.getpid() or not pid_alive(pid):
        return None
    started = _process_start_time(pid)
    try:
        written = pid_file.stat().st_mtime
    except OSError:
        return None
    if started is not None and started > written + 5:
        return None
    return pid


def _supervisor_pid() -> int | None:
    return _recorded_pid(state_dir() / PID_FILE)


def _api_ready(server: str) -> bool:
    pki = state_dir() / "pki"
    try:
        client = ApiClient(server, str(pki / "ca.crt"), KeyPair(pki / "admin.crt", pki / "admin.key"))
        return client.get("/readyz", timeout=3).get("text") == "ok"
    except (ApiError, OSError):
        return False


def _running_server() -> str | None:
    """The API server URL of a healthy background control plane, if there is one."""
    state = read_state(state_dir())
    if _supervisor_pid() and state.get("ready") and _api_ready(str(state.get("server"))):
        return str(state["server"])
    return None


def _log_tail(path: Path, lines: int = 30) -> str:
    try:
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])
    except OSError:
        return "(no log)"


def _terminate(pid: int, timeout: float) -> None:
    with contextlib.suppress(ProcessLookupError):
        os.kill(pid, signal.SIGTERM)
    deadline = time.monotonic() + timeout
    while pid_alive(pid) and time.monotonic() < deadline:
        time.sleep(0.2)
    if pid_alive(pid):
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGKILL)


def _owned_by_state_dir(pid: int) -> bool:
    """Whether a recorded pid still is one of our processes (its command line names the state dir)."""
    try:
        return str(state_dir()) in Path(f"/proc/{pid}/cmdline").read_bytes().decode(errors="replace")
    except OSError:
        return False


def _stop_everything() -> None:
    directory = state_dir()
    supervisor = _supervisor_pid()
    if supervisor:
        _terminate(supervisor, STOP_TIMEOUT)
    for pid_file in sorted(directory.glob("*.pid")):
        pid = _recorded_pid(pid_file)
        if pid:
            _terminate(pid, 15)
    for pid in (read_state(directory).get("components") or {}).values():
        if isinstance(pid, int) and pid_alive(pid) and _owned_by_state_dir(pid):
            _terminate(pid, 10)
    try:
        remove_stale_real_node()  # a killed cluster's containers, rules and bridge, unless one runs
    except RealNodeError as error:
        print(f"warning: {error}", file=sys.stderr)
    try:
        remove_stale()  # the routes and rules of a killed cluster, unless another live one needs them
    except NetworkGuardError as error:
        print(f"warning: {error}", file=sys.stderr)


def _image_argument(image: NodeImage) -> str:
    return f"{image.ref}={image.archive}"


def _lock_timeout() -> float:
    return float(os.environ.get(LOCK_TIMEOUT_ENV) or LOCK_TIMEOUT)


def _real_node_holder() -> int | None:
    """The pid of the process that runs the machine's real node now, if one does."""
    try:
        pid = int(json.loads(HOLDER_FILE.read_text())["pid"])
    except (OSError, ValueError, KeyError, TypeError):
        return None
    return pid if pid_alive(pid) else None


def _start_supervisor(pod_cidr: str, service_cidr: str, images: NodeImages | None) -> str:
    directory = state_dir()
    _stop_everything()
    for name in (STATE_FILE, PID_FILE):
        (directory / name).unlink(missing_ok=True)
    log_path = directory / "supervisor.log"
    command = [sys.executable, "-m", "chute_devcluster.supervisor", "--state-dir", str(directory)]
    command += ["--pod-cidr", pod_cidr, "--service-cidr", service_cidr]
    wait = 0.0
    if images is not None:
        wait = _lock_timeout()
        command += ["--real-node", "--real-node-lock-timeout", str(wait)]
        command += ["--sandbox-image", _image_argument(images.sandbox)]
        holder = _real_node_holder()
        if holder:
            print(
                f"the real node is in use by another local cluster (pid {holder}): waiting up to {wait:.0f}s "
                f"for it ({LOCK_TIMEOUT_ENV})",
                file=sys.stderr,
                flush=True,
            )
        command += [argument for image in images.others for argument in ("--image", _image_argument(image))]
    nodes_file = os.environ.get(NODES_ENV)
    if nodes_file:
        command += ["--nodes", str(Path(nodes_file).expanduser().resolve())]
    with log_path.open("ab") as log:
        process = subprocess.Popen(
            command, stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT, start_new_session=True
        )
    deadline = time.monotonic() + START_TIMEOUT + wait
    while time.monotonic() < deadline:
        state = read_state(directory)
        if state.get("ready"):
            return str(state["server"])
        if state.get("error") or process.poll() is not None:
            process.wait(STOP_TIMEOUT)
            raise DevClusterError(
                f"the control plane did not start; {log_path} ends:\n{_log_tail(log_path, 60)}"
            )
        time.sleep(0.2)
    _terminate(process.pid, STOP_TIMEOUT)
    raise DevClusterError(f"no Ready control plane after {START_TIMEOUT + wait:.0f}s; see {log_path}")


def ensure_dev_cluster(
    pod_cidr: str = POD_CIDR, service_cidr: str = SERVICE_CLUSTER_IP_RANGE, real_node: bool = True
) -> Path:
    """Build the binaries (and, for the real node, the images) if needed, start the background control
    plane unless it runs; its kubeconfig. Raises :class:`DevClusterError` when the real node cannot run
    here (its message says why and suggests ``--no-real-node``)."""
    ensure_binaries()
    images = None
    if real_node:
        reason = unavailable_reason()
        if reason:
            raise DevClusterError(f"{reason}; or start without it: chute-operator dev up --no-real-node")
        images = build_node_images()
    with _locked():
        if _running_server() is None:
            _start_supervisor(pod_cidr, service_cidr, images)
    return kubeconfig_path()


def real_node_state() -> dict[str, Any] | None:
    """The running background cluster's real node (name, pod_subnet, gpu, images), if it has one."""
    real = read_state(state_dir()).get("real_node")
    return real if isinstance(real, dict) else None


def _real_node_line(state: dict[str, Any]) -> str:
    real = state.get("real_node")
    if not isinstance(real, dict):
        return "  real node:  none (started with --no-real-node)\n"
    return (
        f"  real node:  {real.get('name')} (kubelet + containerd, pods on {real.get('pod_subnet')}, "
        f"simulated {real.get('gpu')} GPUs; its logs: kubelet.log, containerd.log)\n"
        f"  registry:   {real.get('registry')} (plain HTTP; the real node pulls from it; log: registry.log)\n"
    )


def _up(pod_cidr: str, service_cidr: str, real_node: bool = True) -> int:
    already = _running_server() is not None
    try:
        kubeconfig = ensure_dev_cluster(pod_cidr, service_cidr, real_node)
    except (DevClusterError, BuildError, ImageBuildError) as error:
        print(f"error: {error}", file=sys.stderr)
        return 1
    state = read_state(state_dir())
    nodes = state.get("nodes") or []
    how = "already running" if already else f"started in {state.get('startup_seconds', '?')}s"
    real = " and a real node" if isinstance(state.get("real_node"), dict) else ""
    print(
        f"Local control plane {how}: Kubernetes {KUBERNETES_VERSION}, {len(nodes)} simulated nodes{real}\n"
        f"  server:     {state.get('server')}\n"
        f"  kubeconfig: {kubeconfig}\n"
        f"  logs:       {state_dir() / 'logs'}\n"
        f"  ranges:     pods {state.get('pod_cidr')}, Services {state.get('service_cidr')}"
        " (kept on this machine until dev down)\n" + _real_node_line(state) + "Try:\n"
        f"  export KUBECONFIG={kubeconfig}\n"
        f"  export PATH={toolset().kubectl.parent}:$PATH   # kubectl {KUBERNETES_VERSION}\n"
        "  kubectl get nodes -L nvidia.com/gpu.product,nvidia.com/gpu.count\n"
        "Stop it with: chute-operator dev down"
    )
    return 0


def _down() -> int:
    directory = state_dir()
    if not directory.exists():
        print("no local control plane")
        return 0
    with _locked():
        running = _supervisor_pid() is not None
        _stop_everything()
        shutil.rmtree(directory, ignore_errors=True)
    print("local control plane stopped and removed" if running else "removed the local control plane's state")
    return 0


def _status() -> int:
    directory = state_dir()
    state = read_state(directory)
    server = _running_server()
    if server is None:
        if _supervisor_pid():
            print(f"starting (or unhealthy); see {directory / 'supervisor.log'}")
        elif state.get("error"):
            print(f"not running; the last start failed: {state['error'].splitlines()[0]}")
        else:
            print("not running (start it with: chute-operator dev up)")
        return 1
    kubectl = toolset().kubectl
    nodes = subprocess.run(
        [
            str(kubectl),
            f"--kubeconfig={kubeconfig_path()}",
            *("get", "nodes", "-o", "wide", "-L", "nvidia.com/gpu.product,chutes.ai/simulated-gpu"),
        ],
        capture_output=True,
        text=True,
        check=False,
    )
    print(
        f"running (supervisor pid {state.get('pid')})\n"
        f"  server:     {server}\n"
        f"  kubeconfig: {kubeconfig_path()}\n"
        f"  logs:       {directory / 'logs'}\n"
        f"{_real_node_line(state)}\n{nodes.stdout or nodes.stderr}",
        end="",
    )
    return 0


def _build() -> int:
    started = time.monotonic()
    try:
        tools = ensure_binaries()
    except BuildError as error:
        print(f"error: {error}", file=sys.stderr)
        return 1
    print(f"binaries ready ({time.monotonic() - started:.0f}s):")
    for name, path in vars(tools).items():
        print(f"  {name:24} {path}")
    return _images()


def _images() -> int:
    """Build (or find cached) the images the real node imports, and print their refs and tars."""
    from chute_devcluster.images import ImageBuildError, ensure_images

    started = time.monotonic()
    try:
        images = ensure_images()
    except ImageBuildError as error:
        print(f"error: {error}", file=sys.stderr)
        return 1
    print(f"images ready ({time.monotonic() - started:.0f}s):")
    for name, image in vars(images).items():
        print(f"  {name:8} {image.ref:48} {image.tar}")
    return 0


def _gateway_crds() -> int:
    """Install the Gateway API and InferencePool CRDs into the running cluster."""
    from chute_devcluster.gateway_crds import install_gateway_crds

    if _running_server() is None:
        print("not running (start it with: chute-operator dev up)", file=sys.stderr)
        return 1

    def kubectl(*args: str) -> None:
        command = [str(toolset().kubectl), f"--kubeconfig={kubeconfig_path()}", *args]
        subprocess.run(command, check=True, capture_output=True, text=True)

    try:
        files = install_gateway_crds(kubectl)
    except (BuildError, subprocess.CalledProcessError) as error:
        print(f"error: {error}", file=sys.stderr)
        return 1
    print("installed:\n" + "\n".join(f"  {path}" for path in files))
    return 0


def dev_command(
    action: str, pod_cidr: str | None = None, service_cidr: str | None = None, real_node: bool = True
) -> int:
    """Entry point of ``chute-operator dev ACTION``; the exit code."""
    actions = {
        "up": lambda: _up(pod_cidr or POD_CIDR, service_cidr or SERVICE_CLUSTER_IP_RANGE, real_node),
        "down": _down,
        "status": _status,
        "build": _build,
        "images": _images,
        "gateway-crds": _gateway_crds,
    }
    if action not in actions:
        print(f"unknown action {action!r}; one of {', '.join(actions)}", file=sys.stderr)
        return 2
    return actions[action]()
