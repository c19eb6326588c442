"""The chart's `lookup` of v1beta2.custom.metrics.k8s.io under `helm upgrade` (found by the breaking
pass of issue 26).

A stand-in API server (discovery and that one APIService, nothing else) answers helm's lookup
(`helm template --dry-run=server`, as `helm upgrade` renders).
"""

from __future__ import annotations

import json
import socket
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.chart.helm import CHART, Helm

API_RESOURCES = {
    "kind": "APIResourceList",
    "groupVersion": "apiregistration.k8s.io/v1",
    "resources": [
        {
            "name": "apiservices",
            "singularName": "apiservice",
            "namespaced": False,
            "kind": "APIService",
            "verbs": ["get", "list"],
        }
    ],
}


def our_api_service(release: str, namespace: str, service: str) -> dict[str, Any]:
    """v1beta2 as this chart installed it under release ``release`` (Helm's ownership annotations)."""
    return {
        "apiVersion": "apiregistration.k8s.io/v1",
        "kind": "APIService",
        "metadata": {
            "name": "v1beta2.custom.metrics.k8s.io",
            "labels": {"app.kubernetes.io/managed-by": "Helm", "app.kubernetes.io/instance": release},
            "annotations": {
                "meta.helm.sh/release-name": release,
                "meta.helm.sh/release-namespace": namespace,
            },
        },
        "spec": {
            "group": "custom.metrics.k8s.io",
            "version": "v1beta2",
            "service": {"namespace": namespace, "name": service, "port": 443},
        },
    }


@pytest.fixture
def fake_cluster(tmp_path: Path) -> Iterator[tuple[Path, dict[str, Any]]]:
    found: dict[str, Any] = {}

    class Handler(BaseHTTPRequestHandler):
        def log_message(self, *args: Any) -> None:
            return None

        def do_GET(self) -> None:
            path = self.path.split("?")[0]
            body: Any = {"kind": "Status", "apiVersion": "v1", "status": "Failure", "code": 404}
            code = 404
            if path == "/apis/apiregistration.k8s.io/v1":
                body, code = API_RESOURCES, 200
            elif (
                path == "/apis/apiregistration.k8s.io/v1/apiservices/v1beta2.custom.metrics.k8s.io" and found
            ):
                body, code = found, 200
            data = json.dumps(body).encode()
            self.send_response(code)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    server = ThreadingHTTPServer(("127.0.0.1", port), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    kubeconfig = tmp_path / "kubeconfig"
    kubeconfig.write_text(
        yaml.safe_dump(
            {
                "apiVersion": "v1",
                "kind": "Config",
                "clusters": [{"name": "c", "cluster": {"server": f"http://127.0.0.1:{port}"}}],
                "users": [{"name": "u", "user": {"token": "x"}}],
                "contexts": [{"name": "c", "context": {"cluster": "c", "user": "u"}}],
                "current-context": "c",
            }
        )
    )
    try:
        yield kubeconfig, found
    finally:
        server.shutdown()
        server.server_close()


def render(helm: Helm, kubeconfig: Path, *sets: str) -> Any:
    args = [
        "template",
        "co",
        str(CHART),
        "-n",
        "chute-system",
        "--dry-run=server",
        "--kube-version",
        "1.34.4",
    ]
    for item in sets:
        args += ["--set", item]
    return helm.with_kubeconfig(kubeconfig).run(*args, check=False)


def test_an_upgrade_of_the_same_release_passes_the_check(
    helm: Helm, fake_cluster: tuple[Path, dict[str, Any]]
) -> None:
    """Held up: our own APIService (same Service) is no rival; another adapter's is."""
    kubeconfig, found = fake_cluster
    found.update(our_api_service("co", "chute-system", "co-chute-operator-metrics-api"))
    assert render(helm, kubeconfig).returncode == 0
    found.update(our_api_service("prom", "monitoring", "prometheus-adapter"))
    result = render(helm, kubeconfig)
    assert result.returncode != 0
    assert "names Service monitoring/prometheus-adapter" in result.stderr


@pytest.mark.parametrize("rename", ["fullnameOverride=chute", "nameOverride=cop"])
def test_an_upgrade_that_renames_the_service_is_not_refused_as_a_rival(
    helm: Helm, fake_cluster: tuple[Path, dict[str, Any]], rename: str
) -> None:
    kubeconfig, found = fake_cluster
    found.update(our_api_service("co", "chute-system", "co-chute-operator-metrics-api"))
    result = render(helm, kubeconfig, rename)
    assert result.returncode == 0, result.stderr


@pytest.mark.parametrize(("release", "namespace"), [("other", "chute-system"), ("co", "monitoring")])
def test_another_releases_apiservice_is_a_rival_whatever_it_names(
    helm: Helm, fake_cluster: tuple[Path, dict[str, Any]], release: str, namespace: str
) -> None:
    """Only this release's own annotations (name and namespace) make it ours."""
    kubeconfig, found = fake_cluster
    found.update(our_api_service(release, namespace, "prometheus-adapter"))
    result = render(helm, kubeconfig)
    assert result.returncode != 0
    assert f"names Service {namespace}/prometheus-adapter" in result.stderr
