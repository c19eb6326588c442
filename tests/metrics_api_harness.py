"""The operator's custom metrics API on loopback, registered with a local control plane's
kube-apiserver, and a real sidecar on loopback to read: shared by tests/integration/test_metrics_api.py
and benchmarks/autoscaling.py.

SIMULATION: the local control plane's pods run on kwok nodes, whose addresses no host owns, so the
scraper never dials them. A real ``chute-operator sidecar`` process (in front of
``chute-operator modelsim``) runs on 127.0.0.1 instead, and the operator's TEST-ONLY address
override (``CHUTE_OPERATOR_METRICS_API_TEST_ONLY_SIDECAR_ADDRESSES``: loopback entries only) tells
the scraper to read it for a chosen pod. The APIService points at an ExternalName Service whose
name is 127.0.0.1, so the kube-apiserver's aggregator dials loopback only.
"""

from __future__ import annotations

import base64
import contextlib
import http.client
import json
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from chute_devcluster.pki import _issue, _make_ca
from tests.kube_helpers import apply
from tests.operator_fixtures import OperatorProcess, _free_port

SERVICE = "chute-operator-metrics-api"
APISERVICE = "v1beta2.custom.metrics.k8s.io"
CERT_SECRET = "chute-operator-metrics-api-tls"
"""The Secret of the operator's own serving certificate (``operator_cert``)."""
CONCURRENCY = 4


def _wait_port(port: int, process: subprocess.Popen[bytes], what: str) -> None:
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"{what} exited {process.returncode}")
        try:
            connection = http.client.HTTPConnection("127.0.0.1", port, timeout=1)
            connection.request("GET", "/")
            connection.getresponse().read()
            connection.close()
            return
        except OSError:
            time.sleep(0.2)
    raise RuntimeError(f"{what} not listening on {port} within 30s")


class Streams:
    """Streaming chat completions held open through a sidecar's serving port (each one in flight)."""

    def __init__(self, host: str, port: int) -> None:
        self.host, self.port = host, port
        self.open: list[http.client.HTTPConnection] = []

    def start(self, count: int) -> None:
        body = json.dumps(
            {"model": "chute-modelsim", "stream": True, "messages": [{"role": "user", "content": "hi"}]}
        )
        for _ in range(count):
            connection = http.client.HTTPConnection(self.host, self.port, timeout=30)
            connection.request("POST", "/v1/chat/completions", body, {"Content-Type": "application/json"})
            response = connection.getresponse()
            assert response.status == 200, response.read()
            response.readline()  # the first event: the request is in flight
            self.open.append(connection)

    def close(self) -> None:
        for connection in self.open:
            connection.close()
        self.open = []


class LoopbackSidecar:
    """``chute-operator modelsim`` behind a real ``chute-operator sidecar``, both on 127.0.0.1."""

    def __init__(self, log_dir: Path) -> None:
        self.model_port, self.port = _free_port(), _free_port()
        self.metrics_port, self.admin_port = _free_port(), _free_port()
        self.log = (log_dir / "sidecar.log").open("ab")
        base = [sys.executable, "-m", "chute_operator"]
        self.model = subprocess.Popen(
            [*base, "modelsim", "--port", str(self.model_port), "--admin-port", "off",
             "--tokens-per-second", "2", "--output-tokens", "2000"],
            stdout=self.log, stderr=subprocess.STDOUT,
        )  # fmt: skip
        self.sidecar = subprocess.Popen(
            [*base, "sidecar", f"--upstream=http://127.0.0.1:{self.model_port}", "--host=127.0.0.1",
             f"--port={self.port}", f"--metrics-port={self.metrics_port}", f"--admin-port={self.admin_port}",
             f"--concurrency={CONCURRENCY}", "--health-interval-seconds=0.5", "--log-format=text"],
            stdout=self.log, stderr=subprocess.STDOUT,
        )  # fmt: skip
        self.streams = Streams("127.0.0.1", self.port)
        _wait_port(self.model_port, self.model, "modelsim")
        _wait_port(self.metrics_port, self.sidecar, "sidecar")

    def open_streams(self, count: int) -> None:
        """Hold ``count`` streaming completions open through the sidecar (each in flight until closed)."""
        self.streams.start(count)

    def close_streams(self) -> None:
        self.streams.close()

    def in_flight(self) -> int:
        connection = http.client.HTTPConnection("127.0.0.1", self.metrics_port, timeout=2)
        connection.request("GET", "/_conn_stats")
        stats = json.loads(connection.getresponse().read())
        connection.close()
        return int(stats["in_flight"])

    def stop(self) -> None:
        self.close_streams()
        for process in (self.sidecar, self.model):
            process.terminate()
        for process in (self.sidecar, self.model):
            try:
                process.wait(15)
            except subprocess.TimeoutExpired:
                process.kill()
        self.log.close()


@contextlib.contextmanager
def metrics_api_on_loopback(
    control_plane: Any,
    namespace: str,
    tmp_path: Path,
    scrape_interval: float = 1,
    operator_cert: bool = False,
    **env: str,
) -> Iterator[tuple[OperatorProcess, Path]]:
    """An operator (own lease, this namespace) serving the metrics API on loopback, registered with
    the kube-apiserver, its scraper reading every ``scrape_interval`` seconds; the APIService is
    removed again afterwards (an unavailable one would break discovery for every later test).

    The serving certificate: files made here, their CA the APIService's caBundle (as with
    cert-manager or a Secret of your own); with ``operator_cert`` the operator's own (as the chart
    has it by default): it makes Secret :data:`CERT_SECRET` in ``namespace`` and writes the caBundle
    of the APIService, which is registered without one."""
    overrides = tmp_path / "test-only-sidecar-addresses.json"
    overrides.write_text("{}")
    port = _free_port()
    if operator_cert:
        certificate = {
            "CHUTE_OPERATOR_METRICS_API_CERT_SECRET": CERT_SECRET,
            "CHUTE_OPERATOR_METRICS_API_SERVICE": SERVICE,
            "CHUTE_OPERATOR_OPERATOR_NAMESPACE": namespace,
        }
        ca_bundle = ""
    else:
        pki = tmp_path / "pki"
        pki.mkdir()
        ca = _make_ca(pki, "metrics-api-ca", "metrics-api-test-ca")
        serving = _issue(pki, ca, "metrics-api", SERVICE, server_names=(f"DNS:{SERVICE}.{namespace}.svc",))
        certificate = {
            "CHUTE_OPERATOR_METRICS_API_CERT_SECRET": "",
            "CHUTE_OPERATOR_METRICS_API_CERT_FILE": str(serving.cert),
            "CHUTE_OPERATOR_METRICS_API_KEY_FILE": str(serving.key),
        }
        ca_bundle = base64.b64encode(ca.cert.read_bytes()).decode()
    operator = OperatorProcess(
        control_plane.kubeconfig,
        tmp_path,
        f"metrics-{namespace}",
        (namespace,),
        **{
            "CHUTE_OPERATOR_LEASE_NAME": f"metrics-{namespace}",
            "CHUTE_OPERATOR_METRICS_API": "true",
            "CHUTE_OPERATOR_METRICS_API_PORT": str(port),
            "CHUTE_OPERATOR_METRICS_API_BIND_ADDRESS": "127.0.0.1",
            **certificate,
            "CHUTE_OPERATOR_METRICS_API_SCRAPE_INTERVAL_SECONDS": str(scrape_interval),
            "CHUTE_OPERATOR_METRICS_API_TEST_ONLY_SIDECAR_ADDRESSES": str(overrides),
            **env,
        },
    ).start()
    service = {
        "apiVersion": "v1",
        "kind": "Service",
        "metadata": {"name": SERVICE},
        "spec": {"type": "ExternalName", "externalName": "127.0.0.1"},
    }
    apiservice: dict[str, Any] = {
        "apiVersion": "apiregistration.k8s.io/v1",
        "kind": "APIService",
        "metadata": {"name": APISERVICE},
        "spec": {
            "group": "custom.metrics.k8s.io",
            "version": "v1beta2",
            "service": {"name": SERVICE, "namespace": namespace, "port": port},
            "groupPriorityMinimum": 100,
            "versionPriority": 100,
        },
    }
    if ca_bundle:
        apiservice["spec"]["caBundle"] = ca_bundle
    try:
        apply(control_plane, service, namespace)
        control_plane.kubectl("apply", "-f", "-", input=json.dumps(apiservice))
        yield operator, overrides
    finally:
        control_plane.kubectl("delete", "apiservice", APISERVICE, "--ignore-not-found", check=False)
        operator.stop()


def raw(cp: Any, path: str) -> tuple[int, dict[str, Any]]:
    """``kubectl get --raw``: (0, document) or (exit code, {"error": stderr})."""
    result = cp.kubectl("get", "--raw", path, check=False)
    if result.returncode == 0:
        return 0, json.loads(result.stdout)
    return result.returncode, {"error": result.stderr}


def autoscaled_chute(name: str) -> dict[str, Any]:
    """Concurrency 4, threshold 0.5, 1 to 3 replicas, scale-down window 60 s, on a CPU-only node."""
    return {
        "apiVersion": "chutes.ai/v1alpha1",
        "kind": "Chute",
        "metadata": {"name": name},
        "spec": {
            "image": "example.com/model:1",
            "nodeSelector": {"gpuCount": 0},
            "concurrency": CONCURRENCY,
            "minInstances": 1,
            "maxInstances": 3,
            "scalingThreshold": 0.5,
            "shutdownAfterSeconds": 60,
            "monitoring": {"serviceMonitor": False},
        },
    }


def real_node_chute(name: str, image: str, node: str) -> dict[str, Any]:
    """:func:`autoscaled_chute` on the real node: the project image's modelsim behind the sidecar."""
    chute = autoscaled_chute(name)
    chute["spec"].update(
        {
            "image": image,
            "imagePullPolicy": "IfNotPresent",
            "command": ["chute-operator", "modelsim"],
            "args": [
                "--host=127.0.0.1",
                "--port=8000",
                "--admin-port=off",
                "--tokens-per-second=2",
                "--output-tokens=2000",
            ],
            "port": 8000,
            "health": {"path": "/health"},
            # The real node's simulated A10s: the GPU toleration and affinity bring the pods there.
            "nodeSelector": {"gpuCount": 1, "include": ["a10"]},
            "pod": {"nodeSelector": {"kubernetes.io/hostname": node}},
        }
    )
    return chute
