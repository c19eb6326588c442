"""The InferencePool door of the gateway harness on the local control plane, without the real node.

The endpoint picker (``lwepp`` v1.6.2, a host process with the control plane's kubeconfig) watches an
InferencePool that selects no pod, as a Chute's pool at zero: it fails Envoy's ext_proc stream. A
FailOpen pool then goes to its fallback, here a server on loopback in place of the Chute's Service
(the request body intact, a client's own ``x-gateway-destination-endpoint`` removed); a FailClose
pool answers 500. And with one ready pod (no kubelet owns it: its status, written here, gives it
127.0.0.1, where the same loopback server answers) the picker names it and Envoy sends it there.
Nothing is sent to a pod address of the cluster's ranges.
"""

from __future__ import annotations

import http.client
import http.server
import json
import threading
from collections.abc import Iterator
from typing import Any

import pytest
from tests.kube_helpers import apply, eventually

from chute_devcluster.controlplane import ControlPlane
from chute_devcluster.envoy import DESTINATION_HEADER, Envoy, PoolRoute, ServiceRoute
from chute_devcluster.gatewaytools import ensure_envoy, ensure_picker, inference_pool_crd
from chute_devcluster.picker import Picker
from chute_devcluster.processes import free_port

pytestmark = [pytest.mark.integration, pytest.mark.timeout(300)]


class _Fallback(http.server.BaseHTTPRequestHandler):
    """Records each request's path, destination header and body (chunked or not); answers 200."""

    protocol_version = "HTTP/1.1"
    seen: list[dict[str, Any]] = []

    def do_POST(self) -> None:
        if self.headers.get("Transfer-Encoding") == "chunked":
            body = b""
            for _ in range(1000):  # bounded: a test body has a few chunks
                size = int(self.rfile.readline().strip(), 16)
                if size == 0:
                    self.rfile.readline()
                    break
                body += self.rfile.read(size)
                self.rfile.readline()
        else:
            body = self.rfile.read(int(self.headers.get("Content-Length", 0)))
        self.seen.append(
            {"path": self.path, "destination": self.headers.get(DESTINATION_HEADER), "body": body}
        )
        self.send_response(200)
        self.send_header("Content-Length", "2")
        self.end_headers()
        self.wfile.write(b"ok")

    def log_message(self, *args: object) -> None:
        pass


@pytest.fixture
def fallback() -> Iterator[ServiceRoute]:
    server = http.server.ThreadingHTTPServer(("127.0.0.1", free_port()), _Fallback)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    _Fallback.seen = []
    try:
        yield ServiceRoute("/unused/", "127.0.0.1", server.server_address[1])
    finally:
        server.shutdown()
        server.server_close()


def post(port: int, path: str, body: bytes) -> tuple[int, bytes]:
    connection = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
    try:
        # a destination of the client's own (loopback, refused) must not be used
        headers = {"Content-Type": "application/json", DESTINATION_HEADER: "127.0.0.1:1"}
        connection.request("POST", path, body, headers)
        answer = connection.getresponse()
        return answer.status, answer.read()
    finally:
        connection.close()


def install_pool(cp: ControlPlane, namespace: str, name: str, port: int) -> None:
    cp.kubectl("apply", "--server-side", "-f", str(inference_pool_crd()))
    cp.kubectl(
        "wait",
        "--for=condition=Established",
        "--timeout=30s",
        "crd/inferencepools.inference.networking.k8s.io",
    )
    pool = {
        "apiVersion": "inference.networking.k8s.io/v1",
        "kind": "InferencePool",
        "metadata": {"name": name},
        "spec": {
            "selector": {"matchLabels": {"chutes.ai/chute": name}},
            "targetPorts": [{"number": port}],
            "endpointPickerRef": {"name": f"{name}-epp", "port": {"number": 9002}, "failureMode": "FailOpen"},
        },
    }
    apply(cp, pool, namespace)


def test_a_pool_without_ready_pods_fails_open_to_its_service_and_closed_with_500(
    control_plane: ControlPlane, namespace: str, fallback: ServiceRoute
) -> None:
    cp = control_plane
    install_pool(cp, namespace, "empty", 8080)
    picker = Picker(ensure_picker(), cp.kubeconfig, namespace, "empty", cp.log_dir)
    routes: list[ServiceRoute | PoolRoute] = [
        PoolRoute("/open/", picker.grpc_port, fallback),
        PoolRoute("/closed/", picker.grpc_port, fallback, fail_open=False),
    ]
    body = json.dumps({"model": "sim", "messages": [{"role": "user", "content": "x" * 3000}]}).encode()
    with picker, Envoy(ensure_envoy(), cp.log_dir, routes) as envoy:
        eventually(
            lambda: post(envoy.port, "/open/v1/chat/completions", body)[0] == 200 or None,
            what="an answer through the FailOpen pool",
            timeout=60,
        )
        assert post(envoy.port, "/open/v1/chat/completions", body) == (200, b"ok")
        assert post(envoy.port, "/closed/v1/chat/completions", body)[0] == 500
        stats = envoy.stats("cluster.")
        log = picker.log()

    assert "no pods available" in log, log
    assert _Fallback.seen, "nothing reached the fallback"
    for request in _Fallback.seen:
        assert request == {"path": "/v1/chat/completions", "destination": None, "body": body}
    assert stats.get("cluster.pool0.upstream_rq_total", 0) == 0, stats
    assert stats.get("cluster.pool1.upstream_rq_total", 0) == 0, stats


def test_a_pool_with_a_ready_pod_sends_to_the_pod_the_picker_names(
    control_plane: ControlPlane, namespace: str, fallback: ServiceRoute
) -> None:
    cp = control_plane
    install_pool(cp, namespace, "one", fallback.port)
    pod = {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": "one-0", "labels": {"chutes.ai/chute": "one"}},
        "spec": {"nodeName": "no-such-node", "containers": [{"name": "model", "image": "none"}]},
    }
    apply(cp, pod, namespace)
    status = {"podIP": "127.0.0.1", "podIPs": [{"ip": "127.0.0.1"}], "phase": "Running",
              "conditions": [{"type": "Ready", "status": "True"}]}  # fmt: skip
    cp.kubectl("patch", "pod", "one-0", "-n", namespace, "--subresource=status", "--type=merge",
               "-p", json.dumps({"status": status}))  # fmt: skip
    picker = Picker(ensure_picker(), cp.kubeconfig, namespace, "one", cp.log_dir)
    nowhere = ServiceRoute("/unused/", "127.0.0.1", 1)  # its fallback: refused, were it used
    body = json.dumps({"model": "sim", "messages": [{"role": "user", "content": "x" * 100_000}]}).encode()
    with picker, Envoy(ensure_envoy(), cp.log_dir, [PoolRoute("/pool/", picker.grpc_port, nowhere)]) as envoy:
        eventually(
            lambda: post(envoy.port, "/pool/v1/chat/completions", body)[0] == 200 or None,
            what="an answer from the picked pod",
            timeout=60,
        )
        stats = envoy.stats("cluster.")

    picked = {"path": "/v1/chat/completions", "destination": f"127.0.0.1:{fallback.port}", "body": body}
    assert _Fallback.seen[-1] == picked
    assert stats["cluster.pool0.upstream_rq_total"] == len(_Fallback.seen), stats
    assert stats.get("cluster.service0.upstream_rq_total", 0) == 0, stats
