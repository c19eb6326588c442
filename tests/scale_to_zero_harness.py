"""Scale to zero on the local cluster's real node: shared by benchmarks/scale_to_zero.py and
tests/realnode/test_scale_to_zero_on_real_pods.py.

A Chute (minInstances 0, maxInstances 2, shutdownAfterSeconds 60) runs the project image's modelsim
with a load time behind the real sidecar on the real node; the operator (with its metrics API,
whose scraper reads the real pods' sidecars) and a real activator process on the host (dialling
the real pod IPs) run against the control plane. Requests reach the activator directly on loopback
or, with ``through_service``, through the Chute Service's ClusterIP: the activator then listens on
the real node's bridge address (the node's InternalIP, on this machine), which its Service's
EndpointSlice lists, so the operator's ``NAME-activator`` slice sends the Chute's Service there
through kube-proxy. (The activator cannot run as a pod here: the local API server listens on
loopback only, out of a pod's reach.)

Each request at zero is broken down into the moments it passes (:data:`STAGES`), in seconds after
the client sent it: the activator's own record of the wake (``/_chutes``, on its debug port on
loopback), a watch of the pods and
the Deployment opened by this harness (the moment each change reached it), and the containers' logs
(``kubectl logs --timestamps``: the runtime's time of each line).
"""

from __future__ import annotations

import contextlib
import http.client
import ipaddress
import json
import subprocess
import sys
import tempfile
import threading
import time
import urllib.parse
from collections.abc import Iterator, Sequence
from datetime import datetime
from pathlib import Path
from typing import Any

from chute_devcluster.apiclient import ApiError
from chute_devcluster.binaries import ensure_binaries
from chute_devcluster.controlplane import ControlPlane
from chute_devcluster.processes import free_loopback
from chute_devcluster.realnode import build_node_images
from chute_devcluster.realnode_config import RealNodeSettings
from chute_shared.ports import ACTIVATOR_CHUTE_PORTS
from tests.kube_helpers import apply, condition, eventually, get, items, service_address
from tests.metrics_api_harness import metrics_api_on_loopback, real_node_chute
from tests.operator_fixtures import _free_port

NAME = "bench"
SELECTOR = f"chutes.ai/chute={NAME}"
IDLE_WINDOW = 60  # the smallest shutdownAfterSeconds the CRD accepts
SIDECAR, MODEL = "chute-sidecar", "model"

STAGES: list[tuple[str, str]] = [
    ("held", "the activator holds the request"),
    ("wake_written", "the activator's wake annotation is written"),
    ("deployment_woken", "the Deployment asks for 1 replica again (the operator's zero manager let go)"),
    ("pod_created", "the pod exists (ReplicaSet controller)"),
    ("pod_scheduled", "the pod is bound to the real node (scheduler)"),
    ("pod_ip", "the sandbox and its network are up (pod IP in the status)"),
    ("sidecar_running", "the sidecar container runs"),
    (
        "sidecar_started",
        "the sidecar counts as started (before: its startup probe passed): the model may start",
    ),
    ("model_running", "the model container runs"),
    ("model_loading", "modelsim begins loading (its log)"),
    ("model_loaded", "modelsim's /health answers 200 (its log)"),
    ("sidecar_saw_model", "the sidecar's health poll saw the model up (its log)"),
    ("sidecar_ready", "the kubelet's readiness probe of the sidecar passed"),
    ("model_started", "the kubelet's startup probe of the model passed"),
    ("pod_ready", "the pod is Ready"),
    ("activator_ready_seen", "the activator has a ready endpoint (EndpointSlice or the sidecar itself)"),
    ("forwarded", "the activator forwards the held request"),
    ("answered", "the activator has sent the answer"),
    ("client_answered", "the client has the 200"),
]


def chute(
    image: str,
    node: str,
    load_seconds: float,
    name: str = NAME,
    tokens_per_second: float = 0.0,
    concurrency: int | None = None,
) -> dict[str, Any]:
    manifest = real_node_chute(name, image, node)
    manifest["spec"].update({"minInstances": 0, "maxInstances": 2, "shutdownAfterSeconds": IDLE_WINDOW})
    if concurrency is not None:
        manifest["spec"]["concurrency"] = concurrency
    # By default the answer itself takes no time (no time to first token, no simulated generation):
    # what is added is the wake's alone. A streaming check sets a rate, so that its tokens come apart.
    args = [a for a in manifest["spec"]["args"] if not a.startswith("--tokens-per-second=")]
    manifest["spec"]["args"] = [*args, f"--tokens-per-second={tokens_per_second:g}",
                                "--time-to-first-token=0", f"--load-seconds={load_seconds:g}"]  # fmt: skip
    return manifest


PLACEHOLDER_ADDRESS = "10.244.255.250"
CRD = Path(__file__).resolve().parents[1] / "crds" / "chute.yaml"


@contextlib.contextmanager
def real_node_cluster(prefix: str) -> Iterator[tuple[ControlPlane, Path]]:
    """What the real-node benchmarks run on: a control plane with the real node (binaries and images
    built, or cached), the Chute CRD established, and a scratch directory (``prefix``) for the run."""
    options: dict[str, Any] = {
        "real_node": RealNodeSettings.from_env(),
        "real_node_images": build_node_images(),
        "real_node_lock_timeout": 900,
    }
    with (
        tempfile.TemporaryDirectory(prefix=prefix) as scratch,
        ControlPlane(tools=ensure_binaries(), **options) as cp,
    ):
        cp.kubectl("apply", "--server-side", "-f", str(CRD))
        eventually(
            lambda: cp.kubectl("wait", "--for=condition=Established", "--timeout=5s", "crd/chutes.chutes.ai",
                               check=False).returncode == 0 or None,
            what="CRD established",
        )  # fmt: skip
        yield cp, Path(scratch)


def activator_service(
    cp: ControlPlane,
    namespace: str,
    address: str = PLACEHOLDER_ADDRESS,
    others: Sequence[str] = (),
    terminating: Sequence[str] = (),
) -> None:
    """What the operator reads to find the activator: a Service and a slice with the activator's address
    (by default a placeholder nothing dials: the benchmark's clients reach the activator on loopback),
    and the ``others`` of a rollout's new pods, ready too; ``terminating``: old pods that are stopping
    (not ready, serving, terminating: as the EndpointSlice controller lists a pod being deleted). Its
    port is the metrics port, as the chart's: each Chute reaches the activator on its own port."""
    apply(cp, {"apiVersion": "v1", "kind": "Service", "metadata": {"name": "activator"},
               "spec": {"ports": [{"name": "metrics", "port": 9090}]}}, namespace)  # fmt: skip
    ready = [{"addresses": [a], "conditions": {"ready": True}} for a in (address, *others)]
    stopping = [
        {"addresses": [a], "conditions": {"ready": False, "serving": True, "terminating": True}}
        for a in terminating
    ]
    apply(
        cp,
        {
            "apiVersion": "discovery.k8s.io/v1",
            "kind": "EndpointSlice",
            "metadata": {"name": "activator-1", "labels": {"kubernetes.io/service-name": "activator"}},
            "addressType": "IPv4",
            "ports": [{"name": "metrics", "port": 9090, "protocol": "TCP"}],
            "endpoints": ready + stopping,
        },
        namespace,
    )


def chute_port(cp: ControlPlane, namespace: str, name: str = NAME) -> int:
    """The Chute's port on the activator (``status.activatorPort``), once the operator has given one:
    a request sent to the activator directly goes there."""
    found = eventually(
        lambda: ((get(cp, "chute", name, namespace) or {}).get("status") or {}).get("activatorPort"),
        what=f"{name}'s activator port",
    )
    return int(found)


@contextlib.contextmanager
def second_node_address(cp: ControlPlane) -> Iterator[str]:
    """Another address of this machine, on the real node's bridge beside the node's own (its InternalIP),
    for a second activator process during a rollout: two activator pods have two addresses and the
    same port. kube-proxy DNATs a Service to it as to the node's address, and the traffic stays on the
    machine (the address is local). The CNI plugin never hands it out: its pod addresses start at the
    subnet's 10th (``realnode_config.cni_conflist``). Removed again afterwards."""
    settings = cp.real_node_settings
    assert settings is not None, "needs the real node"
    address = str(ipaddress.IPv4Network(settings.pod_subnet)[2])
    subprocess.run(["ip", "addr", "replace", f"{address}/32", "dev", settings.bridge], check=True, timeout=30)
    try:
        yield address
    finally:
        subprocess.run(
            ["ip", "addr", "del", f"{address}/32", "dev", settings.bridge], check=False, timeout=30
        )


def at_zero(cp: ControlPlane, namespace: str, name: str = NAME) -> bool:
    deployment = get(cp, "deployment", name, namespace) or {}
    return bool((deployment.get("spec") or {}).get("replicas") == 0)


def _status_of(pod: dict[str, Any], container: str) -> dict[str, Any]:
    status = pod.get("status") or {}
    found = (status.get("initContainerStatuses") or []) + (status.get("containerStatuses") or [])
    return next((s for s in found if s.get("name") == container), {})


def pod_milestones(pod: dict[str, Any]) -> set[str]:
    """The stages a pod object shows it has passed."""
    sidecar, model = _status_of(pod, SIDECAR), _status_of(pod, MODEL)
    passed = {"pod_created"}
    checks = {
        "pod_scheduled": bool((pod.get("spec") or {}).get("nodeName")),
        "pod_ip": bool((pod.get("status") or {}).get("podIP")),
        "sidecar_running": "running" in (sidecar.get("state") or {}),
        "sidecar_started": sidecar.get("started") is True,
        "model_running": "running" in (model.get("state") or {}),
        "sidecar_ready": sidecar.get("ready") is True,
        "model_started": model.get("started") is True,
        "pod_ready": condition(pod, "Ready").get("status") == "True",
    }
    return passed | {name for name, seen in checks.items() if seen}


class Watcher:
    """Watches the Chute's pods and Deployment from this process; the wall-clock moment each stage was
    first seen since :meth:`reset` (pods that existed before it are ignored)."""

    def __init__(self, cp: ControlPlane, namespace: str, name: str = NAME) -> None:
        self.cp, self.namespace = cp, namespace
        self.first: dict[str, float] = {}
        self.pod_name = ""
        self._old: set[str] = set()
        self._seen: set[str] = set()
        self._armed = False
        self._lock = threading.Lock()
        self._stop = threading.Event()
        selector = urllib.parse.quote(f"chutes.ai/chute={name}")
        base = f"/namespaces/{namespace}"
        self._paths = (
            (f"/api/v1{base}/pods?watch=1&timeoutSeconds=20&labelSelector={selector}", self._pod),
            (f"/apis/apps/v1{base}/deployments?watch=1&timeoutSeconds=20&fieldSelector=metadata.name%3D{name}",
             self._deployment),
        )  # fmt: skip
        self._threads = [threading.Thread(target=self._loop, args=p, daemon=True) for p in self._paths]

    def start(self) -> None:
        for thread in self._threads:
            thread.start()

    def stop(self) -> None:
        self._stop.set()  # the threads end with their watch (timeoutSeconds) at the latest; daemons

    def reset(self) -> None:
        """From now on: the request at zero is about to be sent."""
        with self._lock:
            self.first, self.pod_name, self._old, self._armed = {}, "", set(self._seen), True

    def _loop(self, path: str, handle: Any) -> None:
        while not self._stop.is_set():
            try:
                for event in self.cp.api.watch(path, timeout=30):
                    if self._stop.is_set():
                        return
                    if event.get("type") in ("ADDED", "MODIFIED"):
                        handle(event.get("object") or {})
            except ApiError:
                time.sleep(0.5)

    def _mark(self, names: set[str]) -> None:
        now = time.time()
        for name in names:
            self.first.setdefault(name, now)

    def _pod(self, pod: dict[str, Any]) -> None:
        meta = pod.get("metadata") or {}
        with self._lock:
            self._seen.add(meta.get("uid", ""))
            if not self._armed or meta.get("uid") in self._old or meta.get("deletionTimestamp"):
                return
            self.pod_name = self.pod_name or meta.get("name", "")
            if meta.get("name") == self.pod_name:
                self._mark(pod_milestones(pod))

    def _deployment(self, deployment: dict[str, Any]) -> None:
        with self._lock:
            if self._armed and (deployment.get("spec") or {}).get("replicas", 1) >= 1:
                self._mark({"deployment_woken"})


def kube_proxy_sends_to(namespace: str, service: str, endpoint: str) -> bool:
    """Whether kube-proxy's rules DNAT ``namespace/service`` to ``endpoint`` (``IP:PORT``)."""
    rules = subprocess.run(
        ["iptables-save", "-t", "nat"], capture_output=True, text=True, timeout=30, check=True
    )
    return any(
        f'"{namespace}/{service}:' in rule and "DNAT" in rule and f"--to-destination {endpoint}" in rule
        for rule in rules.stdout.splitlines()
    )


def log_time(cp: ControlPlane, namespace: str, pod: str, container: str, text: str) -> float | None:
    """The runtime's timestamp of the first log line of ``container`` that contains ``text``."""
    found = cp.kubectl("logs", pod, "-c", container, "-n", namespace, "--timestamps", check=False)
    for line in found.stdout.splitlines():
        stamp, _, message = line.partition(" ")
        if text in message:
            whole, _, fraction = stamp.rstrip("Z").partition(".")
            parsed = datetime.fromisoformat(f"{whole}.{(fraction + '000000')[:6]}+00:00")
            return parsed.timestamp()
    return None


def activator_timeline(debug_port: int, namespace: str, name: str = NAME) -> dict[str, Any]:
    """The activator's record of the Chute's latest wake, from ``/_chutes`` on its debug port (bound to
    loopback: the metrics port, which its Service publishes, does not serve it)."""
    connection = http.client.HTTPConnection("127.0.0.1", debug_port, timeout=10)
    connection.request("GET", "/_chutes")
    view = json.loads(connection.getresponse().read())
    connection.close()
    return dict((view.get(f"{namespace}/{name}") or {}).get("last_wake") or {})


def activator_counters(metrics_port: int, host: str = "127.0.0.1") -> dict[str, float]:
    """The activator's own counters (``/metrics``): ``{"chute_activator_forwarded_total{...}": n, ...}``."""
    connection = http.client.HTTPConnection(host, metrics_port, timeout=10)
    connection.request("GET", "/metrics")
    text = connection.getresponse().read().decode()
    connection.close()
    counters: dict[str, float] = {}
    for line in text.splitlines():
        sample, _, value = line.rpartition(" ")
        if sample.startswith("chute_activator_") and sample.split("{")[0].endswith(("_total", "_count")):
            counters[sample] = float(value)
    return counters


def breakdown(
    cp: ControlPlane,
    namespace: str,
    watcher: Watcher,
    debug_port: int,
    sent: float,
    answered: float,
    name: str = NAME,
) -> dict[str, Any]:
    """Seconds after the client sent the request at which it passed each stage (absent: not seen)."""
    moments: dict[str, float] = dict(watcher.first)
    timeline = activator_timeline(debug_port, namespace, name)
    for ours, theirs in (("held", "held"), ("wake_written", "wake_written"),
                         ("activator_ready_seen", "ready_seen"), ("forwarded", "forwarded"),
                         ("answered", "answered")):  # fmt: skip
        if isinstance(timeline.get(theirs), int | float):
            moments[ours] = float(timeline[theirs])
    pod = watcher.pod_name
    if pod:
        for stage, container, text in (
            ("model_loading", MODEL, '"msg":"loading '),  # (its JSON log line)
            ("model_loaded", MODEL, "loaded; /health answers 200"),
            ("sidecar_saw_model", SIDECAR, "model started"),
        ):
            stamp = log_time(cp, namespace, pod, container, text)
            if stamp is not None:
                moments[stage] = stamp
    moments["client_answered"] = answered
    stages = {name: round(moments[name] - sent, 3) for name, _ in STAGES if name in moments}
    return {"stages_s": stages, "ready_source": timeline.get("ready_source", "")}


def measured_load(stages: dict[str, float], seconds: float) -> dict[str, float]:
    """The model server's load as the cluster saw it, from its container running to its /health
    answering 200 (its process start, imports included, as a real server's load time counts them),
    and the answer's time beyond it. Empty when a stage was not seen."""
    if "model_running" not in stages or "model_loaded" not in stages:
        return {}
    load = stages["model_loaded"] - stages["model_running"]
    return {"model_load_measured_s": round(load, 3), "added_beyond_measured_load_s": round(seconds - load, 3)}


def request_at_zero(
    port: int, namespace: str, address: str = "127.0.0.1", name: str = NAME
) -> tuple[int, float, float]:
    """(status, wall-clock time sent, wall-clock time answered): to the activator on the Chute's own port,
    or to the Chute Service's ``address`` (its ClusterIP), with the Host an in-cluster client's DNS name
    gives (the activator ignores it: the port says which Chute)."""
    body = json.dumps(
        {"model": "chute-modelsim", "max_tokens": 3, "messages": [{"role": "user", "content": "hi"}]}
    )
    sent = time.time()
    connection = http.client.HTTPConnection(address, port, timeout=300)
    connection.request(
        "POST", "/v1/chat/completions", body,
        {"Content-Type": "application/json", "Host": f"{name}.{namespace}.svc.cluster.local"},
    )  # fmt: skip
    response = connection.getresponse()
    response.read()
    answered = time.time()
    connection.close()
    return response.status, sent, answered


@contextlib.contextmanager
def activator_process(
    cp: ControlPlane,
    namespace: str,
    work: Path,
    host: str | None = None,
    queue_limit: int = 10,
    drain_seconds: float = 1.0,
    processes: list[subprocess.Popen[bytes]] | None = None,
) -> Iterator[tuple[str, int, int]]:
    """A real activator on the host for ``namespace``, serving every Chute's port (the default range)
    on ``host`` (by default a loopback address of its own: ``free_loopback``), holding at most
    ``queue_limit`` requests per Chute: (its address, its metrics port there, its debug port on
    127.0.0.1), once it has listed the Chutes (``/readyz``). ``drain_seconds``: its drain after
    SIGTERM (short by default: a restart on the same address, not a rollout). Its process is
    appended to ``processes`` (to signal it or read its memory)."""
    host = host or free_loopback(ACTIVATOR_CHUTE_PORTS)
    metrics_port, debug_port = _free_port(), _free_port()
    log = (work / f"activator-{host}.log").open("ab")
    activator = subprocess.Popen(
        [sys.executable, "-m", "chute_operator", "activator", f"--kubeconfig={cp.kubeconfig}",
         f"--host={host}", f"--metrics-port={metrics_port}", f"--debug-port={debug_port}",
         f"--namespace={namespace}",
         "--wake-interval-seconds=2", "--max-wait-seconds=280", f"--queue-limit={queue_limit}",
         f"--drain-seconds={drain_seconds:g}"],
        stdout=log, stderr=subprocess.STDOUT,
    )  # fmt: skip
    if processes is not None:
        processes.append(activator)
    try:
        eventually(lambda: _ready(activator, host, metrics_port), what="the activator ready", timeout=60)
        yield host, metrics_port, debug_port
    finally:
        activator.terminate()
        try:
            activator.wait(30)
        except subprocess.TimeoutExpired:
            activator.kill()
            activator.wait()
        log.close()


def _ready(activator: subprocess.Popen[bytes], host: str, metrics_port: int) -> bool:
    if activator.poll() is not None:
        raise AssertionError(f"the activator exited {activator.returncode}")
    try:
        connection = http.client.HTTPConnection(host, metrics_port, timeout=2)
        connection.request("GET", "/readyz")
        ready = connection.getresponse().status == 200
        connection.close()
    except OSError:
        return False
    return ready


def run(
    cp: ControlPlane,
    work: Path,
    image: str,
    runs: int,
    load_seconds: float,
    namespace: str = "bench-scale-to-zero",
    own_namespace: bool = True,
    through_service: bool = False,
) -> list[dict[str, Any]]:
    """``runs`` times: the pod Ready -> idle -> 0 replicas -> pod gone -> a request at zero, timed."""
    if own_namespace:
        cp.kubectl("create", "namespace", namespace)
        eventually(lambda: get(cp, "serviceaccount", "default", namespace), what="default ServiceAccount")
    host = None
    if through_service:
        assert cp.real_node_settings is not None
        host = cp.real_node_settings.node_ip
    results: list[dict[str, Any]] = []
    watcher = Watcher(cp, namespace)
    watcher.start()
    try:
        with (
            activator_process(cp, namespace, work, host) as (host, _, debug_port),
            metrics_api_on_loopback(
                cp, namespace, work,
                CHUTE_OPERATOR_ACTIVATOR_SERVICE=f"{namespace}/activator",
                CHUTE_OPERATOR_SCALE_TO_ZERO_CHECK_SECONDS="1",
                CHUTE_OPERATOR_SIDECAR_IMAGE=image,
            ),
        ):  # fmt: skip
            if through_service:
                activator_service(cp, namespace, host)
            else:
                activator_service(cp, namespace)
            node = cp.real_node_settings.name if cp.real_node_settings else ""
            apply(cp, chute(image, node, load_seconds), namespace)
            for index in range(runs):
                eventually(
                    lambda: [p for p in items(cp, "pods", namespace, SELECTOR)
                             if condition(p, "Ready").get("status") == "True"] or None,
                    what="the Chute's pod Ready", timeout=300,
                )  # fmt: skip
                ready = time.monotonic()
                eventually(
                    lambda: at_zero(cp, namespace) or None, what="replicas 0", timeout=IDLE_WINDOW + 120
                )
                to_zero = time.monotonic() - ready
                eventually(
                    lambda: not items(cp, "pods", namespace, SELECTOR) or None, what="pod gone", timeout=120
                )
                gone = time.monotonic() - ready
                target = (chute_port(cp, namespace), host)
                if through_service:  # the operator's slice sends the Service to the activator
                    eventually(lambda: get(cp, "endpointslice", f"{NAME}-activator", namespace),
                               what="the Service reaching the activator")  # fmt: skip
                    address, service_port = service_address(cp, NAME, namespace)
                    target = (service_port, address)
                watcher.reset()
                status, sent, answered = request_at_zero(target[0], namespace, target[1])
                seconds = answered - sent
                with contextlib.suppress(AssertionError):  # the answer may come before the pod is Ready
                    eventually(lambda: "pod_ready" in watcher.first or None, what="pod Ready", timeout=30)
                stages = breakdown(cp, namespace, watcher, debug_port, sent, answered)
                results.append(
                    {
                        "status": status,
                        "ready_to_zero_replicas_s": round(to_zero, 1),
                        "ready_to_pod_gone_s": round(gone, 1),
                        "request_at_zero_answered_s": round(seconds, 3),
                        "added_beyond_load_s": round(seconds - load_seconds, 3),
                        **measured_load(stages["stages_s"], seconds),
                        **stages,
                    }
                )
                print(f"run {index + 1}: {json.dumps(results[-1])}", flush=True)
    finally:
        watcher.stop()
        if own_namespace:
            cp.kubectl("delete", "namespace", namespace, "--wait=false", check=False)
    return results
